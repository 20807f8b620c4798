import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { mqttClient } from './helpers/mqtt.js';
import { startPushService, webpushConfig, type FakeBrowser, type PushService } from './helpers/push-service.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs, type WsClient } from './helpers/ws.js';
import { ReceiverProcess } from './helpers/webhook-receiver-process.js';
import { randomBytes } from 'node:crypto';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, type ClientOptions } from '../src/client/index.js';

const SECRET = 'a-test-secret-of-enough-length';
/** Short windows keep the tests quick; the fallback is waited for with a deadline, never slept for. */
const WITHIN = '400ms';

function token(sub: string, publish: string[], subscribe: string[], admin = false): Promise<string> {
  return mintToken({ secret: SECRET, sub, grants: { publish, subscribe, deny: { publish: [], subscribe: [] }, ...(admin ? { admin: true } : {}) } });
}

interface Api {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function call(base: string, method: string, path: string, tok: string | undefined, body?: unknown): Promise<Api> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: r.headers };
}

interface ReceiptEventJson {
  type: string;
  cursor: string;
  topic: string;
  to: string;
  publisher: string;
  door?: string;
  late?: boolean;
  reason?: string;
  registrations?: number;
}

describe('delivery receipts on one node', () => {
  let svc: PushService;
  let server: RunningServer;
  let base: string;
  let alice: string;
  let bob: string;
  let mallory: string;
  let admin: string;
  let aliceBrowser: FakeBrowser;

  before(async () => {
    svc = await startPushService();
    server = await startTestServer({
      auth: { jwt: { secret: SECRET } },
      webpush: webpushConfig(svc),
      receipts: { rules: [{ filter: 'user/{sub}/#' }], maxWithin: 60, maxPendingPerPrincipal: 50 },
    });
    base = server.http;
    svc.expectedKey = (await call(base, 'GET', '/v1/webpush/vapid-public-key', undefined)).body.publicKey as string;
    alice = await token('alice', ['user/alice/#'], ['user/alice/#']);
    bob = await token('bob', ['user/#', 'rooms/#'], ['rooms/#']);
    mallory = await token('mallory', [], ['user/#']);
    admin = await token('root', ['#'], ['#'], true);
    aliceBrowser = svc.browser('alice-phone');
    const reg = await call(base, 'POST', '/v1/webpush/subscriptions', alice, { subscription: aliceBrowser.subscription, topics: ['user/alice/#'] });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
  });
  after(async () => {
    await server?.close();
    await svc?.close();
  });

  async function publish(topic: string, receipt: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}, tok = bob): Promise<string> {
    const r = await call(base, 'POST', '/v1/publish', tok, { topic, data: { title: 'hi', body: topic }, ...(receipt ? { receipt } : {}), ...extra });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.cursor as string;
  }

  async function events(tok: string, cursor?: string): Promise<ReceiptEventJson[]> {
    const out: ReceiptEventJson[] = [];
    let c = cursor;
    for (;;) {
      const r = await call(base, 'GET', `/v1/receipts?limit=100${c ? `&cursor=${c}` : ''}`, tok);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      out.push(...(r.body.receipts as ReceiptEventJson[]));
      if (!r.body.more) return out;
      c = r.body.cursor as string;
    }
  }

  const eventsOf = async (cursor: string, tok = bob) => (await events(tok)).filter((e) => e.cursor === cursor);
  const pushedCursors = () => svc.received.filter((r) => r.name === 'alice-phone').map((r) => r.payload?.cursor);

  /**
   * Proves no fallback went out for `cursor`: a control message published after it with nobody to
   * ack it is pushed once its (equal) window ends, and the stand-in has the control but not `cursor`.
   */
  async function assertNoPushFor(cursor: string): Promise<void> {
    const control = await publish('user/alice/control', { within: WITHIN });
    await waitFor(() => pushedCursors().includes(control), 'the control message pushed');
    assert.ok(!pushedCursors().includes(cursor), `no push for the acknowledged message ${cursor}`);
  }

  async function aliceWs(): Promise<WsClient> {
    const ws = await openWs(base, { headers: { authorization: `Bearer ${alice}` } });
    const sub = await ws.request({ type: 'subscribe', topics: ['user/alice/#'], since: 'now' });
    assert.equal(sub.type, 'subscribed');
    return ws;
  }

  it('marks the message with its recipient on every door, so a client knows what to acknowledge', async () => {
    const ws = await aliceWs();
    try {
      const cursor = await publish('user/alice/inbox', { within: '30s', fallback: 'none' });
      const m = await waitFor(() => ws.messages().find((f) => f.cursor === cursor), 'the message on WebSocket');
      assert.deepEqual(m.properties, [['omnipush-receipt', 'alice']]);
      ws.send({ type: 'ack', cursors: [cursor] });
      await waitFor(async () => (await eventsOf(cursor)).length === 1, 'the delivered event');
    } finally {
      ws.close();
    }
  });

  it('WebSocket: an ack frame counts; the fallback does not fire', async () => {
    const ws = await aliceWs();
    try {
      const cursor = await publish('user/alice/inbox', { within: WITHIN, fallback: 'webpush' });
      await waitFor(() => ws.messages().find((f) => f.cursor === cursor), 'the message');
      const reply = await ws.request({ type: 'ack', cursors: [cursor] });
      assert.deepEqual({ type: reply.type, acked: reply.acked, ignored: reply.ignored }, { type: 'acked', acked: 1, ignored: 0 });
      const ev = await eventsOf(cursor);
      assert.deepEqual(
        ev.map((e) => [e.type, e.door, e.to, e.publisher]),
        [['delivered', 'websocket', 'alice', 'bob']],
      );
      await assertNoPushFor(cursor);
      assert.deepEqual((await eventsOf(cursor)).map((e) => e.type), ['delivered'], 'nothing after the window either');
    } finally {
      ws.close();
    }
  });

  it('nobody acknowledges: the encrypted fallback goes to the recipient\'s registration once, and is reported as pushed', async () => {
    const before = svc.received.length;
    const cursor = await publish('user/alice/inbox', { within: WITHIN });
    // the registration matches the topic but holds the message back while the window runs
    const got = await waitFor(() => svc.received.slice(before).find((r) => r.payload?.cursor === cursor), 'the fallback push');
    assert.equal(got.payload?.topic, 'user/alice/inbox');
    assert.equal(got.payload?.title, 'hi');
    await waitFor(async () => (await eventsOf(cursor)).some((e) => e.type === 'pushed'), 'the pushed event');
    const ev = await eventsOf(cursor);
    assert.deepEqual(ev.map((e) => [e.type, e.registrations]), [['pushed', 1]]);
    await assertNoPushFor('none-other');
    assert.equal(pushedCursors().filter((c) => c === cursor).length, 1, 'pushed exactly once');
    assert.deepEqual(svc.violations, []);
  });

  it('a late ack after the push is recorded as late, not acted on; seen after it too', async () => {
    const cursor = await publish('user/alice/late', { within: WITHIN });
    await waitFor(() => pushedCursors().includes(cursor), 'the fallback push');
    await waitFor(async () => (await eventsOf(cursor)).some((e) => e.type === 'pushed'), 'the pushed event');
    const r = await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], seen: true, door: 'sse' });
    assert.deepEqual(r.body, { acked: 1, ignored: 0, unknown: 0 });
    const ev = await eventsOf(cursor);
    assert.deepEqual(ev.map((e) => [e.type, e.late ?? false]), [['pushed', false], ['delivered', true], ['seen', true]]);
    // a second late ack adds nothing
    await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], seen: true });
    assert.equal((await eventsOf(cursor)).length, 3);
  });

  it('fallback none: expired, nothing pushed', async () => {
    const cursor = await publish('user/alice/inbox', { within: WITHIN, fallback: 'none' });
    await waitFor(async () => (await eventsOf(cursor)).some((e) => e.type === 'expired'), 'the expired event');
    assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.reason]), [['expired', 'fallback none']]);
    await assertNoPushFor(cursor);
  });

  it('SSE: the stream shows the marker, POST /v1/ack counts (and seen after it)', async () => {
    const sse = await openRawSse(`${base}/v1/sse?topic=user/alice/%23&since=now&format=json&access_token=${alice}`);
    try {
      assert.equal(sse.status, 200);
      // `since=now`: the stream is attached when its head is written
      const cursor = await publish('user/alice/sse', { within: '3s' });
      await waitFor(() => sse.events().some((e) => e.id === cursor), 'the message on the SSE stream');
      const data = JSON.parse(sse.events().find((e) => e.id === cursor)!.data) as { properties: Array<[string, string]> };
      assert.deepEqual(data.properties, [['omnipush-receipt', 'alice']]);
      const r = await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], door: 'sse' });
      assert.deepEqual(r.body, { acked: 1, ignored: 0, unknown: 0 });
      await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], seen: true, door: 'sse' });
      assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.door]), [['delivered', 'sse'], ['seen', 'sse']]);
      await assertNoPushFor(cursor);
    } finally {
      sse.close();
    }
  });

  it('long-poll: POST /v1/ack with door longpoll counts', async () => {
    const cursor = await publish('user/alice/poll', { within: '3s' });
    const since = `${cursor.split('_')[0]}_${(parseInt(cursor.split('_')[1], 36) - 1).toString(36)}`;
    const r = await call(base, 'GET', `/v1/poll?topic=user/alice/%23&since=${since}`, alice);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const m = (r.body.messages as Array<{ cursor: string; properties?: Array<[string, string]> }>).find((x) => x.cursor === cursor);
    assert.deepEqual(m?.properties, [['omnipush-receipt', 'alice']]);
    const a = await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], door: 'longpoll' });
    assert.deepEqual(a.body, { acked: 1, ignored: 0, unknown: 0 });
    assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.door]), [['delivered', 'longpoll']]);
    await assertNoPushFor(cursor);
  });

  it('MQTT: the PUBACK of the QoS 1 delivery to the recipient counts', async () => {
    const phone = await mqttClient(server, { clientId: 'alice-mqtt', username: 'alice', password: alice, protocolVersion: 5 });
    try {
      // not the control topic of assertNoPushFor: the phone would acknowledge that too
      await phone.subscribeAsync('user/alice/mqtt', { qos: 1 });
      const cursor = await publish('user/alice/mqtt', { within: WITHIN });
      await waitFor(() => phone.received.find((m) => m.topic === 'user/alice/mqtt'), 'the MQTT delivery');
      await waitFor(async () => (await eventsOf(cursor)).length > 0, 'the delivered event');
      assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.door]), [['delivered', 'mqtt']]);
      await assertNoPushFor(cursor);
    } finally {
      await phone.endAsync();
    }
  });

  it('MQTT: the PUBREC of a QoS 2 delivery counts too; a QoS 0 delivery cannot acknowledge', async () => {
    const phone = await mqttClient(server, { clientId: 'alice-qos2', username: 'alice', password: alice, protocolVersion: 5 });
    const qos0 = await mqttClient(server, { clientId: 'alice-qos0', username: 'alice', password: alice, protocolVersion: 5 });
    try {
      await phone.subscribeAsync('user/alice/q2', { qos: 2 });
      await qos0.subscribeAsync('user/alice/q0', { qos: 0 });
      const c2 = await publish('user/alice/q2', { within: WITHIN }, { qos: 2 });
      await waitFor(async () => (await eventsOf(c2)).length > 0, 'the delivered event of the QoS 2 delivery');
      assert.deepEqual((await eventsOf(c2)).map((e) => [e.type, e.door]), [['delivered', 'mqtt']]);
      const c0 = await publish('user/alice/q0', { within: WITHIN });
      await waitFor(() => qos0.received.find((m) => m.topic === 'user/alice/q0'), 'the QoS 0 delivery');
      await waitFor(() => pushedCursors().includes(c0), 'the fallback for the QoS 0 delivery');
    } finally {
      await Promise.all([phone.endAsync(), qos0.endAsync()]);
    }
  });

  it('two tabs and a phone of one principal: one acknowledgement is enough, the others add nothing, no push', async () => {
    const tab1 = await aliceWs();
    const tab2 = await aliceWs();
    const phone = await mqttClient(server, { clientId: 'alice-phone-2', username: 'alice', password: alice, protocolVersion: 5 });
    try {
      await phone.subscribeAsync('user/alice/inbox', { qos: 1 });
      const cursor = await publish('user/alice/inbox', { within: WITHIN });
      await waitFor(() => tab1.messages().find((f) => f.cursor === cursor) && tab2.messages().find((f) => f.cursor === cursor), 'both tabs got it');
      await waitFor(() => phone.received.find((m) => m.topic === 'user/alice/inbox'), 'the phone got it');
      await waitFor(async () => (await eventsOf(cursor)).length > 0, 'the delivered event (the phone\'s PUBACK)');
      tab1.send({ type: 'ack', cursors: [cursor] });
      await tab2.request({ type: 'ack', cursors: [cursor] });
      await tab1.request({ type: 'ping' });
      const ev = await eventsOf(cursor);
      assert.deepEqual(ev.map((e) => e.type), ['delivered'], 'one delivered event whoever acked first');
      await assertNoPushFor(cursor);
    } finally {
      tab1.close();
      tab2.close();
      await phone.endAsync();
    }
  });

  it("another principal's ack is ignored (counted) and the fallback still fires", async () => {
    const snoop = await openWs(base, { headers: { authorization: `Bearer ${mallory}` } });
    try {
      await snoop.request({ type: 'subscribe', topics: ['user/alice/#'], since: 'now' });
      const cursor = await publish('user/alice/inbox', { within: WITHIN });
      await waitFor(() => snoop.messages().find((f) => f.cursor === cursor), 'mallory sees the message');
      const reply = await snoop.request({ type: 'ack', cursors: [cursor] });
      assert.deepEqual([reply.acked, reply.ignored], [0, 1]);
      const http = await call(base, 'POST', '/v1/ack', mallory, { cursors: [cursor], seen: true });
      assert.deepEqual(http.body, { acked: 0, ignored: 1, unknown: 0 });
      await waitFor(() => pushedCursors().includes(cursor), 'the fallback push');
      assert.deepEqual((await eventsOf(cursor)).map((e) => e.type), ['pushed']);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      const ignored = /omnipush_receipt_acks_total\{outcome="ignored"\} (\d+)/.exec(metrics);
      assert.ok(ignored && Number(ignored[1]) >= 2, 'the ignored acks are counted in the metrics');
    } finally {
      snoop.close();
    }
  });

  it('the message may name its recipient with "to"; a topic naming nobody is refused with no_recipient', async () => {
    const none = await call(base, 'POST', '/v1/publish', bob, { topic: 'rooms/lobby', data: 'x', receipt: { within: '5s' } });
    assert.equal(none.status, 400);
    assert.equal((none.body.error as { code: string }).code, 'no_recipient');
    const ws = await openWs(base, { headers: { authorization: `Bearer ${await token('carol', [], ['rooms/#'])}` } });
    try {
      await ws.request({ type: 'subscribe', topics: ['rooms/#'], since: 'now' });
      const cursor = await publish('rooms/lobby', { within: '5s', fallback: 'none' }, { to: 'carol' });
      const m = await waitFor(() => ws.messages().find((f) => f.cursor === cursor), 'carol gets it');
      assert.deepEqual(m.properties, [['omnipush-receipt', 'carol']]);
      await ws.request({ type: 'seen', cursors: [cursor] });
      assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.to]), [['delivered', 'carol'], ['seen', 'carol']]);
    } finally {
      ws.close();
    }
  });

  it('refuses bad requests clearly: within over the limit, bad fields, batches, delayed receipts', async () => {
    const cases: Array<[unknown, number, string]> = [
      [{ topic: 'user/alice/x', receipt: { within: '2h' } }, 400, 'invalid_request'],
      [{ topic: 'user/alice/x', receipt: { within: 'soon' } }, 400, 'invalid_request'],
      [{ topic: 'user/alice/x', receipt: { within: '5s', fallback: 'sms' } }, 400, 'invalid_request'],
      [{ topic: 'user/alice/x', receipt: { within: '5s', extra: 1 } }, 400, 'invalid_request'],
      [{ topic: 'user/alice/x', to: 'alice' }, 400, 'invalid_request'],
      [{ topic: 'user/alice/x', receipt: { within: '5s' }, delay: '10s' }, 400, 'invalid_request'],
      [[{ topic: 'user/alice/x', receipt: { within: '5s' } }], 400, 'invalid_request'],
      [{ topic: 'secret/x', receipt: { within: '5s' }, to: 'alice' }, 403, 'forbidden'],
    ];
    for (const [body, status, code] of cases) {
      const r = await call(base, 'POST', '/v1/publish', bob, body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal((r.body.error as { code: string }).code, code, JSON.stringify(body));
    }
  });

  it('POST /v1/ack: bounded count and body, strict fields, authenticated; unknown cursors are cheap answers', async () => {
    const many = Array.from({ length: 501 }, (_, i) => `0_${i}`);
    assert.equal((await call(base, 'POST', '/v1/ack', alice, { cursors: many })).status, 400);
    assert.equal((await call(base, 'POST', '/v1/ack', alice, 'x'.repeat(100_000))).status, 413);
    assert.equal((await call(base, 'POST', '/v1/ack', alice, { cursors: [] })).status, 400);
    assert.equal((await call(base, 'POST', '/v1/ack', alice, { cursors: ['a'], extra: 1 })).status, 400);
    assert.equal((await call(base, 'POST', '/v1/ack', alice, '{')).status, 400);
    assert.equal((await call(base, 'POST', '/v1/ack', undefined, { cursors: ['a'] })).status, 401);
    const r = await call(base, 'POST', '/v1/ack', alice, { cursors: ['nope', 42, 'zzzz_1', `${server.hub.epoch}_zzzzzz`] });
    assert.deepEqual(r.body, { acked: 0, ignored: 0, unknown: 4 });
    const ws = await aliceWs();
    try {
      const bad = await ws.request({ type: 'ack', cursors: 'x' });
      assert.equal(bad.type, 'error');
      assert.equal(bad.code, 'invalid_request');
    } finally {
      ws.close();
    }
  });

  it('GET /v1/receipts shows a publisher only its own messages\' receipts; the admin grant sees all', async () => {
    const cursor = await publish('user/alice/mine', { within: '5s', fallback: 'none' });
    await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor] });
    assert.equal((await eventsOf(cursor, bob)).length, 1);
    assert.equal((await eventsOf(cursor, alice)).length, 0, 'the recipient did not publish it');
    assert.equal((await eventsOf(cursor, admin)).length, 1);
    const other = await call(base, 'GET', '/v1/receipts?publisher=bob', alice);
    assert.equal(other.status, 403);
    // paging: every event once, in order
    const all = await events(bob);
    const paged: ReceiptEventJson[] = [];
    let c: string | undefined;
    for (;;) {
      const r = await call(base, 'GET', `/v1/receipts?limit=2${c ? `&cursor=${c}` : ''}`, bob);
      paged.push(...(r.body.receipts as ReceiptEventJson[]));
      if (!r.body.more) break;
      c = r.body.cursor as string;
    }
    assert.deepEqual(paged, all);
    const foreignCursor = await call(base, 'GET', `/v1/receipts?cursor=${Buffer.from('alice 1').toString('base64url')}`, bob);
    assert.equal(foreignCursor.status, 400);
  });

  it('$receipts/<topic> reaches an MQTT publisher allowed to publish there; # does not match it; others are refused', async () => {
    const pub = await mqttClient(server, { clientId: 'bob-app', username: 'bob', password: bob, protocolVersion: 5 });
    const all = await mqttClient(server, { clientId: 'root-all', username: 'root', password: admin, protocolVersion: 5 });
    const nosy = await mqttClient(server, { clientId: 'mallory-r', username: 'mallory', password: mallory, protocolVersion: 5 });
    try {
      const granted = await pub.subscribeAsync('$receipts/user/+/inbox', { qos: 1 });
      assert.equal(granted[0].qos, 1);
      await all.subscribeAsync('#', { qos: 0 });
      const refused = await nosy.subscribeAsync('$receipts/user/+/inbox', { qos: 1 }).then(
        (g) => g[0].qos,
        (e: unknown) => (e as { packet?: { granted?: number[] } }).packet?.granted?.[0],
      );
      assert.equal(refused, 0x87, 'no publish grant on user/+/inbox: no receipts of it');
      const cursor = await publish('user/alice/inbox', { within: '5s', fallback: 'none' });
      await call(base, 'POST', '/v1/ack', alice, { cursors: [cursor], door: 'sse' });
      const got = await waitFor(() => pub.received.find((m) => m.topic === '$receipts/user/alice/inbox' && m.payload.includes(cursor)), 'the receipt on $receipts');
      const e = JSON.parse(got.payload) as ReceiptEventJson;
      assert.deepEqual([e.type, e.cursor, e.to, e.door], ['delivered', cursor, 'alice', 'sse']);
      await waitFor(() => all.received.find((m) => m.topic === 'user/alice/inbox' && m.packet.properties?.userProperties?.['omnipush-receipt'] === 'alice'), '# subscriber gets the message');
      assert.ok(!all.received.some((m) => m.topic.startsWith('$receipts/')), 'a leading # never matches $receipts/');
    } finally {
      await Promise.all([pub.endAsync(), all.endAsync(), nosy.endAsync()]);
    }
  });

  it('an MQTT 5 publisher asks with receipt-* user properties', async () => {
    const pub = await mqttClient(server, { clientId: 'bob-mqtt-pub', username: 'bob', password: bob, protocolVersion: 5 });
    try {
      await pub.subscribeAsync('$receipts/user/alice/#', { qos: 1 });
      await pub.publishAsync('user/alice/from-mqtt', 'hello', { qos: 1, properties: { userProperties: { 'receipt-within': '5s', 'receipt-fallback': 'none' } } });
      const h = await call(base, 'GET', '/v1/history?topic=user/alice/from-mqtt', alice);
      const m = (h.body.messages as Array<{ cursor: string; properties?: Array<[string, string]> }>)[0];
      assert.deepEqual(m.properties, [['omnipush-receipt', 'alice']], 'the receipt-* properties are taken out, the marker put in');
      await call(base, 'POST', '/v1/ack', alice, { cursors: [m.cursor] });
      await waitFor(() => pub.received.find((x) => x.topic === '$receipts/user/alice/from-mqtt'), 'the receipt event over MQTT');
      const bad = await pub.publishAsync('rooms/x', 'y', { qos: 1, properties: { userProperties: { 'receipt-within': '5s' } } }).then(
        (p) => (p as unknown as { reasonCode?: number })?.reasonCode,
        (e: unknown) => (e as { code?: number }).code,
      );
      assert.ok(bad !== undefined && bad >= 0x80, `refused with a reason code, got ${String(bad)}`);
    } finally {
      await pub.endAsync();
    }
  });

  it('bounds pending receipts per publisher with 429 quota_exceeded', async () => {
    const flood = await token('flood', ['user/#'], []);
    const cursors: string[] = [];
    for (let i = 0; i < 50; i++) cursors.push(await publish(`user/zed/${i}`, { within: '60s', fallback: 'none' }, {}, flood));
    const r = await call(base, 'POST', '/v1/publish', flood, { topic: 'user/zed/over', data: 'x', receipt: { within: '60s' } });
    assert.equal(r.status, 429);
    assert.equal((r.body.error as { code: string }).code, 'quota_exceeded');
    // another publisher is not held back
    await publish('user/alice/other', { within: '60s', fallback: 'none' });
    // an ack frees a place
    const zed = await token('zed', [], ['user/zed/#']);
    await call(base, 'POST', '/v1/ack', zed, { cursors: [cursors[0]] });
    await publish('user/zed/again', { within: '60s', fallback: 'none' }, {}, flood);
  });

  it('the SDK in Node: publish({receipt, to}) over WebSocket; the recipient\'s client acks on each door by itself, and seen() reports', async () => {
    const impls = { WebSocket: WebSocket as unknown as ClientOptions['WebSocket'], EventSource: EventSource as unknown as ClientOptions['EventSource'] };
    const sender = await connect(base, { ...impls, token: bob, transports: ['websocket'] });
    const carol = await token('carol', [], ['rooms/#']);
    try {
      for (const transport of ['websocket', 'sse', 'longpoll'] as const) {
        const client = await connect(base, { ...impls, token: carol, transports: [transport] });
        try {
          const got: string[] = [];
          client.subscribe('rooms/#', (m) => got.push(m.cursor), { since: 'now' });
          // the stream may attach a moment after subscribe(): publish until one arrives
          let cursor = '';
          await waitFor(async () => {
            cursor = await sender.publish(`rooms/${transport}`, 'hi', { receipt: { within: '5s', fallback: 'none' }, to: 'carol' });
            return waitFor(() => got.includes(cursor), 'arrived', 300).catch(() => false);
          }, `a message over ${transport}`);
          await waitFor(async () => (await eventsOf(cursor)).length === 1, `the SDK's ack over ${transport}`);
          client.seen(cursor);
          await waitFor(async () => (await eventsOf(cursor)).length === 2, 'the seen event');
          assert.deepEqual((await eventsOf(cursor)).map((e) => [e.type, e.door, e.to]), [['delivered', transport, 'carol'], ['seen', transport, 'carol']]);
        } finally {
          client.close();
        }
      }
    } finally {
      sender.close();
    }
  });

  it('a message without a receipt request is pushed at once as before (the hold-back is only for receipts)', async () => {
    const cursor = await publish('user/alice/plain', undefined);
    await waitFor(() => pushedCursors().includes(cursor), 'the ordinary push');
  });
});

describe('receipt events as webhooks', () => {
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const rx = new ReceiverProcess(secret);
  let server: RunningServer;

  before(async () => {
    await rx.start();
    server = await startTestServer({
      receipts: { rules: [{ filter: 'user/{sub}/#' }] },
      webhooks: { endpoints: [{ url: rx.url, secret, events: ['message.receipt'] }] },
    });
  });
  after(async () => {
    await server?.close();
    await rx.kill();
  });

  it('sends message.receipt for delivered and expired, signed, with the event as data', async () => {
    const post = async (path: string, body: unknown) => (await fetch(`${server.http}${path}`, { method: 'POST', body: JSON.stringify(body) })).json() as Promise<Record<string, unknown>>;
    const acked = (await post('/v1/publish', { topic: 'user/anonymous/a', data: 'x', receipt: { within: '5s', fallback: 'none' } })).cursor as string;
    const expired = (await post('/v1/publish', { topic: 'user/anonymous/b', data: 'y', receipt: { within: '200ms', fallback: 'none' } })).cursor as string;
    await post('/v1/ack', { cursors: [acked] });
    const got = (c: string) => rx.events().filter((e) => e.type === 'message.receipt' && (e.data as { cursor?: string }).cursor === c);
    await waitFor(() => got(acked).length && got(expired).length, 'both webhook events');
    const d1 = got(acked)[0].data as unknown as ReceiptEventJson;
    assert.deepEqual([d1.type, d1.door, d1.to, d1.publisher, d1.topic], ['delivered', 'http', 'anonymous', 'anonymous', 'user/anonymous/a']);
    const d2 = got(expired)[0].data as unknown as ReceiptEventJson;
    assert.deepEqual([d2.type, d2.reason], ['expired', 'fallback none']);
  });
});

describe('receipts are kept for receipts.keep', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ receipts: { rules: [{ filter: 'user/{sub}/#' }], keep: '1s' } });
  });
  after(async () => {
    await server?.close();
  });

  it('sweeps finished receipts and their events after keep; an ack then finds nothing', async () => {
    const post = async (path: string, body: unknown) => (await fetch(`${server.http}${path}`, { method: 'POST', body: JSON.stringify(body) })).json() as Promise<Record<string, unknown>>;
    const cursor = (await post('/v1/publish', { topic: 'user/anonymous/k', data: 'x', receipt: { within: '30s', fallback: 'none' } })).cursor as string;
    assert.deepEqual(await post('/v1/ack', { cursors: [cursor] }), { acked: 1, ignored: 0, unknown: 0 });
    const listed = async () => ((await (await fetch(`${server.http}/v1/receipts`)).json()) as { receipts: ReceiptEventJson[] }).receipts.filter((e) => e.cursor === cursor);
    assert.equal((await listed()).length, 1);
    await waitFor(async () => (await listed()).length === 0, 'the event swept after keep');
    assert.deepEqual(await post('/v1/ack', { cursors: [cursor], seen: true }), { acked: 0, ignored: 0, unknown: 1 });
  });
});
