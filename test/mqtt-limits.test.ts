import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IPublishPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';

const publishes = (c: RawClient) => c.packets.filter((p) => p.cmd === 'publish') as IPublishPacket[];

async function settle(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

/** A PUBLISH built by hand: `topic` and `props` as raw bytes, so it can be anything. */
function rawPublish(topic: Buffer, props: Buffer | null, payload = Buffer.from('x'), flags = 0x30): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, props === null ? Buffer.alloc(0) : Buffer.concat([Buffer.from([props.length]), props]), payload]);
  return Buffer.concat([Buffer.from([flags, body.length]), body]);
}

describe('MQTT limits and bad input', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ mqtt: { receiveMaximum: 2, maxPacketBytes: 1024, maxKeepAlive: 30 } });
  });
  after(() => server.close());

  it('honours the client Receive Maximum: at most that many QoS 1/2 messages in flight', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'flow', properties: { receiveMaximum: 2 } });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fc/#', qos: 2 }] });
    await c.next('suback');
    const pub = await mqttClient(server, { protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync('fc/t', String(i), { qos: 1 });
    await waitFor(() => publishes(c).length === 2, 'the first two');
    await settle(c);
    assert.equal(publishes(c).length, 2, 'no third before an acknowledgement');
    c.send({ cmd: 'puback', messageId: publishes(c)[0].messageId });
    await waitFor(() => publishes(c).length === 3, 'the third');
    await settle(c);
    assert.equal(publishes(c).length, 3);
    for (const p of publishes(c)) c.send({ cmd: 'puback', messageId: p.messageId });
    await waitFor(() => publishes(c).length === 5, 'the rest');
    assert.deepEqual(
      publishes(c).map((p) => p.payload.toString()),
      ['0', '1', '2', '3', '4'],
    );
    c.close();
    await pub.endAsync();
  });

  it('announces its own Receive Maximum and disconnects (0x93) a client that exceeds it', async () => {
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: 'flow-in' });
    assert.equal(ack.properties?.receiveMaximum, 2);
    // QoS 2 publishes left without PUBREL: two are within the limit, the third is not
    const q2 = (id: number) => c.send({ cmd: 'publish', topic: 'fi/t', payload: Buffer.from('x'), qos: 2, messageId: id, dup: false, retain: false });
    q2(1);
    q2(2);
    await c.next('pubrec');
    await c.next('pubrec');
    q2(3);
    assert.equal(await c.disconnectCode(), 0x93);
    await c.waitClosed();
  });

  it('maximum packet size: refuses bigger packets (0x95), and never sends a client more than it allows', async () => {
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: 'big-in' });
    assert.equal(ack.properties?.maximumPacketSize, 1024);
    c.send({ cmd: 'publish', topic: 'mp/t', payload: Buffer.alloc(2000, 1), qos: 0, dup: false, retain: false });
    assert.equal(await c.disconnectCode(), 0x95);
    await c.waitClosed();

    const small = await RawClient.open(server, 5);
    await small.connect({ clientId: 'small-out', properties: { maximumPacketSize: 200 } });
    small.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'mp/#', qos: 1 }] });
    await small.next('suback');
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('mp/big', Buffer.alloc(500, 2), { qos: 1 });
    await pub.publishAsync('mp/small', 'fits', { qos: 1 });
    const p = (await small.next('publish')) as IPublishPacket;
    assert.equal(p.topic, 'mp/small', 'the 500-byte message was dropped for this client');
    small.close();
    await pub.endAsync();
  });

  it('keepalive: a silent client is cut after 1.5× (0x8D); the maximum is announced as Server Keep Alive', async () => {
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: 'ka', keepalive: 1 });
    assert.equal(ack.properties?.serverKeepAlive, undefined, 'a keepalive under the maximum is kept');
    const t0 = Date.now();
    assert.equal(await c.disconnectCode(4000), 0x8d);
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 3000, `cut after ${took} ms (keepalive 1 s: 1.5 s plus at most one sweep)`);
    for (const keepalive of [0, 100]) {
      const d = await RawClient.open(server, 5);
      const a = await d.connect({ clientId: `ka-${keepalive}`, keepalive });
      assert.equal(a.properties?.serverKeepAlive, 30);
      d.close();
    }
  });

  it('answers enhanced authentication as unsupported: CONNACK 0x8C, AUTH later is a protocol error', async () => {
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: 'auth-method', properties: { authenticationMethod: 'SCRAM-SHA-1' } });
    assert.equal(ack.reasonCode, 0x8c);
    await c.waitClosed();
    const d = await RawClient.open(server, 5);
    await d.connect({ clientId: 'auth-packet' });
    d.send({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'x' } });
    assert.equal(await d.disconnectCode(), 0x82);
  });

  it('answers an unsupported protocol level with CONNACK 0x84 (v5 form) or 0x01 (3.1.1 form)', async () => {
    for (const [level, expected] of [
      [6, [0x20, 0x03, 0x00, 0x84, 0x00]],
      [2, [0x20, 0x02, 0x00, 0x01]],
    ] as const) {
      const c = await RawClient.open(server, 5);
      const got: Buffer[] = [];
      c.socket.on('data', (d: Buffer) => got.push(d));
      c.sendRaw(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, level, 0x02, 0, 60, 0, 0]));
      await c.waitClosed();
      assert.deepEqual([...Buffer.concat(got)], expected);
    }
  });

  it('malformed input gets the right reason code and a disconnect, and the broker keeps serving', async () => {
    const watcher = await mqttClient(server, { protocolVersion: 5 });
    const cases: Array<[string, Buffer, number]> = [
      ['wildcard in a PUBLISH topic', rawPublish(Buffer.from('a/+'), Buffer.alloc(0)), 0x90],
      ['ill-formed UTF-8 in a topic', rawPublish(Buffer.from([0x61, 0xc3, 0x28]), Buffer.alloc(0)), 0x81],
      ['U+0000 in a topic', rawPublish(Buffer.from([0x61, 0x00, 0x62]), Buffer.alloc(0)), 0x81],
      ['a property twice', rawPublish(Buffer.from('a'), Buffer.from([0x01, 0x01, 0x01, 0x01])), 0x82],
      ['a subscription identifier in PUBLISH', rawPublish(Buffer.from('a'), Buffer.from([0x0b, 0x01])), 0x82],
      ['an unknown property', rawPublish(Buffer.from('a'), Buffer.from([0x7f, 0x01])), 0x81],
      ['QoS 3', rawPublish(Buffer.from('a'), Buffer.alloc(0), Buffer.from('x'), 0x36), 0x81],
      ['a reserved SUBSCRIBE flag', Buffer.from([0x80, 6, 0, 1, 0, 0, 1, 0x61]), 0x81],
      ['a CONNACK from the client', Buffer.from([0x20, 0x03, 0x00, 0x00, 0x00]), 0x82],
      ['a second CONNECT', Buffer.from([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0x02, 0, 60, 0, 0, 0]), 0x82],
      ['a remaining length of five bytes', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 0x81],
    ];
    for (const [what, bytes, rc] of cases) {
      const c = await RawClient.open(server, 5);
      await c.connect({ clientId: `bad-${rc}` });
      c.sendRaw(bytes);
      assert.equal(await c.disconnectCode(), rc, what);
      await c.waitClosed();
    }
    // 3.1.1 has no DISCONNECT from the server: the connection is just closed
    const old = await RawClient.open(server, 4);
    await old.connect({ clientId: 'bad-v4' });
    old.sendRaw(rawPublish(Buffer.from('a/#'), null));
    await old.waitClosed();
    // a CONNECT that is not one: closed before anything else happens
    const junk = await RawClient.open(server, 5);
    junk.sendRaw(Buffer.from([0x30, 0x02, 0x00, 0x00]));
    await junk.waitClosed();
    await watcher.subscribeAsync('still/here', { qos: 1 });
    await watcher.publishAsync('still/here', 'alive', { qos: 1 });
    await waitFor(() => watcher.received.length === 1, 'the broker still serving');
    await watcher.endAsync();
  });

  it('answers a bad v5 CONNECT with the reason in CONNACK, a bad 3.1.1 one by closing', async () => {
    /** CONNECT with protocol level, flags, properties and a client id given as raw bytes. */
    const connect = (level: number, flags: number, props: number[] | null, id: number[]) => {
      const body = [0, 4, 0x4d, 0x51, 0x54, 0x54, level, flags, 0, 60, ...(props === null ? [] : [props.length, ...props]), 0, id.length, ...id];
      return Buffer.from([0x10, body.length, ...body]);
    };
    const cases: Array<[string, Buffer, number]> = [
      ['session expiry twice', connect(5, 0x02, [0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], [0x61]), 0x82],
      ['ill-formed UTF-8 in the client id', connect(5, 0x02, [], [0xc3, 0x28]), 0x81],
      ['will QoS without a will', connect(5, 0x0a, [], [0x61]), 0x81],
      ['receive maximum 0', connect(5, 0x02, [0x21, 0, 0], [0x61]), 0x82],
      ['a PUBLISH-only property', connect(5, 0x02, [0x23, 0, 1], [0x61]), 0x82],
    ];
    for (const [what, bytes, rc] of cases) {
      const c = await RawClient.open(server, 5);
      c.sendRaw(bytes);
      const ack = (await c.next('connack')) as { reasonCode?: number };
      assert.equal(ack.reasonCode, rc, what);
      await c.waitClosed();
    }
    const old = await RawClient.open(server, 4);
    old.sendRaw(connect(4, 0x42, null, [0x61]));
    await old.waitClosed();
    assert.equal(old.packets.length, 0, '3.1.1: password without user name is closed without CONNACK');
  });

  it('refuses a DISCONNECT that sets a session expiry when CONNECT had none (0x82)', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'disc-expiry' });
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    assert.equal(await c.disconnectCode(), 0x82);
  });

  it("one client's packet that the decoder rejects does not disturb the next client's packets", async () => {
    const healthy = await RawClient.open(server, 5);
    await healthy.connect({ clientId: 'healthy-neighbour' });
    healthy.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'iso/t', qos: 0 }] });
    await healthy.next('suback');
    // a PUBREL whose reason code (0x80) the decoder refuses: it used to leave the shared decoder mid-packet
    for (const bad of ['620400018000', '620400028000']) {
      const rogue = await RawClient.open(server, 5);
      await rogue.connect({ clientId: 'rogue' });
      rogue.sendRaw(Buffer.from(bad, 'hex'));
      await rogue.waitClosed();
      healthy.send({ cmd: 'publish', topic: 'iso/t', payload: Buffer.from(bad), qos: 0, retain: false, dup: false });
      await waitFor(() => publishes(healthy).some((p) => p.payload.toString() === bad), `the neighbour's own message after ${bad}`);
      assert.equal(healthy.closed, false, `the neighbour stays connected after ${bad}`);
    }
  });
});

describe('MQTT bounds', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ mqtt: { maxQueuedMessages: 3 }, limits: { maxConnections: 6, maxTopicLevels: 4, maxTopicBytes: 64 } });
  });
  after(() => server.close());

  it('a full session queue drops new QoS 0 messages and ends the connection (0x97) for QoS 1/2', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'slow', properties: { receiveMaximum: 1 } });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'slow/#', qos: 1 }] });
    await c.next('suback');
    const pub = await mqttClient(server, { protocolVersion: 5 });
    // one in flight, three queued: the queue is full
    for (let i = 0; i < 4; i++) await pub.publishAsync('slow/q1', `m${i}`, { qos: 1 });
    await pub.publishAsync('slow/q0', 'dropped', { qos: 0 });
    await settle(c);
    assert.equal(c.closed, false, 'a QoS 0 message over the bound is dropped, not fatal');
    await pub.publishAsync('slow/q1', 'one too many', { qos: 1 });
    assert.equal(await c.disconnectCode(), 0x97);
    assert.deepEqual(
      publishes(c).map((p) => p.payload.toString()),
      ['m0'],
    );
    await pub.endAsync();
  });

  it('refuses topics over the length or level limits: 0x90 for a QoS 1 publish, 0x8F for a filter', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'limits' });
    c.send({ cmd: 'publish', topic: 'a/b/c/d/e', payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false });
    assert.equal(((await c.next('puback')) as { reasonCode?: number }).reasonCode, 0x90);
    c.send({ cmd: 'publish', topic: 'x'.repeat(65), payload: Buffer.from('x'), qos: 1, messageId: 2, dup: false, retain: false });
    assert.equal(((await c.next('puback')) as { reasonCode?: number }).reasonCode, 0x90);
    c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/b/c/d/#', qos: 0 }, { topic: 'a/b/c/#', qos: 0 }] });
    assert.deepEqual(((await c.next('suback')) as { granted: number[] }).granted, [0x8f, 0]);
    c.close();
  });

  it('shares the connection limit with the other doors: over it, CONNACK 0x89 (3.1.1: 3)', async () => {
    const held: RawClient[] = [];
    const sse = await fetch(`${server.http}/v1/sse?topic=t`);
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.open(server, 5);
      await c.connect({ clientId: `held-${i}` });
      held.push(c);
    }
    const v5 = await RawClient.open(server, 5);
    assert.equal((await v5.connect({ clientId: 'over-5' })).reasonCode, 0x89);
    const v4 = await RawClient.open(server, 4);
    assert.equal((await v4.connect({ clientId: 'over-4' })).returnCode, 3);
    held[0].close();
    await sse.body?.cancel();
    await waitFor(async () => {
      const c = await RawClient.open(server, 5);
      const ok = (await c.connect({ clientId: 'after' })).reasonCode === 0;
      c.close();
      return ok;
    }, 'a free slot');
    for (const c of held) c.close();
  });

});

