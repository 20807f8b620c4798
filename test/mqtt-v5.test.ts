import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IPublishPacket, ISubackPacket, IUnsubackPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';

/** Round trip: everything the broker wrote before PINGRESP has arrived. */
async function settle(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

const publishes = (c: RawClient) => c.packets.filter((p) => p.cmd === 'publish') as IPublishPacket[];

async function rawSubscriber(server: RunningServer, clientId: string, filters: Array<{ topic: string; qos: 0 | 1 | 2; nl?: boolean; rap?: boolean; rh?: number }>, id?: number, connect: Record<string, unknown> = {}): Promise<RawClient> {
  const c = await RawClient.open(server, 5);
  await c.connect({ clientId, ...connect });
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: filters, ...(id ? { properties: { subscriptionIdentifier: id } } : {}) });
  await c.next('suback');
  return c;
}

describe('MQTT 5 features', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ mqtt: { topicAliasMaximum: 4 }, history: { pruneInterval: 3600 } });
  });
  after(() => server.close());

  it('topic aliases from the client: set, used, out of range (0x94), unknown (0x82)', async () => {
    const sub = await mqttClient(server, { protocolVersion: 5 });
    await sub.subscribeAsync('al/#', { qos: 0 });
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ clientId: 'alias-in' });
    assert.equal(ack.properties?.topicAliasMaximum, 4);
    c.send({ cmd: 'publish', topic: 'al/one', payload: Buffer.from('a'), qos: 0, dup: false, retain: false, properties: { topicAlias: 1 } });
    c.send({ cmd: 'publish', topic: '', payload: Buffer.from('b'), qos: 0, dup: false, retain: false, properties: { topicAlias: 1 } });
    c.send({ cmd: 'publish', topic: 'al/two', payload: Buffer.from('c'), qos: 0, dup: false, retain: false, properties: { topicAlias: 1 } });
    c.send({ cmd: 'publish', topic: '', payload: Buffer.from('d'), qos: 0, dup: false, retain: false, properties: { topicAlias: 1 } });
    await waitFor(() => sub.received.length === 4, 'four deliveries');
    assert.deepEqual(
      sub.received.map((r) => `${r.topic}=${r.payload}`),
      ['al/one=a', 'al/one=b', 'al/two=c', 'al/two=d'],
    );
    c.send({ cmd: 'publish', topic: 'al/x', payload: Buffer.from('e'), qos: 0, dup: false, retain: false, properties: { topicAlias: 5 } });
    assert.equal(await c.disconnectCode(), 0x94);
    await c.waitClosed();
    const d = await RawClient.open(server, 5);
    await d.connect({ clientId: 'alias-unknown' });
    d.send({ cmd: 'publish', topic: '', payload: Buffer.from('f'), qos: 0, dup: false, retain: false, properties: { topicAlias: 2 } });
    assert.equal(await d.disconnectCode(), 0x82);
    await d.waitClosed();
    await sub.endAsync();
  });

  it('topic aliases to the client, up to its Topic Alias Maximum', async () => {
    const c = await rawSubscriber(server, 'alias-out', [{ topic: 'ao/#', qos: 0 }], undefined, { properties: { topicAliasMaximum: 2 } });
    const pub = await mqttClient(server, { protocolVersion: 5 });
    for (const t of ['ao/1', 'ao/1', 'ao/2', 'ao/3', 'ao/2']) await pub.publishAsync(t, t, { qos: 1 });
    await waitFor(() => publishes(c).length === 5, 'five publishes');
    assert.deepEqual(
      publishes(c).map((p) => [p.topic, p.properties?.topicAlias, p.payload.toString()]),
      [
        ['ao/1', 1, 'ao/1'],
        ['', 1, 'ao/1'],
        ['ao/2', 2, 'ao/2'],
        ['ao/3', undefined, 'ao/3'],
        ['', 2, 'ao/2'],
      ],
    );
    const plain = await rawSubscriber(server, 'alias-none', [{ topic: 'ao/#', qos: 0 }]);
    await pub.publishAsync('ao/1', 'x', { qos: 1 });
    const p = (await plain.next('publish')) as IPublishPacket;
    assert.equal(p.topic, 'ao/1');
    assert.equal(p.properties?.topicAlias, undefined);
    c.close();
    plain.close();
    await pub.endAsync();
  });

  it('subscription identifiers: one delivery carries every matching id, at the highest granted QoS', async () => {
    const c = await rawSubscriber(server, 'subids', [{ topic: 'si/#', qos: 0 }], 5);
    c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'si/+', qos: 2 }], properties: { subscriptionIdentifier: 7 } });
    await c.next('suback');
    c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'si/x/#', qos: 1 }] });
    await c.next('suback');
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('si/x', 'both', { qos: 2 });
    await pub.publishAsync('si/x/y', 'deep', { qos: 2 });
    await waitFor(() => publishes(c).length === 2, 'two deliveries');
    const [a, b] = publishes(c);
    assert.deepEqual([a.payload.toString(), a.qos, [a.properties?.subscriptionIdentifier].flat().sort()], ['both', 2, [5, 7]]);
    // si/# (id 5, QoS 0) and si/x/# (no id, QoS 1)
    assert.deepEqual([b.payload.toString(), b.qos, b.properties?.subscriptionIdentifier], ['deep', 1, 5]);
    c.close();
    await pub.endAsync();
  });

  it('retain handling 0, 1 and 2; Retain As Published; No Local', async () => {
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('rh/t', 'kept', { qos: 1, retain: true });
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'rh' });
    const subscribe = async (id: number, rh: number, topic = 'rh/t') => {
      c.send({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic, qos: 1, rh }] });
      await c.next('suback');
      await settle(c);
      // the retained replay runs after SUBACK; a marker published now arrives after it
      await pub.publishAsync('rh/marker', String(id), { qos: 1 });
      await waitFor(() => publishes(c).some((p) => p.topic === 'rh/marker' && p.payload.toString() === String(id)), 'marker');
      const got = publishes(c).filter((p) => p.topic !== 'rh/marker');
      c.packets.length = 0;
      return got.map((p) => [p.payload.toString(), p.retain]);
    };
    c.send({ cmd: 'subscribe', messageId: 99, subscriptions: [{ topic: 'rh/marker', qos: 1 }] });
    await c.next('suback');
    assert.deepEqual(await subscribe(1, 0), [['kept', true]], 'rh 0: retained on subscribe');
    assert.deepEqual(await subscribe(2, 0), [['kept', true]], 'rh 0: again on a repeated subscribe');
    assert.deepEqual(await subscribe(3, 1), [], 'rh 1: not for an existing subscription');
    assert.deepEqual(await subscribe(4, 1, 'rh/+'), [['kept', true]], 'rh 1: for a new subscription');
    assert.deepEqual(await subscribe(5, 2, 'rh/#'), [], 'rh 2: never');
    c.close();

    // Retain As Published and No Local
    const d = await rawSubscriber(server, 'rap-nl', [
      { topic: 'rap/t', qos: 1, rap: true },
      { topic: 'nl/t', qos: 1, nl: true },
      { topic: 'rh/marker', qos: 1 },
    ]);
    await pub.publishAsync('rap/t', 'live-retained', { qos: 1, retain: true });
    d.send({ cmd: 'publish', topic: 'nl/t', payload: Buffer.from('mine'), qos: 1, messageId: 9, dup: false, retain: false });
    await d.next('puback');
    await pub.publishAsync('nl/t', 'theirs', { qos: 1 });
    await waitFor(() => publishes(d).length === 2, 'two deliveries');
    assert.deepEqual(
      publishes(d).map((p) => [p.topic, p.payload.toString(), p.retain]),
      [
        ['rap/t', 'live-retained', true],
        ['nl/t', 'theirs', false],
      ],
    );
    d.close();
    await pub.endAsync();
  });

  it('message expiry: the remaining interval is forwarded; an expired message is not delivered', async () => {
    const c = await rawSubscriber(server, 'expiry', [{ topic: 'mx/#', qos: 1 }], undefined, { clean: false, properties: { sessionExpiryInterval: 60 } });
    const pub = await mqttClient(server, { protocolVersion: 5 });
    await pub.publishAsync('mx/live', 'live', { qos: 1, properties: { messageExpiryInterval: 30 } });
    const live = (await c.next('publish')) as IPublishPacket;
    const ttl = live.properties?.messageExpiryInterval ?? 0;
    assert.ok(ttl > 0 && ttl <= 30, `forwarded expiry ${ttl}`);
    c.send({ cmd: 'puback', messageId: live.messageId });
    c.close();
    await c.waitClosed();
    const t0 = Date.now();
    await pub.publishAsync('mx/q', 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync('mx/q', 'long', { qos: 1, properties: { messageExpiryInterval: 10 } });
    // wait out the first message's second of life
    await waitFor(() => Date.now() - t0 > 1100, 'one second');
    const back = await RawClient.open(server, 5);
    await back.connect({ clientId: 'expiry', clean: false, properties: { sessionExpiryInterval: 60 } });
    const p = (await back.next('publish')) as IPublishPacket;
    assert.equal(p.payload.toString(), 'long', 'the expired message was skipped');
    const left = p.properties?.messageExpiryInterval ?? 0;
    assert.ok(left >= 1 && left <= 9, `remaining interval ${left} (published with 10, 1+ s ago)`);
    back.close();
    await pub.endAsync();
  });

  it('shared subscriptions: each message to one member of the group, in turn', async () => {
    const a = await rawSubscriber(server, 'share-a', [{ topic: '$share/g1/sh/#', qos: 1 }]);
    const b = await rawSubscriber(server, 'share-b', [{ topic: '$share/g1/sh/#', qos: 1 }]);
    const all = await rawSubscriber(server, 'share-all', [{ topic: 'sh/#', qos: 1 }]);
    const pub = await mqttClient(server, { protocolVersion: 5 });
    for (let i = 0; i < 10; i++) await pub.publishAsync(`sh/${i}`, String(i), { qos: 1 });
    await waitFor(() => publishes(a).length + publishes(b).length === 10 && publishes(all).length === 10, 'deliveries');
    assert.equal(publishes(a).length, 5);
    assert.equal(publishes(b).length, 5);
    const seen = [...publishes(a), ...publishes(b)].map((p) => Number(p.payload.toString())).sort((x, y) => x - y);
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'each message once across the group');
    // a member that leaves: the other gets everything
    a.send({ cmd: 'unsubscribe', messageId: 5, unsubscriptions: ['$share/g1/sh/#'] });
    assert.deepEqual(((await a.next('unsuback')) as IUnsubackPacket).granted, [0]);
    for (let i = 10; i < 14; i++) await pub.publishAsync(`sh/${i}`, String(i), { qos: 1 });
    await waitFor(() => publishes(b).length === 9, 'b takes all');
    assert.equal(publishes(a).length, 5);
    for (const c of [a, b, all]) c.close();
    await pub.endAsync();
  });

  it('UNSUBSCRIBE answers per filter: 0x00, or 0x11 when there was no such subscription', async () => {
    const c = await rawSubscriber(server, 'unsub', [{ topic: 'us/a', qos: 1 }]);
    c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['us/a', 'us/none', '$share/g/us/none'] });
    const ack = (await c.next('unsuback')) as IUnsubackPacket;
    assert.deepEqual(ack.granted, [0x00, 0x11, 0x11]);
    const pub = await mqttClient(server, { protocolVersion: 5 });
    c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'us/b', qos: 1 }] });
    await c.next('suback');
    await pub.publishAsync('us/a', 'gone', { qos: 1 });
    await pub.publishAsync('us/b', 'here', { qos: 1 });
    assert.equal(((await c.next('publish')) as IPublishPacket).payload.toString(), 'here');
    c.close();
    await pub.endAsync();
  });

  it('answers invalid filters with 0x8F per filter', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect({ clientId: 'badfilter' });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ok/#', qos: 1 }, { topic: 'a/#/b', qos: 1 }, { topic: '$share/g+/x', qos: 0 }] });
    assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [1, 0x8f, 0x8f]);
    c.close();
  });
});
