import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import mqtt from 'mqtt';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';

type Client = Awaited<ReturnType<typeof mqttClient>>;

describe('MQTT wills', () => {
  let server: RunningServer;
  let watcher: Client;
  before(async () => {
    server = await startTestServer({});
    watcher = await mqttClient(server, { protocolVersion: 5 });
    await watcher.subscribeAsync('will/#', { qos: 1 });
  });
  after(async () => {
    await watcher.endAsync();
    await server.close();
  });

  const willConnect = (clientId: string, delay: number, expiry: number) => ({
    clientId,
    clean: false,
    properties: { sessionExpiryInterval: expiry },
    will: { topic: `will/${clientId}`, payload: Buffer.from(`${clientId} gone`), qos: 1 as const, retain: false, properties: { willDelayInterval: delay } },
  });
  const wills = (id: string) => watcher.received.filter((r) => r.topic === `will/${id}`);

  /** A marker through the same path: once it is here, anything published before it is too. */
  async function marker(tag: string): Promise<void> {
    await watcher.publishAsync('will/marker', tag, { qos: 1 });
    await waitFor(() => watcher.received.some((r) => r.topic === 'will/marker' && r.payload === tag), `marker ${tag}`);
  }

  it('a refused will refuses the CONNECT alone: the live connection stays, no session is made', async () => {
    // payload format 1 (UTF-8) over bytes that are not UTF-8: the server answers 0x99
    const badWill = { topic: 'will/bad', payload: Buffer.from([0xff, 0xfe]), qos: 0 as const, retain: false, properties: { payloadFormatIndicator: true } };
    const refusedCode = async (clientId: string) => {
      try {
        const c = await mqtt.connectAsync(server.mqtt!, { protocolVersion: 5, clientId, clean: false, reconnectPeriod: 0, properties: { sessionExpiryInterval: 300 }, will: badWill });
        await c.endAsync();
        return 0;
      } catch (e) {
        return (e as { code?: number }).code;
      }
    };
    const live = await mqttClient(server, { protocolVersion: 5, clientId: 'wr-live', clean: false, properties: { sessionExpiryInterval: 300 } });
    try {
      await live.subscribeAsync('wr/#', { qos: 1 });
      assert.equal(await refusedCode('wr-live'), 0x99);
      // not taken over: it still receives
      await watcher.publishAsync('wr/x', 'still here', { qos: 1 });
      await waitFor(() => live.received.some((r) => r.payload === 'still here'), 'a message on the connection the refused CONNECT named');
      assert.equal(live.connected, true);
    } finally {
      await live.endAsync();
    }
    assert.equal(await refusedCode('wr-new'), 0x99);
    // the refused CONNECT left no session behind to resume
    const again = await RawClient.open(server, 5);
    try {
      const ack = await again.connect({ clientId: 'wr-new', clean: false, properties: { sessionExpiryInterval: 300 } });
      assert.equal(ack.reasonCode, 0);
      assert.equal(ack.sessionPresent, false, 'no session from the refused CONNECT');
    } finally {
      again.close();
    }
  });

  it('publishes a will after its delay when the connection drops', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect(willConnect('delayed', 1, 10));
    const t0 = Date.now();
    c.close();
    await waitFor(() => wills('delayed').length === 1, 'the will', 5000);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 2500, `will after ${took} ms (delay 1 s)`);
    assert.equal(wills('delayed')[0].payload, 'delayed gone');
  });

  it('publishes it when the session ends first (expiry shorter than the delay)', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect(willConnect('short-session', 30, 1));
    const t0 = Date.now();
    c.close();
    await waitFor(() => wills('short-session').length === 1, 'the will', 5000);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 2500, `will after ${took} ms (session expiry 1 s)`);
  });

  it('drops the will on DISCONNECT 0x00, sends it on DISCONNECT 0x04', async () => {
    const a = await RawClient.open(server, 5);
    await a.connect(willConnect('normal', 0, 0));
    a.send({ cmd: 'disconnect', reasonCode: 0 });
    await a.waitClosed();
    const b = await RawClient.open(server, 5);
    await b.connect(willConnect('with-will', 0, 0));
    b.send({ cmd: 'disconnect', reasonCode: 0x04 });
    await b.waitClosed();
    await marker('after-disconnects');
    assert.equal(wills('normal').length, 0, 'no will after a normal disconnect');
    assert.equal(wills('with-will').length, 1);
  });

  it('does not publish the will when the client comes back within the delay', async () => {
    const c = await RawClient.open(server, 5);
    await c.connect(willConnect('returns', 1, 10));
    const t0 = Date.now();
    c.close();
    await c.waitClosed();
    const back = await RawClient.open(server, 5);
    assert.equal((await back.connect({ clientId: 'returns', clean: false, properties: { sessionExpiryInterval: 10 } })).sessionPresent, true);
    // past the moment the will would have gone out
    await waitFor(() => Date.now() - t0 > 1300, 'the will delay to pass');
    await marker('after-return');
    assert.equal(wills('returns').length, 0);
    back.close();
  });

  it('3.1.1: publishes the will at once when the connection drops', async () => {
    const c = await RawClient.open(server, 4);
    await c.connect({ clientId: 'v4-will', will: { topic: 'will/v4-will', payload: Buffer.from('v4 gone'), qos: 0, retain: false } });
    c.close();
    await waitFor(() => wills('v4-will').length === 1, 'the 3.1.1 will');
  });
});

describe('MQTT $SYS topics', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ mqtt: { sysInterval: 0.2 }, auth: { anonymous: { publish: ['#'], subscribe: ['#', '$SYS/#'] } } });
  });
  after(() => server.close());

  it('publishes broker figures under $SYS/broker/, which # does not match', async () => {
    const all = await mqttClient(server, { protocolVersion: 5 });
    await all.subscribeAsync('#', { qos: 0 });
    await all.subscribeAsync('+/broker/#', { qos: 0 });
    const sys = await mqttClient(server, { protocolVersion: 4 });
    await sys.subscribeAsync('$SYS/#', { qos: 0 });
    await all.publishAsync('sys/marker', 'one', { qos: 1 });
    await waitFor(() => sys.received.some((r) => r.topic === '$SYS/broker/clients/connected' && Number(r.payload) >= 2), '$SYS figures', 5000);
    await waitFor(() => sys.received.some((r) => r.topic === '$SYS/broker/messages/received' && Number(r.payload) >= 1), 'message count', 5000);
    for (const t of ['$SYS/broker/bytes/received', '$SYS/broker/bytes/sent', '$SYS/broker/messages/sent', '$SYS/broker/uptime']) {
      assert.ok(sys.received.some((r) => r.topic === t), t);
    }
    await all.publishAsync('sys/marker', 'two', { qos: 1 });
    await waitFor(() => all.received.filter((r) => r.topic === 'sys/marker').length === 2, 'markers');
    assert.deepEqual(
      all.received.filter((r) => r.topic.startsWith('$')),
      [],
      'a leading wildcard never matches $SYS',
    );
    await Promise.all([all.endAsync(), sys.endAsync()]);
  });
});
