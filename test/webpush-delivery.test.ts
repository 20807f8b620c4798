import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { startPushService, webpushConfig, type Answer, type FakeBrowser, type PushService, type Received } from './helpers/push-service.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'a-test-secret-of-enough-length';

async function token(sub: string, subscribe: string[] = ['#'], deny: string[] = []): Promise<string> {
  return mintToken({ secret: SECRET, sub, grants: { publish: ['#'], subscribe, deny: { publish: [], subscribe: deny } } });
}

interface Api {
  status: number;
  body: Record<string, unknown>;
}

async function call(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string } = {}): Promise<Api> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
    body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
  });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('Web Push delivery to a push service', () => {
  let svc: PushService;
  let server: RunningServer;
  let base: string;
  /** Scripted answers per browser name, used in order; then 201. */
  const scripts = new Map<string, Answer[]>();
  const got = (name: string): Received[] => svc.received.filter((r) => r.name === name);

  before(async () => {
    svc = await startPushService();
    svc.answer = (r) => scripts.get(r.name)?.shift() ?? { status: 201 };
    server = await startTestServer({
      auth: { jwt: { secret: SECRET }, allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['public/#'] } },
      webpush: webpushConfig(svc, { retryMinDelay: 20, retryMaxDelay: 200, requestTimeout: 0.4 }),
    });
    base = server.http;
    svc.expectedKey = (await call(base, 'GET', '/v1/webpush/vapid-public-key')).body.publicKey as string;
  });
  after(async () => {
    await server?.close();
    await svc?.close();
  });
  beforeEach(() => scripts.clear());

  async function register(b: FakeBrowser, topics: string[], tok?: string, mode = 'always'): Promise<Api> {
    return call(base, 'POST', '/v1/webpush/subscriptions', { token: tok ?? (await token('alice')), body: { subscription: b.subscription, topics, mode } });
  }

  async function publish(topic: string, data: unknown, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await call(base, 'POST', '/v1/publish', { body: { topic, data, ...extra } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.cursor as string;
  }

  it('talks to the stand-in over HTTPS when openssl exists (trusting its certificate through webpush.caFiles)', () => {
    assert.ok(svc.origin.startsWith(svc.tls ? 'https://' : 'http://'));
  });

  it('announces the VAPID key in discovery and at its own URL, and serves the service worker', async () => {
    const d = (await (await fetch(`${base}/.well-known/omnipush`)).json()) as { webpush: { vapidPublicKey: string; subscriptions: string; serviceWorker: string } };
    assert.equal(d.webpush.vapidPublicKey, svc.expectedKey);
    assert.equal(Buffer.from(d.webpush.vapidPublicKey, 'base64url').length, 65);
    assert.equal(d.webpush.subscriptions, `${base}/v1/webpush/subscriptions`);
    const sw = await fetch(d.webpush.serviceWorker);
    assert.equal(sw.status, 200);
    assert.equal(sw.headers.get('service-worker-allowed'), '/');
    assert.match(sw.headers.get('content-type')!, /javascript/);
    assert.match(await sw.text(), /addEventListener\('push'/);
  });

  it('refuses bad registrations with JSON errors', async () => {
    const b = svc.browser('bad');
    const tok = await token('alice', ['news/#']);
    const cases: Array<[unknown, number, string]> = [
      [{ topics: ['news/#'] }, 400, 'invalid_request'],
      [{ subscription: { ...b.subscription, endpoint: 'ftp://x/y' }, topics: ['news/#'] }, 400, 'invalid_request'],
      [{ subscription: { ...b.subscription, keys: { p256dh: Buffer.alloc(65, 4).toString('base64url'), auth: b.subscription.keys.auth } }, topics: ['news/#'] }, 400, 'invalid_request'],
      [{ subscription: { ...b.subscription, keys: { p256dh: b.subscription.keys.p256dh, auth: 'AAAA' } }, topics: ['news/#'] }, 400, 'invalid_request'],
      [{ subscription: b.subscription, topics: [] }, 400, 'invalid_request'],
      [{ subscription: b.subscription, topics: ['news/#'], mode: 'sometimes' }, 400, 'invalid_request'],
      [{ subscription: b.subscription, topics: ['news/#/x'] }, 400, 'invalid_filter'],
      [{ subscription: b.subscription, topics: ['secret/#'] }, 403, 'forbidden'],
      // not a push service this server sends to (webpush.endpointHosts): no requests to arbitrary hosts
      [{ subscription: { ...b.subscription, endpoint: 'https://169.254.169.254/latest/meta-data' }, topics: ['news/#'] }, 403, 'forbidden'],
      [{ subscription: { ...b.subscription, endpoint: b.subscription.endpoint.replace('127.0.0.1', 'localhost') }, topics: ['news/#'] }, 403, 'forbidden'],
      [{ subscription: b.subscription, topics: ['news/#'], extra: 1 }, 400, 'invalid_request'],
    ];
    for (const [body, status, code] of cases) {
      const r = await call(base, 'POST', '/v1/webpush/subscriptions', { token: tok, body });
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal((r.body.error as { code: string }).code, code, JSON.stringify(r.body));
    }
    const r = await call(base, 'POST', '/v1/webpush/subscriptions', { token: tok, raw: '{not json' });
    assert.equal(r.status, 400);
    assert.equal((r.body.error as { code: string }).code, 'invalid_json');
    assert.equal((await call(base, 'POST', '/v1/webpush/subscriptions', { token: 'x.y.z', body: {} })).status, 401);
    assert.equal((await call(base, 'PUT', '/v1/webpush/subscriptions', { token: tok, body: {} })).status, 405);
    assert.equal((await call(base, 'GET', '/v1/webpush/subscriptions')).status, 400, 'anonymous must name an endpoint');
  });

  it('delivers every matching message encrypted, with TTL, Urgency and Topic from the message', async () => {
    const b = svc.browser('deliver');
    const reg = await register(b, ['news/#']);
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.equal(reg.body.mode, 'always');
    const c1 = await publish('news/a', { title: 'Hello', body: 'World', url: 'https://app.example/n/1', extra: 1 });
    const c2 = await publish('news/b', 'plain text', { ttl: 60, properties: { urgency: 'high', 'push-topic': 'scores', title: 'Score' } });
    await publish('other/c', 'not for it');
    await waitFor(() => got('deliver').length >= 2, 'two pushes');
    const [p1, p2] = got('deliver');
    assert.equal(p1.payload!.cursor, c1);
    assert.equal(p1.payload!.topic, 'news/a');
    assert.equal(p1.payload!.title, 'Hello');
    assert.equal(p1.payload!.body, 'World');
    assert.equal(p1.payload!.url, 'https://app.example/n/1');
    assert.equal(JSON.parse(p1.payload!.data as string).extra, 1);
    assert.equal(p1.headers.ttl, '86400');
    assert.equal(p1.headers.urgency, 'normal');
    assert.equal(p1.headers.topic, undefined);
    assert.equal(p2.payload!.cursor, c2);
    assert.equal(p2.payload!.data, 'plain text');
    assert.equal(p2.payload!.title, 'Score');
    assert.ok(Number(p2.headers.ttl) <= 60 && Number(p2.headers.ttl) >= 55, String(p2.headers.ttl));
    assert.equal(p2.headers.urgency, 'high');
    assert.equal(p2.headers.topic, 'scores');
    await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { origin: svc.origin, outcome: 'delivered' })) >= 2, 'delivered metric');
    assert.deepEqual(svc.violations, []);
  });

  it('sends a too-big message without its data, and the client finds it by cursor in the history API', async () => {
    const b = svc.browser('big');
    await register(b, ['big/#']);
    const data = 'y'.repeat(6000);
    const cursor = await publish('big/one', data, { properties: { title: 'Large' } });
    await waitFor(() => got('big').length === 1, 'push');
    const p = got('big')[0].payload!;
    assert.equal(p.truncated, true);
    assert.equal(p.data, undefined);
    assert.equal(p.title, 'Large');
    assert.equal(p.cursor, cursor);
    const h = await call(base, 'GET', `/v1/history?topic=${encodeURIComponent(p.topic as string)}&since=${p.since as string}&limit=1`, { token: await token('alice') });
    const m = (h.body.messages as Array<{ cursor: string; data: string }>)[0];
    assert.equal(m.cursor, cursor);
    assert.equal(m.data, data);
    await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'delivered_without_data' })) >= 1, 'metric');
  });

  it('removes the subscription on 404 and on 410, but not on 400', async () => {
    for (const status of [404, 410, 400]) {
      const b = svc.browser(`gone${status}`);
      const reg = await register(b, [`gone/${status}`]);
      scripts.set(b.name, [{ status }]);
      await publish(`gone/${status}`, 'x');
      await waitFor(() => got(b.name).length === 1, 'attempt');
      const own = async () => (await call(base, 'GET', `/v1/webpush/subscriptions/${reg.body.id as string}`, { token: await token('alice') })).status;
      if (status === 400) {
        await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'rejected' })) >= 1, 'rejected');
        assert.equal(await own(), 200, 'kept after 400');
        await publish('gone/400', 'again');
        await waitFor(() => got(b.name).length === 2, 'still pushed after 400');
      } else {
        await waitFor(async () => (await own()) === 404, `removed after ${status}`);
        await publish(`gone/${status}`, 'after');
        await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'gone' })) >= (status === 404 ? 1 : 2), 'gone metric');
        await server.webpush!.queue.idle();
        assert.equal(got(b.name).length, 1, 'nothing sent after removal');
      }
    }
  });

  it('resends without data on 413', async () => {
    const b = svc.browser('toolarge');
    await register(b, ['tl/#']);
    scripts.set(b.name, [{ status: 413 }]);
    const cursor = await publish('tl/x', 'some data', { properties: { title: 'T' } });
    await waitFor(() => got(b.name).length === 2, 'resend');
    const [first, second] = got(b.name);
    assert.equal(first.payload!.data, 'some data');
    assert.equal(second.payload!.data, undefined);
    assert.equal(second.payload!.truncated, true);
    assert.equal(second.payload!.cursor, cursor);
    assert.equal(second.payload!.title, 'T');
  });

  it('retries 500s and a hang with backoff, honours Retry-After on 429, and delivers once', async () => {
    const b = svc.browser('retry');
    await register(b, ['retry/#']);
    scripts.set(b.name, [{ status: 500 }, { status: 0, hang: true }, { status: 429, headers: { 'retry-after': '1' } }, { status: 201 }]);
    const cursor = await publish('retry/x', 'r');
    const t0 = Date.now();
    await waitFor(() => got(b.name).some((r) => r.status === 201), 'delivered', 15_000);
    const attempts = got(b.name);
    assert.deepEqual(attempts.map((r) => r.status), [500, -1, 429, 201]);
    assert.ok(attempts.every((r) => r.payload!.cursor === cursor));
    assert.ok(Date.now() - t0 >= 1000 + 400, 'waited for the timeout and Retry-After');
    await server.webpush!.queue.idle();
    assert.equal(got(b.name).length, 4, 'nothing after the 201');
    assert.ok((await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'retry', origin: svc.origin })) >= 3);
  });

  it('gives up once the message TTL has passed', async () => {
    const b = svc.browser('ttl');
    await register(b, ['ttl/#']);
    svc.answer = (r) => (r.name === 'ttl' ? { status: 503 } : (scripts.get(r.name)?.shift() ?? { status: 201 }));
    try {
      await publish('ttl/x', 'short-lived', { ttl: 1 });
      await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'expired' })) >= 1, 'expired', 10_000);
      await server.webpush!.queue.idle();
      const n = got('ttl').length;
      assert.ok(n >= 2, `retried before giving up (${n})`);
      assert.ok(got('ttl').every((r) => Number(r.headers.ttl) <= 1));
      assert.equal(server.webpush!.queue.size, 0);
    } finally {
      svc.answer = (r) => scripts.get(r.name)?.shift() ?? { status: 201 };
    }
  });

  it('marks a subscription failing on 401/403, skips it, and re-registering clears that', async () => {
    const b = svc.browser('auth');
    const reg = await register(b, ['auth/#']);
    scripts.set(b.name, [{ status: 403 }]);
    await publish('auth/x', '1');
    const tok = await token('alice');
    await waitFor(async () => (await call(base, 'GET', `/v1/webpush/subscriptions/${reg.body.id as string}`, { token: tok })).body.failing, 'failing');
    const skipped = await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'skipped_failing' });
    await publish('auth/x', '2');
    await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'skipped_failing' })) > skipped, 'skipped');
    assert.equal(got(b.name).length, 1);
    assert.equal((await register(b, ['auth/#'])).status, 200);
    await publish('auth/x', '3');
    await waitFor(() => got(b.name).some((r) => r.payload!.data === '3' && r.status === 201), 'pushed again');
  });

  it('lists and deletes only the caller\'s own subscriptions', async () => {
    const a = svc.browser('own-a');
    const b = svc.browser('own-b');
    const alice = await token('alice');
    const bob = await token('bob');
    const ra = await register(a, ['own/#'], alice);
    const rb = await register(b, ['own/#'], bob, 'offline');
    const list = await call(base, 'GET', '/v1/webpush/subscriptions', { token: bob });
    assert.deepEqual((list.body.subscriptions as Array<{ id: string }>).map((s) => s.id), [rb.body.id]);
    assert.equal((list.body.subscriptions as Array<{ mode: string }>)[0].mode, 'offline');
    assert.equal((await call(base, 'DELETE', `/v1/webpush/subscriptions/${ra.body.id as string}`, { token: bob })).status, 404);
    assert.equal((await call(base, 'DELETE', `/v1/webpush/subscriptions?endpoint=${encodeURIComponent(b.subscription.endpoint)}`, { token: bob })).status, 200);
    assert.equal((await call(base, 'GET', '/v1/webpush/subscriptions', { token: bob })).body.subscriptions instanceof Array, true);
    assert.equal(((await call(base, 'GET', '/v1/webpush/subscriptions', { token: bob })).body.subscriptions as unknown[]).length, 0);
    await publish('own/x', 'after delete');
    await waitFor(() => got('own-a').length === 1, 'alice still pushed');
    await server.webpush!.queue.idle();
    assert.equal(got('own-b').length, 0);
    // anonymous callers reach theirs by endpoint
    const c = svc.browser('own-anon');
    assert.equal((await call(base, 'POST', '/v1/webpush/subscriptions', { body: { subscription: c.subscription, topics: ['public/#'] } })).status, 201);
    const mine = await call(base, 'GET', `/v1/webpush/subscriptions?endpoint=${encodeURIComponent(c.subscription.endpoint)}`);
    assert.equal((mine.body.subscriptions as unknown[]).length, 1);
  });

  it('offline mode: skipped while the same principal has a live WebSocket subscriber, pushed after it leaves', async () => {
    const b = svc.browser('offline');
    const tok = await token('carol');
    assert.equal((await register(b, ['chat/#'], tok, 'offline')).status, 201);
    const ws = await openWs(base, { headers: { authorization: `Bearer ${tok}` } });
    const sub = await ws.request({ type: 'subscribe', topics: ['chat/room1'], since: 'now' });
    assert.equal(sub.type, 'subscribed');
    // another principal's live subscriber does not count
    const other = await openWs(base, { headers: { authorization: `Bearer ${await token('dave')}` } });
    await other.request({ type: 'subscribe', topics: ['chat/#'], since: 'now' });
    const skipped = await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'skipped_online' });
    await publish('chat/room1', 'while online');
    await waitFor(() => ws.messages().length === 1, 'ws got it');
    await waitFor(async () => (await metric(base, 'omnipush_webpush_outcomes_total', { outcome: 'skipped_online' })) === skipped + 1, 'skipped');
    await publish('chat/room2', 'other room: no live subscriber for it');
    await waitFor(() => got('offline').some((r) => r.payload!.data === 'other room: no live subscriber for it'), 'pushed for the topic nobody reads live');
    ws.close();
    await ws.closed;
    await waitFor(() => !server.hub.hasLiveSubscriber('carol', 'chat/room1', 'webpush'), 'ws detached');
    await publish('chat/room1', 'after leaving');
    await waitFor(() => got('offline').some((r) => r.payload!.data === 'after leaving'), 'pushed once offline');
    assert.ok(!got('offline').some((r) => r.payload!.data === 'while online'));
    other.close();
    assert.deepEqual(svc.violations, []);
  });
});

describe('Web Push configuration', () => {
  it('is off without a subject, and a bad subject or half a key pair stops the start', async () => {
    const s = await startTestServer();
    try {
      assert.equal((await fetch(`${s.http}/v1/webpush/vapid-public-key`)).status, 404);
      const d = (await (await fetch(`${s.http}/.well-known/omnipush`)).json()) as Record<string, unknown>;
      assert.equal(d.webpush, undefined);
    } finally {
      await s.close();
    }
    await assert.rejects(startTestServer({ webpush: { subject: 'ops@example.com' } }), /webpush.subject must be a mailto: address or an https: URL/);
    await assert.rejects(startTestServer({ webpush: { subject: 'mailto:a@b.example', publicKey: 'abc' } }), /go together/);
  });

  it('uses configured keys', async () => {
    const { generateVapidKeys } = await import('../src/transports/webpush/vapid.js');
    const keys = generateVapidKeys();
    const s = await startTestServer({ webpush: { subject: 'https://example.com/contact', ...keys } });
    try {
      assert.equal(((await (await fetch(`${s.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey, keys.publicKey);
    } finally {
      await s.close();
    }
  });
});

describe('Web Push per-origin limit', () => {
  it('keeps at most webpush.concurrencyPerOrigin requests open at one push service', async () => {
    const svc = await startPushService();
    const server = await startTestServer({ webpush: webpushConfig(svc, { concurrencyPerOrigin: 2, requestTimeout: 30 }) });
    try {
      svc.expectedKey = server.webpush!.publicKey;
      const b = svc.browser('limit');
      assert.equal((await fetch(`${server.http}/v1/webpush/subscriptions`, { method: 'POST', body: JSON.stringify({ subscription: b.subscription, topics: ['lim/#'] }) })).status, 201);
      svc.answer = () => ({ status: 0, hang: true });
      for (let i = 0; i < 6; i++) assert.equal((await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'lim/t', data: String(i) }) })).status, 200);
      for (const seen of [2, 4, 6]) {
        await waitFor(() => svc.received.length === seen, `${seen} requests`);
        svc.release(201);
      }
      await waitFor(async () => (await metric(server.http, 'omnipush_webpush_outcomes_total', { outcome: 'delivered' })) === 6, 'six delivered');
      assert.equal(svc.maxInFlight, 2);
      assert.deepEqual(new Set(svc.received.map((r) => r.payload!.data)), new Set(['0', '1', '2', '3', '4', '5']));
    } finally {
      await server.close();
      await svc.close();
    }
  });
});
