import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { mintToken } from '../src/auth/token.js';
import { parseConfig } from '../src/config/schema.js';
import type { RunningServer } from '../src/server.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { ReceiverProcess, type EventJson } from './helpers/webhook-receiver-process.js';
import { openWs } from './helpers/ws.js';
import { mqttClient } from './helpers/mqtt.js';

const SECRET = 'a-test-secret-of-enough-length';
const ADMIN_KEY = 'admin-key-for-webhook-tests-0123456789';
const newSecret = () => `whsec_${randomBytes(24).toString('base64')}`;
const AUTH = { jwt: { secret: SECRET }, allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['#'] } };

async function publish(base: string, topic: string, data: string): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200);
  return ((await r.json()) as { cursor: string }).cursor;
}

async function admin(base: string, route: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${base}/v1/admin/${route}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** How many times each event id was in a request the receiver acknowledged (2xx). */
function ackCounts(rx: ReceiverProcess): Map<string, number> {
  const n = new Map<string, number>();
  for (const e of rx.events()) n.set(e.id, (n.get(e.id) ?? 0) + 1);
  return n;
}

describe('webhooks: each event kind, signed and verified by standardwebhooks in another process', () => {
  const secret = newSecret();
  const rx = new ReceiverProcess(secret);
  let svc: PushService;
  let server: RunningServer;

  before(async () => {
    await rx.start();
    svc = await startPushService();
    server = await startTestServer({
      auth: AUTH,
      webpush: webpushConfig(svc, { retryMinDelay: 20, retryMaxDelay: 200 }),
      webhooks: { endpoints: [{ url: rx.url, secret, events: ['connect', 'disconnect', 'subscribe', 'unsubscribe', 'message', 'webpush.gone'], filters: ['news/#'], concurrency: 1 }] },
    });
  });
  after(async () => {
    await server?.close();
    await svc?.close();
    await rx.kill();
  });

  // concurrency 1: one request at a time, so the receiver sees events in the order they happened
  const ofType = (t: string): EventJson[] => rx.events().filter((e) => e.type === t);

  it('connect, subscribe, unsubscribe and disconnect (with the reason) of a WebSocket', async () => {
    const c = await openWs(server.http);
    const sub = await c.request({ type: 'subscribe', topics: ['chat/+', 'room/1'], since: 'now' });
    await c.request({ type: 'unsubscribe', sub: sub.sub });
    c.close();
    await c.closed;
    const connect = await waitFor(() => ofType('connect').find((e) => e.data.door === 'websocket'), 'connect event');
    const id = connect.data.connection;
    assert.equal(connect.data.principal, 'anonymous');
    assert.equal(connect.data.node, server.cluster.nodeId);
    const subscribed = await waitFor(() => ofType('subscribe').find((e) => e.data.connection === id), 'subscribe event');
    assert.deepEqual([...(subscribed.data.filters as string[])].sort(), ['chat/+', 'room/1']);
    const unsubscribed = await waitFor(() => ofType('unsubscribe').find((e) => e.data.connection === id), 'unsubscribe event');
    assert.deepEqual([...(unsubscribed.data.filters as string[])].sort(), ['chat/+', 'room/1']);
    const gone = await waitFor(() => ofType('disconnect').find((e) => e.data.connection === id), 'disconnect event');
    assert.equal(gone.data.reason, 'client closed');
    assert.ok(!Number.isNaN(Date.parse(gone.timestamp)));
    for (const h of rx.received) assert.ok(h.verified, `signature of ${h.webhookId} verified: ${h.error}`);
  });

  it('the same for MQTT (v5), and SSE with its filters from the start', async () => {
    const m = await mqttClient(server, { protocolVersion: 5, clientId: 'hooked' });
    await m.subscribeAsync('m/+');
    await m.subscribeAsync('m/other');
    await m.unsubscribeAsync('m/+');
    await m.endAsync();
    const connect = await waitFor(() => ofType('connect').find((e) => e.data.door === 'mqtt'), 'mqtt connect event');
    const id = connect.data.connection;
    await waitFor(() => ofType('disconnect').find((e) => e.data.connection === id), 'mqtt disconnect event');
    const mine = rx.events().filter((e) => e.data.connection === id);
    assert.deepEqual(
      mine.filter((e) => e.type !== 'connect').map((e) => [e.type, e.data.filters ?? e.data.reason]),
      [
        ['subscribe', ['m/+']],
        ['subscribe', ['m/other']],
        ['unsubscribe', ['m/+']],
        ['unsubscribe', ['m/other']],
        ['disconnect', 'client sent DISCONNECT 0x00'],
      ],
    );

    const ac = new AbortController();
    const r = await fetch(`${server.http}/v1/sse?topic=s/1&topic=s/2`, { signal: ac.signal });
    assert.equal(r.status, 200);
    const sse = await waitFor(() => ofType('subscribe').find((e) => e.data.door === 'sse'), 'sse subscribe event');
    assert.deepEqual([...(sse.data.filters as string[])].sort(), ['s/1', 's/2']);
    ac.abort();
    await waitFor(() => ofType('disconnect').find((e) => e.data.connection === sse.data.connection), 'sse disconnect event');
  });

  it('messages on the chosen filters only, with the message in the event', async () => {
    const cursor = await publish(server.http, 'news/today', 'hello');
    await publish(server.http, 'sports/today', 'not watched');
    const after = await publish(server.http, 'news/later', 'second');
    await waitFor(() => ofType('message').some((e) => e.data.cursor === after), 'second message event');
    const msgs = ofType('message');
    assert.deepEqual(
      msgs.map((e) => [e.data.topic, e.data.data]),
      [
        ['news/today', 'hello'],
        ['news/later', 'second'],
      ],
    );
    assert.equal(msgs[0].data.cursor, cursor);
    for (const h of rx.received) assert.ok(h.verified);
  });

  it('Web Push subscriptions removed because the push service said they are gone', async () => {
    svc.answer = () => ({ status: 410 });
    const b = svc.browser('gone');
    const tok = await mintToken({ secret: SECRET, sub: 'carol', grants: { publish: ['#'], subscribe: ['#'], deny: { publish: [], subscribe: [] } } });
    const r = await fetch(`${server.http}/v1/webpush/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
      body: JSON.stringify({ subscription: b.subscription, topics: ['wp/x'] }),
    });
    assert.ok(r.status === 200 || r.status === 201, `registered: ${r.status}`);
    await publish(server.http, 'wp/x', 'push');
    const ev = await waitFor(() => ofType('webpush.gone')[0], 'webpush.gone event');
    assert.equal(ev.data.endpoint, b.subscription.endpoint);
    assert.equal(ev.data.principal, 'carol');
    assert.deepEqual(ev.data.topics, ['wp/x']);
  });
});

describe('webhooks: receiver down for a while, then back', () => {
  const secret = newSecret();
  const rx = new ReceiverProcess(secret);
  let server: RunningServer;

  before(async () => {
    await rx.start();
    server = await startTestServer({
      auth: AUTH,
      webhooks: { endpoints: [{ url: rx.url, secret, events: ['message'], filters: ['d/#'], timeout: 2 }], retry: { minDelay: 30, maxDelay: 300 } },
    });
  });
  after(async () => {
    await server?.close();
    await rx.kill();
  });

  it('delivers every event once it is back, and none twice that was acknowledged', async () => {
    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push(await publish(server.http, 'd/up', `before ${i}`));
    await waitFor(() => rx.events().length >= 5, 'first five acknowledged');
    // refused connections first, then answers that are not 2xx
    await rx.kill();
    for (let i = 0; i < 10; i++) cursors.push(await publish(server.http, 'd/down', `while down ${i}`));
    await waitFor(() => server.webhooks!.queue.list(100).some((e) => e.attempts >= 2), 'retries while the receiver is down');
    await rx.start();
    await rx.answer(503, '0');
    for (let i = 0; i < 5; i++) cursors.push(await publish(server.http, 'd/503', `while failing ${i}`));
    await waitFor(() => rx.received.filter((h) => h.status === 503).length >= 3, 'refused with 503');
    await rx.answer(200);
    const want = new Set(cursors.map((c) => `evt_m_${c}`));
    await waitFor(() => [...want].every((id) => ackCounts(rx).has(id)), 'every event acknowledged', 20_000);
    await server.webhooks!.idle();
    for (const [id, n] of ackCounts(rx)) assert.equal(n, 1, `${id} acknowledged ${n} times`);
    assert.equal(ackCounts(rx).size, want.size);
    assert.equal(server.webhooks!.queue.size, 0);
    for (const h of rx.received) assert.ok(h.verified);
    const metrics = await (await fetch(`${server.http}/metrics`)).text();
    const figure = (outcome: string) => Number(new RegExp(`^omnipush_webhooks_events_total\\{endpoint="127\\.0\\.0\\.1:${rx.port}/hooks",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    assert.equal(figure('delivered'), want.size);
    assert.ok(figure('retry') > 0, 'retries counted');
  });
});

describe('webhooks: batching, secret rotation, give-up and the admin retry', () => {
  const oldSecret = newSecret();
  const nextSecret = newSecret();
  /** Knows only the old secret: a request signed with old and new must still pass. */
  const rx = new ReceiverProcess(oldSecret);
  /** Knows only the new one. */
  const rxNew = new ReceiverProcess(nextSecret);
  let server: RunningServer;

  before(async () => {
    await rx.start();
    await rxNew.start();
    server = await startTestServer({
      auth: AUTH,
      admin: { apiKeys: [ADMIN_KEY] },
      webhooks: {
        endpoints: [
          { url: rx.url, secrets: [nextSecret, oldSecret], events: ['message'], filters: ['b/#'], batch: { maxEvents: 5, maxDelay: 100 } },
          { url: `${rxNew.url}?who=new`, secrets: [nextSecret, oldSecret], events: ['message'], filters: ['g/#'] },
        ],
        retry: { minDelay: 20, maxDelay: 100, giveUpAfter: '400ms' },
      },
    });
  });
  after(async () => {
    await server?.close();
    await rx.kill();
    await rxNew.kill();
  });

  it('sends up to maxEvents events per request as a JSON array', async () => {
    const cursors = await Promise.all(Array.from({ length: 12 }, (_, i) => publish(server.http, `b/${i}`, `batched ${i}`)));
    await waitFor(() => rx.events().length >= 12, 'twelve events');
    const sizes = rx.received.map((h) => (Array.isArray(h.body) ? h.body.length : -1));
    assert.ok(sizes.every((n) => n >= 1 && n <= 5), `batch sizes ${sizes.join(',')}`);
    assert.ok(sizes.some((n) => n > 1), `some request carried several events: ${sizes.join(',')}`);
    assert.deepEqual(new Set(rx.events().map((e) => e.data.cursor)), new Set(cursors));
    for (const h of rx.received) assert.ok(h.webhookId.startsWith(Array.isArray(h.body) && h.body.length > 1 ? 'batch_' : 'evt_'));
  });

  it('signs with every secret during a rotation, so old and new receivers verify', async () => {
    await publish(server.http, 'g/1', 'rotating');
    await waitFor(() => rxNew.events().length >= 1, 'event at the new-secret receiver');
    for (const h of [...rx.received, ...rxNew.received]) {
      assert.ok(h.verified, h.error);
      assert.equal(h.signature.split(' ').length, 2);
      assert.match(h.signature, /^v1,[A-Za-z0-9+/]+=* v1,[A-Za-z0-9+/]+=*$/);
    }
  });

  it('gives up past giveUpAfter, lists it through the server API, and retries one or all', async () => {
    await rxNew.answer(500);
    const c1 = await publish(server.http, 'g/fail', 'one');
    const c2 = await publish(server.http, 'g/fail', 'two');
    const failed = await waitFor(async () => {
      const r = await admin(server.http, 'webhooks/failed');
      const list = r.body.failed as Array<{ key: string; event: EventJson; lastError: string; attempts: number }>;
      return list.length >= 2 ? list : null;
    }, 'two given-up deliveries');
    assert.deepEqual(failed.map((f) => f.event.data.cursor).sort(), [c1, c2].sort());
    assert.ok(failed.every((f) => f.lastError.startsWith('status 500') && f.attempts >= 1));
    const page = await admin(server.http, 'webhooks/failed?limit=1');
    assert.equal((page.body.failed as unknown[]).length, 1);
    assert.equal(page.body.next, failed[0].key);
    const rest = await admin(server.http, `webhooks/failed?limit=1&after=${encodeURIComponent(String(page.body.next))}`);
    assert.deepEqual((rest.body.failed as Array<{ key: string }>).map((f) => f.key), [failed[1].key], 'the next page starts after the last key');

    await rxNew.answer(200);
    const before = rxNew.events().length;
    const one = await admin(server.http, 'webhooks/retry', { id: failed[0].key });
    assert.equal(one.status, 200);
    assert.equal(one.body.retried, 1);
    await waitFor(() => rxNew.events().some((e) => e.data.cursor === failed[0].event.data.cursor), 'the retried one delivered');
    assert.equal(rxNew.events().length, before + 1);
    const all = await admin(server.http, 'webhooks/retry', { all: true });
    assert.equal(all.body.retried, 1);
    await waitFor(() => rxNew.events().some((e) => e.data.cursor === failed[1].event.data.cursor), 'the rest delivered');
    assert.deepEqual((await admin(server.http, 'webhooks/failed')).body.failed, []);
    assert.equal((await admin(server.http, 'webhooks/retry', { id: 'nope' })).status, 404);
    const bad = await admin(server.http, 'webhooks/retry', { id: 3 });
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { code: string }).code, 'invalid_request');
  });
});

describe('webhooks configuration', () => {
  it('refuses endpoints without a usable secret, with a bad url, or filters without message events', () => {
    const ok = { url: 'https://app.example/hooks', secret: newSecret() };
    assert.doesNotThrow(() => parseConfig({ webhooks: { endpoints: [ok] } }));
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ url: ok.url }, /`secret` or `secrets`/],
      [{ ...ok, secrets: [newSecret()] }, /one of them/],
      [{ ...ok, secret: 'not-whsec' }, /whsec_/],
      [{ ...ok, secret: 'whsec_c2hvcnQ=' }, /at least 16 bytes/],
      [{ ...ok, url: 'ftp://app.example/x' }, /http: or https:/],
      [{ ...ok, filters: ['a/#'], events: ['connect'] }, /"message"/],
      [{ ...ok, events: ['presence'] }, /events/],
    ];
    for (const [endpoint, msg] of bad) assert.throws(() => parseConfig({ webhooks: { endpoints: [endpoint] } }), msg, JSON.stringify(endpoint));
  });
});
