import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../src/server.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startTestServer, waitFor } from './helpers/server.js';

const missing = chromiumMissing('receipt browser tests');

type Client = typeof import('../src/client/index.js');
type Ev = { type: string; cursor: string; door?: string };

describe('receipts from the SDK in Chromium', { skip: missing ? 'chromium missing' : false }, () => {
  let browser: Browser;
  let server: RunningServer;
  let svc: PushService;

  before(async () => {
    svc = await startPushService();
    // no auth on loopback: the page and the publisher are the principal "anonymous"
    server = await startTestServer({ webpush: webpushConfig(svc), receipts: { rules: [{ filter: 'user/{sub}/#' }] } });
    svc.expectedKey = ((await (await fetch(`${server.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await svc?.close();
  });

  async function publish(topic: string, within: string): Promise<string> {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data: { title: 'New message', body: topic }, receipt: { within } }) });
    assert.equal(r.status, 200);
    return ((await r.json()) as { cursor: string }).cursor;
  }
  const eventsOf = async (cursor: string): Promise<Ev[]> =>
    ((await (await fetch(`${server.http}/v1/receipts?limit=1000`)).json()) as { receipts: Ev[] }).receipts.filter((e) => e.cursor === cursor);
  const pushesOf = (cursor: string) => svc.received.filter((r) => r.status === 201 && r.payload?.cursor === cursor).length;

  async function openPage(transport: string, subscription?: unknown): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${server.http}/healthz`);
    await page.evaluate(
      async ({ transport, subscription }) => {
        const w = globalThis as unknown as { got: string[]; client: unknown; location: { origin: string } };
        const { connect } = (await import('/v1/client/omnipush.js' as string)) as Client;
        const c = await connect(w.location.origin, { transports: [transport as never] });
        if (subscription) await c.enableWebPush({ topics: ['user/anonymous/#'], subscription: subscription as never });
        w.got = [];
        w.client = c;
        c.subscribe('user/anonymous/#', (m) => w.got.push(m.cursor), { since: 'now' });
      },
      { transport, subscription },
    );
    return page;
  }

  it('the SDK acknowledges on every door by itself, and seen() reports a look; no fallback then', async () => {
    const fake = svc.browser('receipts-page');
    const acked: string[] = [];
    let first = true;
    for (const transport of ['websocket', 'sse', 'longpoll']) {
      const page = await openPage(transport, first ? fake.subscription : undefined);
      first = false;
      try {
        // the stream may attach a moment after connect(): publish until the page has one
        let cursor = '';
        await waitFor(async () => {
          cursor = await publish(`user/anonymous/${transport}`, '1s');
          return waitFor(() => page.evaluate((c) => (globalThis as unknown as { got: string[] }).got.includes(c), cursor), 'the page got it', 500).catch(() => false);
        }, `a message on ${transport}`);
        await waitFor(async () => (await eventsOf(cursor)).length > 0, `the SDK's ack over ${transport}`);
        assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.door]), [['delivered', transport]]);
        await page.evaluate((c) => (globalThis as unknown as { client: { seen(c: string): void } }).client.seen(c), cursor);
        await waitFor(async () => (await eventsOf(cursor)).length === 2, 'the seen event');
        assert.deepEqual((await eventsOf(cursor)).map((e) => e.type), ['delivered', 'seen']);
        acked.push(cursor);
      } finally {
        await page.close();
      }
    }
    // windows fire in due order: a control due after all of them, with no page to ack it, is pushed
    // only after their windows ended, so by then any push of theirs would be there too
    const control = await publish('user/anonymous/control', '1200ms');
    await waitFor(() => pushesOf(control) === 1, 'the control message pushed');
    for (const c of acked) assert.equal(pushesOf(c), 0, `no fallback for ${c}`);
  });

  it('with the page closed, the push service stand-in gets the encrypted fallback', async () => {
    const page = await openPage('websocket');
    await page.close();
    const cursor = await publish('user/anonymous/while-away', '300ms');
    await waitFor(() => pushesOf(cursor) === 1, 'the fallback push');
    const got = svc.received.find((r) => r.payload?.cursor === cursor)!;
    // the stand-in decrypted it with the browser-side keys (RFC 8291) and checked VAPID
    assert.equal(got.payload!.title, 'New message');
    assert.equal(got.payload!.topic, 'user/anonymous/while-away');
    assert.equal(got.headers['content-encoding'], 'aes128gcm');
    await waitFor(async () => (await eventsOf(cursor)).some((e) => e.type === 'pushed'), 'the pushed event');
    assert.deepEqual(svc.violations, []);
  });
});
