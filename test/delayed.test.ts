import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { startCluster } from './helpers/cluster.js';
import { mqttClient } from './helpers/mqtt.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { spawnServer, startTestServer, tempDir, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

interface Answer {
  status: number;
  body: { cursor?: string | null; due?: string; id?: string; repeated?: boolean; error?: { code: string; message: string } };
}

async function post(base: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Answer['body'] };
}

async function history(base: string, filter: string): Promise<Array<{ cursor: string; data: string }>> {
  const r = await fetch(`${base}/v1/history?topic=${encodeURIComponent(filter)}&since=all&limit=1000`);
  return ((await r.json()) as { messages: Array<{ cursor: string; data: string }> }).messages;
}

describe('delayed publish', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ triggers: { delayed: { maxDelay: 3600, maxPerPrincipal: 50 } } });
  });
  after(() => server.close());

  it('HTTP delay: 202 with the due time, delivered to SSE once due and not before', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=later/a`);
    const t0 = Date.now();
    const a = await post(server.http, { topic: 'later/a', data: 'soon', delay: 0.6 });
    assert.equal(a.status, 202);
    assert.equal(a.body.cursor, null);
    assert.ok(typeof a.body.id === 'string' && a.body.id.length > 0);
    const due = Date.parse(a.body.due!);
    assert.ok(Math.abs(due - (t0 + 600)) < 500, `due ${a.body.due} is about 600 ms after the request`);
    assert.equal((await history(server.http, 'later/a')).length, 0, 'not stored before it is due');
    await waitFor(() => sse.events().some((e) => e.data === 'soon'), 'the delayed message', 5_000);
    const got = Date.now();
    sse.close();
    assert.ok(got >= due - 5, `delivered ${due - got} ms before its due time`);
    assert.deepEqual(
      (await history(server.http, 'later/a')).map((m) => m.data),
      ['soon'],
    );
  });

  it('HTTP at and duration strings; the raw route takes ?delay', async () => {
    const at = new Date(Date.now() + 300).toISOString();
    const a = await post(server.http, { topic: 'later/b', data: 'at', at });
    assert.equal(a.status, 202);
    assert.equal(Date.parse(a.body.due!), Date.parse(at));
    const b = await post(server.http, { topic: 'later/b', data: 'str', delay: '400ms' });
    assert.equal(b.status, 202);
    const r = await fetch(`${server.http}/v1/topics/later/b?delay=0.2s`, { method: 'POST', body: 'raw' });
    assert.equal(r.status, 202);
    await waitFor(async () => (await history(server.http, 'later/b')).length === 3, 'three delayed messages', 5_000);
    assert.deepEqual((await history(server.http, 'later/b')).map((m) => m.data).sort(), ['at', 'raw', 'str']);
  });

  it('refuses bad times, too long delays and both delay and at, with 400', async () => {
    for (const body of [
      { topic: 'later/bad', data: 'x', delay: 'soonish' },
      { topic: 'later/bad', data: 'x', delay: -1 },
      { topic: 'later/bad', data: 'x', at: 'tomorrow' },
      { topic: 'later/bad', data: 'x', delay: 1, at: new Date().toISOString() },
      { topic: 'later/bad', data: 'x', delay: 7200 },
    ]) {
      const a = await post(server.http, body);
      assert.equal(a.status, 400, JSON.stringify(body));
      assert.equal(a.body.error?.code, 'invalid_request');
    }
  });

  it('a repeated Idempotency-Key answers the first schedule', async () => {
    const a = await post(server.http, { topic: 'later/k', data: 'k1', delay: 0.3 }, { 'Idempotency-Key': 'later-1' });
    const b = await post(server.http, { topic: 'later/k', data: 'k2', delay: 0.3 }, { 'Idempotency-Key': 'later-1' });
    assert.equal(b.status, 202);
    assert.equal(b.body.id, a.body.id);
    assert.equal(b.body.due, a.body.due);
    await waitFor(async () => (await history(server.http, 'later/k')).length === 1, 'the one delayed message', 5_000);
    const t = Date.now();
    await waitFor(() => Date.now() - t > 300, 'a while');
    assert.deepEqual((await history(server.http, 'later/k')).map((m) => m.data), ['k1']);
  });

  it('WebSocket publish with delay acks with cursor null and the due time', async () => {
    const ws = await openWs(server.http);
    try {
      const a = await ws.request({ type: 'publish', topic: 'later/ws', data: 'w', delay: '300ms' });
      assert.equal(a.type, 'ack');
      assert.equal(a.cursor, null);
      assert.ok(Number.isFinite(Date.parse(a.due as string)));
      assert.ok(typeof a.delayed === 'string' && a.delayed.length > 0, 'the scheduled publish has an id of its own');
      const again = await ws.request({ type: 'publish', topic: 'later/ws', data: 'w', delay: '300ms', idempotencyKey: 'ws-later' });
      const repeat = await ws.request({ type: 'publish', topic: 'later/ws', data: 'w', delay: '300ms', idempotencyKey: 'ws-later' });
      assert.equal(repeat.delayed, again.delayed);
      assert.equal(repeat.repeated, true);
      await waitFor(async () => (await history(server.http, 'later/ws')).length === 2, 'the two delayed WS messages', 5_000);
    } finally {
      ws.close();
    }
  });

  it('MQTT $delayed/<seconds>/<topic> publishes to the real topic once due', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5 });
    const pub = await mqttClient(server, { protocolVersion: 5 });
    try {
      await sub.subscribeAsync('later/mqtt', { qos: 1 });
      const t0 = Date.now();
      await pub.publishAsync('$delayed/1/later/mqtt', 'm', { qos: 1 });
      await waitFor(() => sub.received.length > 0, 'the delayed MQTT message', 5_000);
      const ms = Date.now() - t0;
      assert.equal(sub.received[0].topic, 'later/mqtt');
      assert.equal(sub.received[0].payload, 'm');
      assert.ok(ms >= 950, `arrived after ${ms} ms, before its second was up`);
    } finally {
      await sub.endAsync();
      await pub.endAsync();
    }
  });

  it('grants are checked against the real topic, and the per-principal quota holds', async () => {
    const s = await startTestServer({ auth: { anonymous: { publish: ['ok/#'], subscribe: ['#'] } }, triggers: { delayed: { maxPerPrincipal: 2 } } });
    try {
      const denied = await post(s.http, { topic: 'no/x', data: 'x', delay: 1 });
      assert.equal(denied.status, 403);
      const pub = await mqttClient(s, { protocolVersion: 5 });
      try {
        const ack = await pub.publishAsync('$delayed/5/no/x', 'x', { qos: 1 });
        assert.equal((ack as { reasonCode?: number } | undefined)?.reasonCode, 0x87);
      } catch (e) {
        assert.match(String(e), /135|not authorized/i);
      } finally {
        await pub.endAsync();
      }
      assert.equal((await post(s.http, { topic: 'ok/1', data: 'x', delay: 60 })).status, 202);
      assert.equal((await post(s.http, { topic: 'ok/2', data: 'x', delay: 60 })).status, 202);
      const third = await post(s.http, { topic: 'ok/3', data: 'x', delay: 60 });
      assert.equal(third.status, 429);
      assert.equal(third.body.error?.code, 'quota_exceeded');
    } finally {
      await s.close();
    }
  });
});

describe('delayed publish across a restart (sqlite)', () => {
  const dir = tempDir('omnipush-delayed-');
  after(() => dir.remove());

  it('a message scheduled before kill -9 is published once after the restart', async () => {
    const args = ['--store', 'sqlite', '--data', dir.path, '--log-level', 'warn'];
    const first = await spawnServer(args);
    const a = await post(first.http, { topic: 'later/restart', data: 'survivor', delay: 1.5 });
    assert.equal(a.status, 202);
    await first.kill();
    const second = await spawnServer(args);
    try {
      await waitFor(async () => (await history(second.http, 'later/restart')).length > 0, 'the delayed message after the restart', 10_000);
      assert.ok(Date.now() >= Date.parse(a.body.due!) - 5);
      const t = Date.now();
      await waitFor(() => Date.now() - t > 1500, 'more than a poll interval');
      assert.deepEqual((await history(second.http, 'later/restart')).map((m) => m.data), ['survivor']);
    } finally {
      await second.stop();
    }
  });
});

describe('delayed publish in a cluster', { skip: redisMissing || undefined }, () => {
  let redis: RedisServer;
  let nodes: RunningServer[] = [];
  before(async () => {
    redis = await startRedis();
    nodes = await startCluster(redis, 'delayed:', 2);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await redis?.remove();
  });

  it('two nodes publish each delayed message once', async () => {
    const N = 40;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => post(nodes[i % 2].http, { topic: `later/cl/${i % 4}`, data: `d${i}`, delay: 0.5 + (i % 5) * 0.1 })));
    assert.ok(answers.every((x) => x.status === 202));
    await waitFor(async () => (await history(nodes[0].http, 'later/cl/#')).length >= N, 'every delayed message', 15_000);
    const t = Date.now();
    await waitFor(() => Date.now() - t > 1500, 'more than a poll interval');
    for (const n of nodes) {
      const data = (await history(n.http, 'later/cl/#')).map((m) => m.data);
      assert.equal(data.length, N, 'each published once');
      assert.equal(new Set(data).size, N);
    }
  });
});
