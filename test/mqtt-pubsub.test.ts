import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { RunningServer } from '../src/server.js';
import { mqttAddress, mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const MOSQUITTO_SUB = '/usr/bin/mosquitto_sub';
const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';
const noMosquitto = !existsSync(MOSQUITTO_SUB) || !existsSync(MOSQUITTO_PUB);
if (noMosquitto) {
  const why = `mosquitto_sub/mosquitto_pub are not installed (Debian package "mosquitto-clients")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires them`);
  console.error(`\n*** SKIPPING mosquitto client tests: ${why} ***\n`);
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('MQTT publish/subscribe', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ history: { pruneInterval: 3600 } });
  });
  after(() => server.close());

  for (const version of [4, 5] as const) {
    it(`QoS 0, 1 and 2 both ways with MQTT ${version === 4 ? '3.1.1' : '5.0'}`, async () => {
      const sub = await mqttClient(server, { protocolVersion: version });
      const pub = await mqttClient(server, { protocolVersion: version });
      const granted = await sub.subscribeAsync(`v${version}/#`, { qos: 2 });
      assert.equal(granted[0].qos, 2);
      await pub.publishAsync(`v${version}/q0`, 'zero', { qos: 0 });
      await pub.publishAsync(`v${version}/q1`, 'one', { qos: 1 });
      await pub.publishAsync(`v${version}/q2`, 'two', { qos: 2 });
      await waitFor(() => sub.received.length === 3, 'three deliveries');
      assert.deepEqual(
        sub.received.map((r) => [r.topic, r.payload, r.packet.qos]),
        [
          [`v${version}/q0`, 'zero', 0],
          [`v${version}/q1`, 'one', 1],
          [`v${version}/q2`, 'two', 2],
        ],
      );
      // the subscription grants QoS 1: a QoS 2 publish arrives at 1
      const low = await mqttClient(server, { protocolVersion: version });
      await low.subscribeAsync(`v${version}/q2`, { qos: 1 });
      await pub.publishAsync(`v${version}/q2`, 'again', { qos: 2 });
      await waitFor(() => low.received.length === 1, 'downgraded delivery');
      assert.equal(low.received[0].packet.qos, 1);
      await Promise.all([sub.endAsync(), pub.endAsync(), low.endAsync()]);
    });
  }

  it('keeps one retained message per topic, shared with the HTTP door; an empty payload clears it', async () => {
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('ret/a', 'first', { qos: 1, retain: true });
    await pub.publishAsync('ret/a', 'second', { qos: 1, retain: true });
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'ret/b', data: 'from-http', retain: true }) });
    assert.equal(r.status, 200);
    const sub = await mqttClient(server, { protocolVersion: 5 });
    await sub.subscribeAsync('ret/+', { qos: 1 });
    await waitFor(() => sub.received.length === 2, 'two retained messages');
    assert.deepEqual(sub.received.map((m) => [m.topic, m.payload, m.packet.retain]).sort(), [
      ['ret/a', 'second', true],
      ['ret/b', 'from-http', true],
    ]);
    // a live message is not flagged retained (Retain As Published is off)
    await pub.publishAsync('ret/a', 'third', { qos: 1, retain: true });
    await waitFor(() => sub.received.length === 3, 'live delivery');
    assert.equal(sub.received[2].packet.retain, false);
    await pub.publishAsync('ret/a', '', { qos: 1, retain: true });
    const sse = await openRawSse(`${server.http}/v1/sse?topic=ret/a`);
    const late = await mqttClient(server, { protocolVersion: 4 });
    await late.subscribeAsync('ret/a', { qos: 1 });
    await late.publishAsync('ret/a', 'marker', { qos: 1 });
    await waitFor(() => late.received.length === 1, 'marker');
    assert.equal(late.received[0].payload, 'marker', 'no retained message left on ret/a');
    sse.close();
    await Promise.all([pub.endAsync(), sub.endAsync(), late.endAsync()]);
  });

  it('an MQTT publish reaches SSE, WebSocket and long-poll subscribers with its cursor', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=x/mq&since=now`);
    const ws = await openWs(server.http);
    await ws.request({ type: 'subscribe', topics: ['x/#'], since: 'now' });
    const poll = fetch(`${server.http}/v1/poll?topic=x/mq&since=now&timeout=10`).then((r) => r.json() as Promise<{ messages: Array<{ data: string; cursor: string; properties?: unknown }> }>);
    await new Promise((r) => setImmediate(r));
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('x/mq', 'hello', { qos: 1, properties: { contentType: 'text/plain', userProperties: { a: '1', b: '2' } } });
    await waitFor(() => sse.events().length === 1 && ws.messages().length === 1, 'SSE and WS deliveries');
    const polled = await within(poll, 10_000, 'long-poll answer');
    const cursor = sse.events()[0].id;
    assert.ok(cursor);
    assert.equal(sse.events()[0].data, 'hello');
    assert.equal(ws.messages()[0].cursor, cursor);
    assert.equal(ws.messages()[0].contentType, 'text/plain');
    assert.deepEqual(ws.messages()[0].properties, [
      ['a', '1'],
      ['b', '2'],
    ]);
    assert.equal(polled.messages[0].data, 'hello');
    assert.equal(polled.messages[0].cursor, cursor);
    sse.close();
    ws.close();
    await pub.endAsync();
  });

  it('an HTTP or WebSocket publish reaches MQTT at min(publish QoS, granted QoS) with the cursor property', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5, properties: { userProperties: { 'omnipush-cursor': '1' } } });
    await sub.subscribeAsync('h/q2', { qos: 2 });
    await sub.subscribeAsync('h/q1', { qos: 1 });
    const post = async (body: Record<string, unknown>) => ((await (await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify(body) })).json()) as { cursor: string }).cursor;
    const c1 = await post({ topic: 'h/q2', data: 'default' });
    await post({ topic: 'h/q2', data: 'zero', qos: 0 });
    await post({ topic: 'h/q2', data: 'two', qos: 2 });
    await post({ topic: 'h/q1', data: 'capped', qos: 2 });
    const ws = await openWs(server.http);
    await ws.request({ type: 'publish', topic: 'h/q2', data: 'from-ws', ttl: 60 });
    await waitFor(() => sub.received.length === 5, 'five deliveries');
    assert.deepEqual(
      sub.received.map((r) => [r.payload, r.packet.qos]),
      [
        ['default', 1],
        ['zero', 0],
        ['two', 2],
        ['capped', 1],
        ['from-ws', 1],
      ],
    );
    assert.deepEqual({ ...sub.received[0].packet.properties?.userProperties }, { 'omnipush-cursor': c1 });
    const ttl = sub.received[4].packet.properties?.messageExpiryInterval;
    assert.ok(ttl !== undefined && ttl > 0 && ttl <= 60, `message expiry forwarded (${ttl})`);
    ws.close();
    await sub.endAsync();
  });

  it('forwards user properties in their wire order, with repeated names', async () => {
    const sub = await RawClient.open(server, 5);
    const chunks: Buffer[] = [];
    sub.socket.on('data', (d: Buffer) => chunks.push(d));
    await sub.connect({ clientId: 'order-sub', properties: { userProperties: { 'omnipush-cursor': '1' } } });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'order/t', qos: 0 }] });
    await sub.next('suback');
    const pub = await RawClient.open(server, 5);
    await pub.connect({ clientId: 'order-pub' });
    // a=1, b=2, a=3: mqtt-packet's object form would group the two a's
    const prop = (k: string, v: string) => Buffer.concat([Buffer.from([38, 0, k.length]), Buffer.from(k), Buffer.from([0, v.length]), Buffer.from(v)]);
    const props = Buffer.concat([prop('a', '1'), prop('b', '2'), prop('a', '3')]);
    const topic = Buffer.from('order/t');
    const body = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from([props.length]), props, Buffer.from('p')]);
    pub.sendRaw(Buffer.concat([Buffer.from([0x30, body.length]), body]));
    const got = (await sub.next('publish')) as mqtt.IPublishPacket;
    assert.equal(got.payload.toString(), 'p');
    const text = Buffer.concat(chunks).toString('latin1');
    const ia1 = text.indexOf('\x26\x00\x01a\x00\x011');
    const ib = text.indexOf('\x26\x00\x01b\x00\x012');
    const ia3 = text.indexOf('\x26\x00\x01a\x00\x013');
    const ic = text.indexOf('omnipush-cursor');
    assert.ok(ia1 > 0 && ia1 < ib && ib < ia3 && ia3 < ic, `order a=1, b=2, a=3, cursor in ${JSON.stringify(text)}`);
    sub.close();
    pub.close();
  });

  it('serves MQTT over WebSocket at /mqtt (subprotocol mqtt)', async () => {
    const url = `${server.http.replace(/^http/, 'ws')}/mqtt`;
    const sub = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
    const got: string[] = [];
    sub.on('message', (_t, p) => got.push(p.toString()));
    await sub.subscribeAsync('wsq/#', { qos: 1 });
    const pub = await mqttClient(server, { protocolVersion: 4 });
    await pub.publishAsync('wsq/a', 'over-ws', { qos: 1 });
    await waitFor(() => got.length === 1, 'delivery over WebSocket');
    assert.equal(got[0], 'over-ws');
    await sub.publishAsync('wsq/b', 'from-ws', { qos: 2 });
    await waitFor(() => got.length === 2, 'publish over WebSocket');
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  describe('with mosquitto_pub and mosquitto_sub', { skip: noMosquitto ? 'mosquitto-clients missing' : false }, () => {
    for (const v of ['mqttv311', 'mqttv5']) {
      it(`delivers between mosquitto clients and MQTT.js (${v})`, async () => {
        const { host, port } = mqttAddress(server);
        const js = await mqttClient(server, { protocolVersion: v === 'mqttv5' ? 5 : 4 });
        await js.subscribeAsync(`mosq/${v}`, { qos: 2 });
        const before = server.hub.subscriberCount;
        const sub = run(MOSQUITTO_SUB, ['-h', host, '-p', String(port), '-V', v, '-t', `mosq/${v}`, '-q', '2', '-C', '2', '-W', '10', '-v']);
        // mosquitto_sub is subscribed once the hub holds one more subscriber
        await waitFor(() => server.hub.subscriberCount > before, 'mosquitto_sub to subscribe');
        const pub = await run(MOSQUITTO_PUB, ['-h', host, '-p', String(port), '-V', v, '-t', `mosq/${v}`, '-q', '1', '-m', 'from-mosquitto']);
        assert.equal(pub.code, 0, pub.err);
        await js.publishAsync(`mosq/${v}`, 'from-mqttjs', { qos: 2 });
        const out = await within(sub, 15_000, 'mosquitto_sub');
        assert.equal(out.code, 0, out.err);
        assert.deepEqual(out.out.trim().split('\n'), [`mosq/${v} from-mosquitto`, `mosq/${v} from-mqttjs`]);
        await waitFor(() => js.received.length === 2, 'MQTT.js deliveries');
        assert.deepEqual(
          js.received.map((r) => r.payload),
          ['from-mosquitto', 'from-mqttjs'],
        );
        await js.endAsync();
      });
    }
  });
});
