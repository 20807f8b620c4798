import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../src/server.js';
import { startProxy } from './helpers/proxy.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startTestServer, tempDir, waitFor } from './helpers/server.js';

const missing = chromiumMissing('browser tests');

async function publish(base: string, topic: string, data: string): Promise<void> {
  assert.equal((await fetch(`${base}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data }) })).status, 200);
}

/** Loads the SDK bundle on a page of `origin` and subscribes; returns the transport it picked. */
async function startClient(page: Page, origin: string, filter: string, transports?: string[]): Promise<string> {
  // any page of the server's origin will do; the demo page would open a client of its own
  await page.goto(`${origin}/healthz`);
  return page.evaluate(
    async ({ filter, transports }) => {
      const w = globalThis as unknown as { got: string[]; client: unknown; location: { origin: string } };
      const { connect } = (await import('/v1/client/omnipush.js' as string)) as typeof import('../src/client/index.js');
      const c = await connect(w.location.origin, { transports: transports as never, backoff: { min: 50, max: 500 } });
      w.got = [];
      w.client = c;
      c.subscribe(filter, (m) => w.got.push(m.data ?? ''), { since: 'now' });
      return c.transport ?? 'none';
    },
    { filter, transports },
  );
}

const received = (page: Page) => page.evaluate(() => (globalThis as unknown as { got: string[] }).got);

async function subscribers(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/omnipush_connections\{transport="(websocket|sse|longpoll)"\} (\d+)/g)) n += Number(m[2]);
  return n;
}

describe('the SDK in Chromium', { skip: missing ? 'chromium missing' : false }, () => {
  let browser: Browser;
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ sse: { retry: 100 } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  for (const transport of ['websocket', 'sse', 'longpoll']) {
    it(`receives messages over ${transport}`, async () => {
      const page = await browser.newPage();
      try {
        const before = await subscribers(server.http);
        assert.equal(await startClient(page, server.http, `br/${transport}`, [transport]), transport);
        await waitFor(async () => (await subscribers(server.http)) > before, 'page subscribed');
        for (let i = 0; i < 5; i++) await publish(server.http, `br/${transport}`, `m${i}`);
        await waitFor(async () => (await received(page)).length >= 5, 'page got 5');
        assert.deepEqual(await received(page), ['m0', 'm1', 'm2', 'm3', 'm4']);
      } finally {
        await page.close();
      }
    });
  }

  it('serves the demo page when enabled, and it connects', async () => {
    const demo = await startTestServer({ demo: { enabled: true } });
    const page = await browser.newPage();
    try {
      assert.equal((await fetch(`${server.http}/demo/`)).status, 404, 'off by default');
      await page.goto(`${demo.http}/demo/`);
      await waitFor(async () => (await page.textContent('#state')) === 'open', 'demo connected');
      assert.equal(await page.textContent('#transport'), 'websocket');
      await page.click('#sub button');
      await page.click('#pub button');
      await waitFor(async () => (await page.textContent('#log'))?.includes('demo/hello: hello'), 'demo received its own message');
    } finally {
      await page.close();
      await demo.close();
    }
  });

  it('falls back to SSE when WebSocket is blocked, and to long-poll when SSE is blocked too', async () => {
    for (const [refuse, expected] of [
      [(h: string) => h.startsWith('GET /v1/ws'), 'sse'],
      [(h: string) => h.startsWith('GET /v1/ws') || h.startsWith('GET /v1/sse'), 'longpoll'],
    ] as const) {
      const proxy = await startProxy(server.http, refuse);
      const page = await browser.newPage();
      try {
        const topic = `fallback/${expected}`;
        const before = await subscribers(server.http);
        assert.equal(await startClient(page, proxy.url, topic), expected);
        await waitFor(async () => (await subscribers(server.http)) > before, 'page subscribed');
        await publish(server.http, topic, 'through');
        await waitFor(async () => (await received(page)).length === 1, `delivery over ${expected}`);
      } finally {
        await page.close();
        await proxy.close();
      }
    }
  });

  it('ends with every message exactly once, in order, when the server restarts mid-stream', async () => {
    const dir = tempDir('omnipush-browser-');
    let first: RunningServer | undefined = await startTestServer({ store: { kind: 'sqlite', dir: dir.path } });
    let second: RunningServer | undefined;
    const page = await browser.newPage();
    try {
      const port = Number(new URL(first.http).port);
      assert.equal(await startClient(page, first.http, 'restart/t'), 'websocket');
      await waitFor(async () => (await subscribers(first!.http)) === 1, 'page subscribed');
      for (let i = 0; i < 5; i++) await publish(first.http, 'restart/t', `r${i}`);
      await waitFor(async () => (await received(page)).length === 5, 'first half');
      await first.close();
      first = undefined;
      second = await startTestServer({ store: { kind: 'sqlite', dir: dir.path }, http: { port } });
      await waitFor(async () => (await subscribers(second!.http)) === 1, 'page back after the restart', 20_000);
      for (let i = 5; i < 10; i++) await publish(second.http, 'restart/t', `r${i}`);
      await waitFor(async () => (await received(page)).length >= 10, 'second half');
      assert.deepEqual(await received(page), Array.from({ length: 10 }, (_, i) => `r${i}`));
    } finally {
      await page.close();
      await first?.close();
      await second?.close();
      dir.remove();
    }
  });
});
