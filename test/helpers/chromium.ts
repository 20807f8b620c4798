import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium, which `.ci/run` installs. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Why browser tests cannot run here ('' when they can). Said loudly once per file; with
 * OMNIPUSH_REQUIRE_ALL=1 a missing browser is an error instead.
 */
export function chromiumMissing(what: string): string {
  if (existsSync(CHROMIUM)) return '';
  const why = `Chromium is not installed at ${CHROMIUM} (Debian package "chromium")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING ${what}: ${why} ***\n`);
  return why;
}

/** Headless, without the background traffic (updates, sync, QUIC) that a test does not want. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
}
