import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IPubackPacket, ISubackPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { startHookApp, type HookApp } from './helpers/hook-app.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

interface Msg {
  topic: string;
  data?: string;
  contentType?: string;
  properties?: Array<[string, string]>;
}

async function history(server: RunningServer, topic: string): Promise<Msg[]> {
  const r = await fetch(`${server.http}/v1/history?topic=${encodeURIComponent(topic)}`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { messages: Msg[] }).messages;
}

const publish = (server: RunningServer, topic: string, data: string) =>
  fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });

describe('subscribe and publish hooks per filter rule', () => {
  let app: HookApp;
  let server: RunningServer;
  const askedAbout = async (hook: string) => (await app.asked()).filter((a) => a.hook === hook);
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({
      hooks: {
        subscribe: [{ filter: 'guarded/#', url: `${app.url}/subscribe` }],
        publish: [{ filter: 'guarded/#', url: `${app.url}/publish` }],
      },
    });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  it('subscribe hook: SSE and long-poll get 403 with the app\'s reason; topics outside the rule never ask the app', async () => {
    const ok = await openRawSse(`${server.http}/v1/sse?topic=guarded/news`);
    assert.equal(ok.status, 200);
    ok.close();
    const no = await openRawSse(`${server.http}/v1/sse?topic=guarded/forbidden`);
    assert.equal(no.status, 403);
    assert.match(no.text(), /members only/);
    no.close();
    const poll = await fetch(`${server.http}/v1/poll?topic=guarded/forbidden/x&timeout=0`);
    assert.equal(poll.status, 403);
    // a wildcard that overlaps the rule is asked about too
    const wide = await fetch(`${server.http}/v1/poll?topic=%23&timeout=0`);
    assert.equal(wide.status, 200);
    const before = (await askedAbout('subscribe')).length;
    assert.equal((await fetch(`${server.http}/v1/poll?topic=free/x&timeout=0`)).status, 200);
    const free = await openRawSse(`${server.http}/v1/sse?topic=free/x`);
    assert.equal(free.status, 200);
    free.close();
    assert.equal((await askedAbout('subscribe')).length, before, 'free/x did not ask the app');
    const asked = await askedAbout('subscribe');
    assert.ok(asked.some((a) => a.filter === '#' && a.door === 'longpoll'));
    assert.ok(asked.some((a) => a.filter === 'guarded/forbidden' && a.door === 'sse' && a.sub === 'anonymous'));
  });

  it('subscribe hook: WebSocket gets an error frame; MQTT gets 0x87 for that filter only', async () => {
    const c = await openWs(server.http);
    try {
      const r = await c.request({ type: 'subscribe', topics: ['guarded/forbidden'] });
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'forbidden');
      assert.equal((await c.request({ type: 'subscribe', topics: ['guarded/fine'] })).type, 'subscribed');
    } finally {
      c.close();
    }
    const m = await RawClient.open(server, 5);
    try {
      assert.equal((await m.connect({ clientId: 'rules-sub' })).reasonCode, 0);
      m.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'guarded/forbidden', qos: 1 }, { topic: 'guarded/ok', qos: 1 }, { topic: 'free/y', qos: 0 }] });
      assert.deepEqual(((await m.next('suback')) as ISubackPacket).granted, [0x87, 1, 0]);
    } finally {
      m.close();
    }
    const mqttAsked = (await askedAbout('subscribe')).filter((a) => a.door === 'mqtt').map((a) => a.filter);
    assert.deepEqual(mqttAsked, ['guarded/forbidden', 'guarded/ok']);
  });

  it('publish hook: refuses, or replaces payload and properties, over HTTP, WebSocket and MQTT; free topics pass untouched', async () => {
    const denied = await publish(server, 'guarded/deny', 'x');
    assert.equal(denied.status, 403);
    assert.match(((await denied.json()) as { error: { message: string } }).error.message, /not on a Sunday/);
    assert.equal((await publish(server, 'guarded/upper', 'hello')).status, 200);
    const stored = await history(server, 'guarded/upper');
    assert.equal(stored.at(-1)?.data, 'HELLO');
    assert.equal(stored.at(-1)?.contentType, 'text/plain');
    assert.deepEqual(stored.at(-1)?.properties, [['checked', 'yes']]);

    const ws = await openWs(server.http);
    try {
      const r = await ws.request({ type: 'publish', topic: 'guarded/deny', data: 'x' });
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'forbidden');
      assert.equal((await ws.request({ type: 'publish', topic: 'guarded/upper', data: 'from ws' })).type, 'ack');
    } finally {
      ws.close();
    }
    assert.equal((await history(server, 'guarded/upper')).at(-1)?.data, 'FROM WS');

    const m = await RawClient.open(server, 5);
    try {
      assert.equal((await m.connect({ clientId: 'rules-pub' })).reasonCode, 0);
      m.send({ cmd: 'publish', topic: 'guarded/deny', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
      const no = (await m.next('puback')) as IPubackPacket;
      assert.equal(no.reasonCode, 0x87);
      m.send({ cmd: 'publish', topic: 'guarded/upper', payload: Buffer.from('from mqtt'), qos: 1, messageId: 2, retain: false, dup: false });
      // order holds: a publish on a free topic right behind a hooked one is stored after it
      m.send({ cmd: 'publish', topic: 'free/after', payload: Buffer.from('second'), qos: 1, messageId: 3, retain: false, dup: false });
      assert.equal(((await m.next('puback')) as IPubackPacket).messageId, 2);
      assert.equal(((await m.next('puback')) as IPubackPacket).messageId, 3);
    } finally {
      m.close();
    }
    assert.equal((await history(server, 'guarded/upper')).at(-1)?.data, 'FROM MQTT');
    const before = (await askedAbout('publish')).length;
    assert.equal((await publish(server, 'free/z', 'as is')).status, 200);
    assert.equal((await history(server, 'free/z')).at(-1)?.data, 'as is');
    assert.equal((await askedAbout('publish')).length, before, 'free/z did not ask the app');
  });
});

describe('rule hooks failing', () => {
  let app: HookApp;
  let server: RunningServer;
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({
      hooks: {
        subscribe: [{ filter: 'guarded/#', url: `${app.url}/subscribe` }],
        publish: [
          { filter: 'down/#', url: 'http://127.0.0.1:9/publish', timeout: 0.5 },
          { filter: 'open/#', url: 'http://127.0.0.1:9/publish', timeout: 0.5, failOpen: true },
        ],
      },
    });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  it('an app that is down refuses publishes (503 over HTTP, PUBACK 0x80 over MQTT) unless the rule fails open', async () => {
    const r = await publish(server, 'down/x', 'x');
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'unavailable');
    assert.equal((await publish(server, 'open/x', 'through')).status, 200);
    const m = await RawClient.open(server, 5);
    try {
      assert.equal((await m.connect({ clientId: 'rules-down' })).reasonCode, 0);
      m.send({ cmd: 'publish', topic: 'down/x', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false });
      const ack = (await m.next('puback')) as IPubackPacket;
      assert.equal(ack.reasonCode, 0x80);
      assert.match(ack.properties?.reasonString ?? '', /could not ask the app/);
    } finally {
      m.close();
    }
  });

  it('an answer of the wrong shape refuses the subscription with a clear error', async () => {
    const r = await fetch(`${server.http}/v1/poll?topic=guarded/garbage&timeout=0`);
    assert.equal(r.status, 503);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /answer is not valid/);
  });
});
