import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IConnackPacket, IDisconnectPacket, IPublishPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, tempDir, waitFor } from './helpers/server.js';

const persistent = (clientId: string, expiry = 300) => ({ clientId, clean: false, properties: { sessionExpiryInterval: expiry } });

describe('MQTT sessions', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ history: { pruneInterval: 3600 } });
  });
  after(() => server.close());

  it('assigns a client identifier to an empty one (v5); 3.1.1 refuses an empty one without clean session', async () => {
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: '' });
    assert.equal(ack.reasonCode, 0);
    assert.match(ack.properties?.assignedClientIdentifier ?? '', /^auto-/);
    c.close();
    const old = await RawClient.open(server, 4);
    // CONNECT, 3.1.1, clean session 0, keepalive 60, empty client identifier (mqtt-packet will not write it)
    old.sendRaw(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0]));
    const refused = (await old.next('connack')) as IConnackPacket;
    assert.equal(refused.returnCode, 2);
    await old.waitClosed();
  });

  it('takes over a session: the older connection gets DISCONNECT 0x8E', async () => {
    const a = await RawClient.open(server, 5);
    await a.connect(persistent('takeover'));
    a.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tk/#', qos: 1 }] });
    await a.next('suback');
    const b = await RawClient.open(server, 5);
    const ack = await b.connect(persistent('takeover'));
    assert.equal(ack.sessionPresent, true, 'the session goes on with the new connection');
    const d = (await a.next('disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0x8e);
    await a.waitClosed();
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('tk/x', 'to-b', { qos: 1 });
    const got = (await b.next('publish')) as IPublishPacket;
    assert.equal(got.payload.toString(), 'to-b');
    b.close();
    await pub.endAsync();
  });

  it('QoS 2 inbound: exactly once when the client reconnects mid-flow and sends the PUBLISH again', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5 });
    await sub.subscribeAsync('q2in/#', { qos: 2 });
    const pub = await RawClient.open(server, 5);
    await pub.connect(persistent('q2-publisher'));
    pub.send({ cmd: 'publish', topic: 'q2in/t', payload: Buffer.from('once'), qos: 2, messageId: 7, dup: false, retain: false });
    assert.equal(((await pub.next('pubrec')) as IPubrecPacket).messageId, 7);
    pub.close();
    const again = await RawClient.open(server, 5);
    const ack = await again.connect(persistent('q2-publisher'));
    assert.equal(ack.sessionPresent, true);
    again.send({ cmd: 'publish', topic: 'q2in/t', payload: Buffer.from('once'), qos: 2, messageId: 7, dup: true, retain: false });
    assert.equal(((await again.next('pubrec')) as IPubrecPacket).messageId, 7);
    again.send({ cmd: 'pubrel', messageId: 7 });
    assert.equal((await again.next('pubcomp')).messageId, 7);
    // the packet id is free again: a new message under it is a new message
    again.send({ cmd: 'publish', topic: 'q2in/t', payload: Buffer.from('marker'), qos: 2, messageId: 7, dup: false, retain: false });
    await again.next('pubrec');
    again.send({ cmd: 'pubrel', messageId: 7 });
    await again.next('pubcomp');
    await waitFor(() => sub.received.some((r) => r.payload === 'marker'), 'marker');
    assert.deepEqual(
      sub.received.map((r) => r.payload),
      ['once', 'marker'],
    );
    again.close();
    await sub.endAsync();
  });

  it('QoS 2 outbound: PUBLISH again with DUP and the same id, then PUBREL again, across reconnects', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect(persistent('q2-subscriber'));
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q2out/t', qos: 2 }] });
    await c.next('suback');
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('q2out/t', 'exactly-once', { qos: 2 });
    const first = (await c.next('publish')) as IPublishPacket;
    assert.equal(first.dup, false);
    c.close();

    const c2 = await RawClient.open(server, 5);
    assert.equal((await c2.connect(persistent('q2-subscriber'))).sessionPresent, true);
    const again = (await c2.next('publish')) as IPublishPacket;
    assert.equal(again.dup, true);
    assert.equal(again.messageId, first.messageId);
    assert.equal(again.payload.toString(), 'exactly-once');
    c2.send({ cmd: 'pubrec', messageId: first.messageId });
    assert.equal(((await c2.next('pubrel')) as IPubrelPacket).messageId, first.messageId);
    c2.close();

    const c3 = await RawClient.open(server, 5);
    await c3.connect(persistent('q2-subscriber'));
    assert.equal(((await c3.next('pubrel')) as IPubrelPacket).messageId, first.messageId);
    c3.send({ cmd: 'pubcomp', messageId: first.messageId });
    await pub.publishAsync('q2out/t', 'next', { qos: 2 });
    const next = (await c3.next('publish')) as IPublishPacket;
    assert.equal(next.payload.toString(), 'next', 'the first message is not sent a third time');
    c3.send({ cmd: 'pubrec', messageId: next.messageId });
    await c3.next('pubrel');
    c3.send({ cmd: 'pubcomp', messageId: next.messageId! });
    c3.close();
    await pub.endAsync();
  });

  it('queues QoS 1/2 for an offline session (not QoS 0) and ends the session after its expiry', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect(persistent('expiring', 1));
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'exp/#', qos: 2 }] });
    await c.next('suback');
    c.send({ cmd: 'disconnect', reasonCode: 0 });
    await c.waitClosed();
    const gone = Date.now();
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('exp/a', 'q0', { qos: 0 });
    await pub.publishAsync('exp/a', 'q1', { qos: 1 });
    await pub.publishAsync('exp/a', 'q2', { qos: 2 });
    const back = await RawClient.open(server, 5);
    const ack = await back.connect(persistent('expiring', 1));
    assert.equal(ack.sessionPresent, true);
    const m1 = (await back.next('publish')) as IPublishPacket;
    back.send({ cmd: 'puback', messageId: m1.messageId });
    const m2 = (await back.next('publish')) as IPublishPacket;
    assert.deepEqual([m1.payload.toString(), m1.qos, m2.payload.toString(), m2.qos], ['q1', 1, 'q2', 2]);
    back.send({ cmd: 'pubrec', messageId: m2.messageId });
    await back.next('pubrel');
    back.send({ cmd: 'pubcomp', messageId: m2.messageId });
    back.send({ cmd: 'disconnect', reasonCode: 0 });
    await back.waitClosed();
    const left = Date.now();
    // the session lives 1 s after the disconnect, then it and its record are gone
    await waitFor(async () => (await server.hub.getRecord('mqtt-session', 'expiring')) === undefined, 'session record removed', 5000);
    const lived = Date.now() - left;
    assert.ok(lived >= 1000 && lived < 3000, `session expired after ${lived} ms (expiry 1 s)`);
    assert.ok(Date.now() - gone >= 1000);
    const fresh = await RawClient.open(server, 5);
    assert.equal((await fresh.connect(persistent('expiring', 1))).sessionPresent, false);
    fresh.close();
    await pub.endAsync();
  });

  it('a clean start discards the previous session', async () => {
    const c = await RawClient.open(server, 4);
    await c.connect({ clientId: 'clean-me', clean: false });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'cl/#', qos: 1 }] });
    await c.next('suback');
    c.close();
    const d = await RawClient.open(server, 4);
    const ack = (await d.connect({ clientId: 'clean-me', clean: true })) as IConnackPacket;
    assert.equal(ack.sessionPresent, false);
    d.close();
    const e = await RawClient.open(server, 4);
    assert.equal((await e.connect({ clientId: 'clean-me', clean: false })).sessionPresent, false);
    e.close();
  });
});

describe('MQTT persistent sessions across a restart (sqlite)', () => {
  it('delivers what was in flight and what was queued for an offline session after the broker restarts', async () => {
    const dir = tempDir('omnipush-mqtt-restart-');
    try {
      const cfg = { store: { kind: 'sqlite' as const, dir: dir.path }, history: { pruneInterval: 3600 } };
      let server = await startTestServer(cfg);
      const c = await RawClient.open(server, 5);
      await c.connect(persistent('restart-sub'));
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rs/#', qos: 2 }] });
      await c.next('suback');
      let pub = await mqttClient(server, { protocolVersion: 5 });
      await pub.publishAsync('rs/a', 'in-flight', { qos: 1 });
      const inflight = (await c.next('publish')) as IPublishPacket;
      assert.equal(inflight.payload.toString(), 'in-flight');
      c.close();
      await c.waitClosed();
      await pub.publishAsync('rs/a', 'offline-q0', { qos: 0 });
      await pub.publishAsync('rs/b', 'offline-q1', { qos: 1, properties: { responseTopic: 'rs/reply', correlationData: Buffer.from([1, 2, 3]), contentType: 'text/plain', payloadFormatIndicator: true } });
      await pub.publishAsync('rs/c', 'offline-q2', { qos: 2 });
      await pub.endAsync();
      await server.close();

      server = await startTestServer(cfg);
      const back = await RawClient.open(server, 5);
      const ack = await back.connect(persistent('restart-sub'));
      assert.equal(ack.sessionPresent, true);
      const got: IPublishPacket[] = [];
      for (let i = 0; i < 3; i++) {
        const p = (await back.next('publish')) as IPublishPacket;
        got.push(p);
        if (p.qos === 1) back.send({ cmd: 'puback', messageId: p.messageId });
        else back.send({ cmd: 'pubrec', messageId: p.messageId });
      }
      assert.deepEqual(
        got.map((p) => [p.payload.toString(), p.qos, p.dup]),
        [
          ['in-flight', 1, true],
          ['offline-q1', 1, false],
          ['offline-q2', 2, false],
        ],
      );
      assert.equal(got[0].messageId, inflight.messageId);
      const props = got[1].properties!;
      assert.equal(props.responseTopic, 'rs/reply');
      assert.deepEqual([...props.correlationData!], [1, 2, 3]);
      assert.equal(props.contentType, 'text/plain');
      assert.equal(props.payloadFormatIndicator, true);
      back.close();
      pub = await mqttClient(server, { protocolVersion: 5 });
      await pub.endAsync();
      await server.close();
    } finally {
      dir.remove();
    }
  });
});
