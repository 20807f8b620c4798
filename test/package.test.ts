import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { exerciseDoors } from './helpers/doors.js';
import { accepting, killGroup, startUnderNpm, type NpmServer } from './helpers/npm-run.js';
import { REPO_ROOT, tempDir, waitFor, within } from './helpers/server.js';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const NETWORK = /E(NOTFOUND|AI_AGAIN|CONNREFUSED|TIMEDOUT|CONNRESET|NETUNREACH)|network|getaddrinfo/i;

const dir = tempDir('omnipush-package-');
const app = join(dir.path, 'app');
let tarball = '';
/** Why the package could not be installed here (no registry), or '' once it is installed. */
let unavailable = 'not installed yet';

function skipUnlessInstalled(t: TestContext): boolean {
  if (!unavailable) return false;
  t.skip(unavailable);
  return true;
}

/** The native SQLite binding the repository's `npm ci` built, if it is the same version the package resolved. */
function reuseNativeBuild(): boolean {
  const version = (p: string) => (JSON.parse(readFileSync(join(p, 'package.json'), 'utf8')) as { version: string }).version;
  const ours = join(REPO_ROOT, 'node_modules/better-sqlite3');
  const theirs = join(app, 'node_modules/better-sqlite3');
  const binary = 'build/Release/better_sqlite3.node';
  if (!existsSync(join(ours, binary)) || version(ours) !== version(theirs)) return false;
  mkdirSync(join(theirs, 'build/Release'), { recursive: true });
  copyFileSync(join(ours, binary), join(theirs, binary));
  return true;
}

before(async () => {
  // the tests run on a fresh build, so pack what is built rather than building again (`prepare`)
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir.path], { cwd: REPO_ROOT, maxBuffer: 16 << 20 });
  tarball = join(dir.path, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0].filename);
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'omnipush-package-test', private: true }));
  try {
    // Scripts off: better-sqlite3 would compile SQLite from source for minutes. Its binary is the
    // one `npm ci` built for the repository (same version), or a rebuild when versions differ.
    await run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball], { cwd: app, timeout: 180_000, maxBuffer: 16 << 20 });
  } catch (e) {
    const out = `${(e as { stderr?: string }).stderr ?? ''} ${(e as Error).message}`;
    if (!NETWORK.test(out)) throw e;
    const why = `npm cannot reach the registry to install the package's dependencies (${NETWORK.exec(out)![0]})`;
    if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
    console.error(`\n*** SKIPPING package tests: ${why} ***\n`);
    unavailable = 'registry unreachable';
    return;
  }
  if (!reuseNativeBuild()) await run('npm', ['rebuild', 'better-sqlite3'], { cwd: app, timeout: 600_000, maxBuffer: 16 << 20 });
  unavailable = '';
});
after(() => dir.remove());

const SERVE = ['--no-install', 'omnipush', 'serve', '--port', '0', '--mqtt-port', '0'];

describe('the npm package', () => {
  it('holds the CLI, the server, the browser bundle, the licence and the changelog, and no tests or sources', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball], { maxBuffer: 16 << 20 });
    const files = new Set(stdout.split('\n').filter(Boolean));
    for (const f of ['bin/omnipush.js', 'dist/src/cli/main.js', 'dist/src/index.js', 'dist/src/client/index.js', 'dist/client/omnipush.js', 'dist/client/omnipush.iife.js', 'LICENSE', 'CHANGELOG.md', 'README.md', 'package.json']) {
      assert.ok(files.has(`package/${f}`), `the tarball holds ${f}`);
    }
    const stray = [...files].filter((f) => /^package\/(dist\/test|dist\/bench|src|test|node_modules|data)\//.test(f));
    assert.deepEqual(stray, []);
  });

  it('installed in an empty folder, `npx omnipush serve` serves the client bundle, the demo page and every door', async (t) => {
    if (skipUnlessInstalled(t)) return;
    const data = join(dir.path, 'data');
    const s = await startUnderNpm('npx', [...SERVE, '--data', data], app, { OMNIPUSH_DEMO__ENABLED: 'true', OMNIPUSH_SSE__HEARTBEAT: '60' });
    try {
      assert.match(s.stderr(), /"store":"sqlite"/, 'the default store works from the installed package');
      const bundle = await fetch(`${s.http}/v1/client/omnipush.js`);
      assert.equal(bundle.status, 200);
      assert.match(bundle.headers.get('content-type') ?? '', /^text\/javascript/);
      assert.ok(Buffer.from(await bundle.arrayBuffer()).equals(readFileSync(join(REPO_ROOT, 'dist/client/omnipush.js'))), 'the bundle the repository built');
      assert.equal((await fetch(`${s.http}/v1/client/omnipush.iife.js`)).status, 200);
      await exerciseDoors({ base: s.http });
      const tcp = await within(mqtt.connectAsync(s.mqtt!, { reconnectPeriod: 0, protocolVersion: 4 }), 10_000, 'MQTT over TCP CONNACK');
      await tcp.endAsync();
      if (existsSync(CHROMIUM)) {
        const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
        try {
          const page = await browser.newPage();
          await page.goto(`${s.http}/demo/`);
          await waitFor(async () => (await page.textContent('#state')) === 'open', 'the demo page connected');
          await page.click('#sub button');
          await page.click('#pub button');
          await waitFor(async () => (await page.textContent('#log'))?.includes('demo/hello: hello'), 'the demo page received its own message');
        } finally {
          await browser.close();
        }
      } else if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`Chromium is not installed at ${CHROMIUM}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
      else console.error(`\n*** the package's demo page is not tried in a browser: no Chromium at ${CHROMIUM} ***\n`);

      // npm passes the SIGTERM only to its shell; the server must stop anyway, gracefully
      s.npm.kill('SIGTERM');
      const stderr = await s.gone(15_000);
      assert.match(stderr, /"msg":"omnipush stopped"/);
      assert.equal(await accepting(s.http), false);
    } finally {
      killGroup(s.npm);
    }
  });

  it('a Ctrl-C (SIGINT to the process group) stops `npx omnipush serve` gracefully', async (t) => {
    if (skipUnlessInstalled(t)) return;
    const s: NpmServer = await startUnderNpm('npx', [...SERVE, '--store', 'memory'], app);
    try {
      process.kill(-s.npm.pid!, 'SIGINT');
      const stderr = await s.gone(15_000);
      assert.match(stderr, /"msg":"omnipush stopped"/);
      assert.equal(await accepting(s.http), false);
    } finally {
      killGroup(s.npm);
    }
  });
});
