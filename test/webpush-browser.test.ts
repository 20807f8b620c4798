import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import type { RunningServer } from '../src/server.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startTestServer, waitFor } from './helpers/server.js';

const missing = chromiumMissing('Web Push browser tests');

type Client = typeof import('../src/client/index.js');
interface Shown {
  title: string;
  body: string;
  tag: string;
  data: { url?: string; cursor?: string };
}

describe('Web Push in Chromium', { skip: missing ? 'chromium missing' : false }, () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let cdp: CDPSession;
  let server: RunningServer;
  let svc: PushService;
  const registrations: Array<{ registrationId: string; scopeURL: string; isDeleted: boolean }> = [];

  before(async () => {
    svc = await startPushService();
    server = await startTestServer({ webpush: webpushConfig(svc) });
    svc.expectedKey = ((await (await fetch(`${server.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    browser = await launchChromium();
    context = await browser.newContext();
    await context.grantPermissions(['notifications'], { origin: server.http });
    page = await context.newPage();
    cdp = await context.newCDPSession(page);
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e: { registrations: typeof registrations }) => registrations.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    await page.goto(`${server.http}/healthz`);
    // the worker also tells open pages of the site about each push
    await page.evaluate(() => {
      const w = globalThis as unknown as { told: unknown[]; navigator: { serviceWorker: { onmessage: ((e: { data: unknown }) => void) | null } } };
      w.told = [];
      w.navigator.serviceWorker.onmessage = (e) => w.told.push(e.data);
    });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await svc?.close();
  });

  const notifications = () =>
    page.evaluate(async () => {
      const nav = (globalThis as unknown as { navigator: { serviceWorker: { getRegistrations(): Promise<Array<{ getNotifications(): Promise<Shown[]> }>> } } }).navigator;
      const out: Shown[] = [];
      for (const reg of await nav.serviceWorker.getRegistrations()) for (const n of await reg.getNotifications()) out.push({ title: n.title, body: n.body, tag: n.tag, data: n.data });
      return out;
    });

  /**
   * Hands the worker what the push service would: the payload our server encrypted, decrypted by
   * the stand-in, and waits for the notification tagged with its cursor. DevTools delivers without
   * telling whether the push event ran (a worker that fails to start in time under load drops it),
   * so, like a push service that has no acknowledgement yet, it delivers again after a while. The
   * cursor is the notification's tag, so a second delivery replaces the first instead of adding one.
   */
  async function deliverAndShow(payload: Record<string, unknown>, what: string): Promise<Shown> {
    const reg = await waitFor(() => registrations.find((r) => !r.isDeleted && r.scopeURL.startsWith(server.http)), 'service worker registration');
    const data = JSON.stringify(payload);
    for (let attempt = 1; ; attempt++) {
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.http, registrationId: reg.registrationId, data });
      try {
        const shown = await waitFor(async () => (await notifications()).find((n) => n.tag === payload.cursor), what, 5_000);
        if (attempt > 1) console.error(`${what}: shown after delivery ${attempt} (DevTools dropped the earlier ones)`);
        return shown;
      } catch (e) {
        if (attempt === 4) throw e;
      }
    }
  }

  it('registers the worker through the SDK, and a pushed message shows the notification', async () => {
    const fake = svc.browser('chromium');
    const outcome = await page.evaluate(
      async ({ subscription }) => {
        const { connect } = (await import('/v1/client/omnipush.js' as string)) as Client;
        const client = await connect((globalThis as unknown as { location: { origin: string } }).location.origin);
        // the browser's own push service is out of reach here: note what subscribe() does, then register a subscription we made
        let native: string;
        try {
          await client.enableWebPush({ topics: ['flights/#'] });
          native = 'subscribed';
        } catch (e) {
          native = String(e);
        }
        const reg = await client.enableWebPush({ topics: ['flights/#'], mode: 'always', subscription });
        client.close();
        return { native, reg };
      },
      { subscription: fake.subscription },
    );
    console.error(`pushManager.subscribe() in headless Chromium: ${outcome.native}`);
    assert.equal(outcome.reg.endpoint, fake.subscription.endpoint);
    assert.deepEqual(outcome.reg.topics, ['flights/#']);

    const r = await fetch(`${server.http}/v1/publish`, {
      method: 'POST',
      body: JSON.stringify({ topic: 'flights/LH400', data: { title: 'Gate change', body: 'Now boarding at B12', url: `${server.http}/healthz?flight=LH400` } }),
    });
    const { cursor } = (await r.json()) as { cursor: string };
    const pushed = await waitFor(() => svc.received.find((x) => x.name === 'chromium' && x.payload?.cursor === cursor), 'server pushed to the push service');
    const shown = await deliverAndShow(pushed.payload!, 'notification shown');
    assert.equal(shown.title, 'Gate change');
    assert.equal(shown.body, 'Now boarding at B12');
    assert.equal(shown.data.url, `${server.http}/healthz?flight=LH400`);
    const told = await waitFor(
      async () => (await page.evaluate(() => (globalThis as unknown as { told: Array<{ omnipush: string; message: { cursor: string } }> }).told)).find((t) => t.message.cursor === cursor),
      'the page was told',
    );
    assert.equal(told.omnipush, 'push');

    // without notification fields: the topic as title, the text as body
    const r2 = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'flights/LH401', data: 'Delayed 20 minutes' }) });
    const c2 = ((await r2.json()) as { cursor: string }).cursor;
    const p2 = await waitFor(() => svc.received.find((x) => x.name === 'chromium' && x.payload?.cursor === c2), 'second push');
    const n2 = await deliverAndShow(p2.payload!, 'second notification');
    assert.equal(n2.title, 'flights/LH401');
    assert.equal(n2.body, 'Delayed 20 minutes');
    // one notification per message, however many times it was handed over
    const all = await notifications();
    assert.equal(all.filter((n) => n.tag === cursor).length, 1);
    assert.equal(all.filter((n) => n.tag === c2).length, 1);
    assert.deepEqual(svc.violations, []);
  });

  it('disableWebPush removes the registration from the server', async () => {
    const fake = svc.browser('chromium-off');
    const removed = await page.evaluate(
      async ({ subscription }) => {
        const { enableWebPush, disableWebPush } = (await import('/v1/client/omnipush.js' as string)) as Client;
        const origin = (globalThis as unknown as { location: { origin: string } }).location.origin;
        await enableWebPush(origin, { topics: ['off/#'], subscription });
        return [await disableWebPush(origin, { endpoint: subscription.endpoint }), await disableWebPush(origin, { endpoint: subscription.endpoint })];
      },
      { subscription: fake.subscription },
    );
    assert.deepEqual(removed, [true, false]);
    const list = (await (await fetch(`${server.http}/v1/webpush/subscriptions?endpoint=${encodeURIComponent(fake.subscription.endpoint)}`)).json()) as { subscriptions: unknown[] };
    assert.equal(list.subscriptions.length, 0);
  });
});
