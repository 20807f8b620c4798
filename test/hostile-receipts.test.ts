import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { mqttClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'a-test-secret-of-enough-length';
/** Small enough that one full ack of plain cursors empties the bucket (burst: ten seconds' worth). */
const LOOKUPS_PER_SECOND = 5;

function token(sub: string, publish: string[], subscribe: string[]): Promise<string> {
  return mintToken({ secret: SECRET, sub, grants: { publish, subscribe, deny: { publish: [], subscribe: [] } } });
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function call(base: string, method: string, path: string, tok: string, body?: unknown): Promise<Answer> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: r.headers };
}

const codeOf = (a: Answer) => (a.body.error as { code?: string } | undefined)?.code;

describe('hostile receipts', () => {
  let server: RunningServer;
  let base: string;
  let alice: string;
  let bob: string;
  let mallory: string;

  before(async () => {
    server = await startTestServer({
      auth: { jwt: { secret: SECRET } },
      receipts: { rules: [{ filter: 'user/{sub}/#' }], ackLookupsPerSecond: LOOKUPS_PER_SECOND },
    });
    base = server.http;
    alice = await token('alice', ['user/alice/#'], ['user/alice/#']);
    bob = await token('bob', ['user/#', 'rooms/#'], ['rooms/#']);
    mallory = await token('mallory', ['rooms/#'], ['rooms/#']);
  });
  after(async () => {
    await server?.close();
  });

  it('refuses a publish that sets the receipt property itself, on every door, and stores nothing', async () => {
    const topic = 'user/alice/forged';
    const asObject = await call(base, 'POST', '/v1/publish', bob, { topic, data: 'x', properties: { 'omnipush-receipt': 'alice' } });
    assert.equal(asObject.status, 400, JSON.stringify(asObject.body));
    assert.equal(codeOf(asObject), 'invalid_request');
    const asList = await call(base, 'POST', '/v1/publish', bob, { topic, data: 'x', properties: [['a', 'b'], ['omnipush-receipt', 'carol']] });
    assert.equal(asList.status, 400, JSON.stringify(asList.body));
    // beside a genuine request it may not name someone else either
    const beside = await call(base, 'POST', '/v1/publish', bob, { topic, data: 'x', receipt: { within: '30s', fallback: 'none' }, properties: { 'omnipush-receipt': 'carol' } });
    assert.equal(beside.status, 400, JSON.stringify(beside.body));
    assert.equal(server.receipts.pending, 0, 'a refused publish holds no receipt place');

    const ws = await openWs(base, { headers: { authorization: `Bearer ${bob}` } });
    try {
      const r = await ws.request({ type: 'publish', topic, data: 'x', properties: { 'omnipush-receipt': 'alice' } });
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'invalid_request');
    } finally {
      ws.close();
    }

    const mq = await mqttClient(server, { clientId: 'bob-forger', username: 'bob', password: bob, protocolVersion: 5 });
    try {
      const rc = await mq.publishAsync(topic, 'x', { qos: 1, properties: { userProperties: { 'omnipush-receipt': 'alice' } } }).then(
        (p) => (p as unknown as { reasonCode?: number })?.reasonCode,
        (e: unknown) => (e as { code?: number }).code,
      );
      assert.equal(rc, 0x83, `PUBACK 0x83 (Implementation specific error), got ${String(rc)}`);
    } finally {
      await mq.endAsync();
    }

    const h = await call(base, 'GET', `/v1/history?topic=${topic}`, alice);
    assert.equal(h.status, 200, JSON.stringify(h.body));
    assert.deepEqual(h.body.messages, [], 'none of the forged messages was stored');

    // the server still marks the messages that did ask
    const ok = await call(base, 'POST', '/v1/publish', bob, { topic, data: 'x', receipt: { within: '30s', fallback: 'none' }, properties: { kind: 'note' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const stored = await call(base, 'GET', `/v1/history?topic=${topic}`, alice);
    const [m] = stored.body.messages as Array<{ properties?: Array<[string, string]> }>;
    assert.deepEqual(m.properties, [
      ['kind', 'note'],
      ['omnipush-receipt', 'alice'],
    ]);
  });

  it('lets no grant publish a receipt event to $receipts/<topic>', async () => {
    const forger = await token('forger', ['user/#', '$receipts/#'], ['$receipts/#']);
    const fake = { id: 'x', type: 'delivered', cursor: 'c', topic: 'user/alice/inbox', to: 'alice', publisher: 'bob', at: new Date().toISOString() };
    const r = await call(base, 'POST', '/v1/publish', forger, { topic: '$receipts/user/alice/inbox', data: fake });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(codeOf(r), 'forbidden');
    const mq = await mqttClient(server, { clientId: 'forger-mqtt', username: 'forger', password: forger, protocolVersion: 5 });
    try {
      const rc = await mq.publishAsync('$receipts/user/alice/inbox', JSON.stringify(fake), { qos: 1 }).then(
        (p) => (p as unknown as { reasonCode?: number })?.reasonCode,
        (e: unknown) => (e as { code?: number }).code,
      );
      assert.equal(rc, 0x87, `PUBACK 0x87 (Not authorized), got ${String(rc)}`);
    } finally {
      await mq.endAsync();
    }
    const h = await call(base, 'GET', '/v1/history?topic=$receipts/user/alice/inbox', forger);
    assert.equal(h.status, 200, JSON.stringify(h.body));
    assert.deepEqual(h.body.messages, [], 'nothing forged was stored');
  });

  it('limits the acks that cost store reads per principal, and nobody else pays for a flood', async () => {
    // cursors of ordinary messages look valid, so each one acked costs a store read
    const plain: string[] = [];
    for (let i = 0; i < LOOKUPS_PER_SECOND * 10; i++) {
      const r = await call(base, 'POST', '/v1/publish', bob, { topic: `rooms/flood/${i}`, data: i });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      plain.push(r.body.cursor as string);
    }
    const first = await call(base, 'POST', '/v1/ack', mallory, { cursors: plain });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, { acked: 0, ignored: 0, unknown: plain.length });

    const again = await call(base, 'POST', '/v1/ack', mallory, { cursors: plain });
    assert.equal(again.status, 429, JSON.stringify(again.body));
    assert.equal(codeOf(again), 'rate_limited');
    assert.equal((again.body.error as { limit?: string }).limit, 'receipts.ackLookupsPerSecond');
    const retryAfter = Number(again.headers.get('retry-after'));
    assert.ok(retryAfter >= 1, `Retry-After in seconds, got ${String(again.headers.get('retry-after'))}`);

    const ws = await openWs(base, { headers: { authorization: `Bearer ${mallory}` } });
    try {
      const r = await ws.request({ type: 'ack', cursors: plain });
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'rate_limited');
      // refused acks never close the socket (the SDK sends them by itself): more than quotas.wsRefusalsBeforeClose of them
      for (let i = 0; i < 12; i++) ws.send({ type: 'ack', cursors: plain });
      await waitFor(() => ws.frames.filter((f) => f.type === 'error' && f.code === 'rate_limited').length >= 13, 'each refused ack answered');
      const pong = await ws.request({ type: 'ping' });
      assert.equal(pong.type, 'pong');
      assert.equal(ws.ws.readyState, ws.ws.OPEN);
      // malformed and foreign cursors cost no read, so they are answered even now
      const cheap = await ws.request({ type: 'ack', cursors: ['not-a-cursor', 'x'.repeat(41)] });
      assert.deepEqual([cheap.type, cheap.acked, cheap.ignored, cheap.unknown], ['acked', 0, 0, 2]);
    } finally {
      ws.close();
    }

    // the recipient's own acks are untouched by mallory's flood
    const pub = await call(base, 'POST', '/v1/publish', bob, { topic: 'user/alice/after-flood', data: 'x', receipt: { within: '30s', fallback: 'none' } });
    assert.equal(pub.status, 200, JSON.stringify(pub.body));
    const mine = await call(base, 'POST', '/v1/ack', alice, { cursors: [pub.body.cursor, ...plain.slice(0, 10)] });
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    assert.deepEqual(mine.body, { acked: 1, ignored: 0, unknown: 10 });
  });
});
