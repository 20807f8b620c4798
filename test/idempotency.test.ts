import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hashPassword } from '../src/auth/users.js';
import type { RunningServer } from '../src/server.js';
import { IdempotentPublisher } from '../src/core/idempotency.js';
import { Hub } from '../src/core/hub.js';
import { IDEMPOTENCY_KIND } from '../src/core/store.js';
import { mqttClient } from './helpers/mqtt.js';
import { storeKinds } from './helpers/store-kinds.js';
import { spawnServer, startTestServer, tempDir, waitFor } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

interface Answer {
  status: number;
  body: { cursor?: string; topic?: string; repeated?: boolean; error?: { code: string; message: string } };
  replayed: string | null;
}

async function post(base: string, body: unknown, key?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['Idempotency-Key'] = key;
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Answer['body'], replayed: r.headers.get('idempotent-replayed') };
}

async function history(base: string, filter: string): Promise<Array<{ cursor: string; data: string; properties?: unknown }>> {
  const r = await fetch(`${base}/v1/history?topic=${encodeURIComponent(filter)}&since=all&limit=1000`);
  return ((await r.json()) as { messages: Array<{ cursor: string; data: string; properties?: unknown }> }).messages;
}

describe('idempotent publish', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('HTTP: a repeated Idempotency-Key answers the first cursor and stores nothing new', async () => {
    const a = await post(server.http, { topic: 'idem/a', data: 'one' }, 'k-1');
    assert.equal(a.status, 200);
    assert.equal(a.replayed, null);
    const b = await post(server.http, { topic: 'idem/a', data: 'two' }, 'k-1');
    assert.equal(b.status, 200);
    assert.equal(b.body.cursor, a.body.cursor);
    assert.equal(b.body.repeated, true);
    assert.equal(b.replayed, 'true');
    const c = await post(server.http, { topic: 'idem/a', data: 'three' }, 'k-2');
    assert.notEqual(c.body.cursor, a.body.cursor);
    assert.deepEqual(
      (await history(server.http, 'idem/a')).map((m) => m.data),
      ['one', 'three'],
    );
  });

  it('HTTP: concurrent repeats store one message; the body field and the raw route take keys too', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => post(server.http, { topic: 'idem/c', data: `c${i}`, idempotencyKey: 'same' })));
    assert.ok(answers.every((x) => x.status === 200));
    assert.equal(new Set(answers.map((x) => x.body.cursor)).size, 1);
    assert.equal((await history(server.http, 'idem/c')).length, 1);
    const raw = async () => fetch(`${server.http}/v1/topics/idem/raw`, { method: 'POST', headers: { 'Idempotency-Key': 'raw-1' }, body: 'hi' }).then((r) => r.json() as Promise<{ cursor: string }>);
    const r1 = await raw();
    const r2 = await raw();
    assert.equal(r1.cursor, r2.cursor);
    assert.equal((await history(server.http, 'idem/raw')).length, 1);
  });

  it('HTTP: bad keys and keys on batches are refused with 400', async () => {
    const bad = await post(server.http, { topic: 'idem/bad', data: 'x' }, 'has space');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error?.code, 'invalid_request');
    const long = await post(server.http, { topic: 'idem/bad', data: 'x' }, 'k'.repeat(201));
    assert.equal(long.status, 400);
    const batch = await post(server.http, { messages: [{ topic: 'idem/bad', data: 'x' }] }, 'b-1');
    assert.equal(batch.status, 400);
    const inBatch = await post(server.http, [{ topic: 'idem/bad', data: 'x', idempotencyKey: 'b-2' }]);
    assert.equal(inBatch.status, 400);
    assert.equal((await history(server.http, 'idem/bad')).length, 0);
  });

  it('WebSocket: idempotencyKey on publish answers the first cursor', async () => {
    const ws = await openWs(server.http);
    try {
      const a = await ws.request({ type: 'publish', topic: 'idem/ws', data: 'w1', idempotencyKey: 'ws-1' });
      const b = await ws.request({ type: 'publish', topic: 'idem/ws', data: 'w2', idempotencyKey: 'ws-1' });
      assert.equal(a.type, 'ack');
      assert.equal(b.type, 'ack');
      assert.equal(b.cursor, a.cursor);
      assert.equal(b.repeated, true);
      const bad = await ws.request({ type: 'publish', topic: 'idem/ws', data: 'w3', idempotencyKey: 'bad key' });
      assert.equal(bad.type, 'error');
      assert.deepEqual(
        (await history(server.http, 'idem/ws')).map((m) => m.data),
        ['w1'],
      );
    } finally {
      ws.close();
    }
  });

  it('MQTT 5: an idempotency-key user property makes a repeat a no-op and is not kept on the message', async () => {
    const c = await mqttClient(server, { protocolVersion: 5 });
    try {
      const props = { userProperties: { 'idempotency-key': 'mq-1', other: 'kept' } };
      await c.publishAsync('idem/mqtt', 'm1', { qos: 1, properties: props });
      await c.publishAsync('idem/mqtt', 'm2', { qos: 1, properties: props });
      await c.publishAsync('idem/mqtt', 'm3', { qos: 2, properties: props });
      const h = await history(server.http, 'idem/mqtt');
      assert.deepEqual(
        h.map((m) => m.data),
        ['m1'],
      );
      assert.equal(JSON.stringify(h[0].properties).includes('idempotency-key'), false);
      assert.equal(JSON.stringify(h[0].properties).includes('kept'), true);
    } finally {
      await c.endAsync();
    }
  });

  it('keys are per principal', async () => {
    const grants = { publish: ['idem/#'], subscribe: ['idem/#'] };
    const users = [
      { username: 'alice', passwordHash: await hashPassword('pw-alice-123'), grants },
      { username: 'bob', passwordHash: await hashPassword('pw-bob-12345'), grants },
    ];
    const s = await startTestServer({ auth: { users, anonymous: { publish: ['#'], subscribe: ['#'] } } });
    try {
      const a = await mqttClient(s, { protocolVersion: 5, username: 'alice', password: 'pw-alice-123' });
      const b = await mqttClient(s, { protocolVersion: 5, username: 'bob', password: 'pw-bob-12345' });
      const props = { userProperties: { 'idempotency-key': 'shared' } };
      await a.publishAsync('idem/pp', 'alice', { qos: 1, properties: props });
      await b.publishAsync('idem/pp', 'bob', { qos: 1, properties: props });
      await a.endAsync();
      await b.endAsync();
      const stored = (await s.hub.store.range(0, s.hub.store.lastSeq(), 100)).filter((m) => m.topic === 'idem/pp');
      assert.deepEqual(
        stored.map((m) => `${m.publisher}:${m.payload.toString()}`),
        ['alice:alice', 'bob:bob'],
      );
    } finally {
      await s.close();
    }
  });

  it('a key is forgotten after the window', async () => {
    const s = await startTestServer({ triggers: { idempotency: { window: 0.3 } } });
    try {
      const a = await post(s.http, { topic: 'idem/w', data: 'a' }, 'w-1');
      const b = await post(s.http, { topic: 'idem/w', data: 'b' }, 'w-1');
      assert.equal(b.body.cursor, a.body.cursor);
      const t = Date.now();
      await waitFor(() => Date.now() - t > 400, 'the window to pass');
      const c = await post(s.http, { topic: 'idem/w', data: 'c' }, 'w-1');
      assert.notEqual(c.body.cursor, a.body.cursor);
      assert.equal(c.body.repeated, undefined);
    } finally {
      await s.close();
    }
  });
});

describe('idempotent publish across a restart (sqlite)', () => {
  const dir = tempDir('omnipush-idem-');
  after(() => dir.remove());

  it('a repeat after kill -9 and a restart answers the first cursor', async () => {
    const args = ['--store', 'sqlite', '--data', dir.path, '--log-level', 'warn'];
    const first = await spawnServer(args);
    const a = await post(first.http, { topic: 'idem/r', data: 'before' }, 'restart-1');
    assert.equal(a.status, 200);
    await first.kill();
    const second = await spawnServer(args);
    try {
      const b = await post(second.http, { topic: 'idem/r', data: 'after' }, 'restart-1');
      assert.equal(b.body.cursor, a.body.cursor);
      assert.equal(b.body.repeated, true);
      assert.deepEqual(
        (await history(second.http, 'idem/r')).map((m) => m.data),
        ['before'],
      );
    } finally {
      await second.stop();
    }
  });
});

const { kinds } = storeKinds('idem');

describe('idempotency records are written with their message, in every store', () => {
  for (const [kind, make] of kinds) {
    it(`${kind}: the record is there once append returns, and a repeat finds the first cursor`, async () => {
      const store = make();
      await store.open();
      const hub = new Hub(store);
      try {
        const [m] = await store.append([{ topic: 'idem/rec', payload: Buffer.from('x'), publishedAt: Date.now(), publisher: 'p', idempotencyKey: 'p k1' }]);
        assert.equal((m as { idempotencyKey?: string }).idempotencyKey, undefined, 'the key is not part of the stored message');
        // nothing written after append returned: the record came with the message (one script, one transaction)
        const raw = await store.getRecord(IDEMPOTENCY_KIND, 'p k1');
        assert.ok(raw, 'the record exists');
        const e = JSON.parse(raw.toString()) as { cursor?: string; seq?: number; topic: string };
        assert.equal(e.topic, 'idem/rec');
        // Redis writes it inside the append script, which knows the seq but makes no cursor
        if (kind === 'redis') assert.equal(e.seq, m.seq, JSON.stringify(e));
        else assert.equal(e.cursor, m.cursor, JSON.stringify(e));
        const seen = await new IdempotentPublisher(hub, 60_000).lookup('p k1');
        assert.equal(seen?.cursor, m.cursor);
      } finally {
        await hub.close();
        await store.close();
      }
    });
  }
});
