import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import mqttPacket, { type IConnackPacket, type IDisconnectPacket, type IPublishPacket, type ISubackPacket, type IUnsubackPacket, type Packet } from 'mqtt-packet';
import { WebSocket } from 'ws';
import type { ConfigInput } from '../src/config/schema.js';
import type { RunningServer } from '../src/server.js';
import { httpPublish } from './helpers/cluster.js';
import { RawClient, RawClients } from './helpers/mqtt.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { spawnServer, startTestServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';

const persistent = (clientId: string, expiry = 300) => ({ clientId, clean: false, properties: { sessionExpiryInterval: expiry } });

/** A spawned server as the MQTT helpers take it (they only read its MQTT address). */
const at = (s: ChildServer): RunningServer => ({ mqtt: s.mqtt }) as RunningServer;

/** A server whose store is `redis` under `prefix` (history is not pruned while a test runs). */
const onRedis = (redis: RedisServer, prefix: string, extra: ConfigInput = {}): Promise<RunningServer> =>
  startTestServer({ store: { kind: 'redis', redis: { url: redis.url, prefix } }, history: { pruneInterval: 3600 }, ...extra });

/** The next PUBLISH, acknowledged (QoS 1). */
async function nextPublish(c: RawClient): Promise<IPublishPacket> {
  const p = (await c.next('publish')) as IPublishPacket;
  if (p.qos === 1) c.send({ cmd: 'puback', messageId: p.messageId });
  return p;
}

/**
 * The broker writes a persistent session's record before it acknowledges what the record must
 * keep (docs/mqtt.md, Sessions): a new session before CONNACK, a change of subscriptions before
 * SUBACK / UNSUBACK. So a crash right after the acknowledgement loses nothing acknowledged. Each
 * kill below comes as soon as the acknowledgement is read, well inside the grouped-write period.
 */
describe('MQTT session records across kill -9 right after the acknowledgement (sqlite)', () => {
  const dir = tempDir('omnipush-mqtt-writes-');
  const args = ['--store', 'sqlite', '--data', dir.path, '--log-level', 'warn'];
  let server: ChildServer | undefined;
  const clients = new RawClients(() => at(server!));
  const open = (version: 4 | 5) => clients.open(version);
  const restart = async () => {
    clients.closeAll();
    await server!.kill();
    server = await spawnServer(args);
  };
  before(async () => {
    server = await spawnServer(args);
  });
  after(async () => {
    clients.closeAll();
    if (server && server.proc.exitCode === null && server.proc.signalCode === null) await server.kill();
    dir.remove();
  });

  it('keeps a new persistent session acknowledged by CONNACK (v5 session expiry, 3.1.1 clean session 0)', async () => {
    const v5 = await open(5);
    const ack5 = await v5.connect(persistent('w-new-5'));
    assert.equal(ack5.reasonCode, 0);
    assert.equal(ack5.sessionPresent, false);
    const v4 = await open(4);
    const ack4 = await v4.connect({ clientId: 'w-new-4', clean: false });
    assert.equal(ack4.returnCode, 0);
    assert.equal(ack4.sessionPresent, false);
    await restart();

    const back5 = await open(5);
    assert.equal((await back5.connect(persistent('w-new-5'))).sessionPresent, true, 'v5 session found after the crash');
    const back4 = await open(4);
    assert.equal((await back4.connect({ clientId: 'w-new-4', clean: false })).sessionPresent, true, '3.1.1 session found after the crash');
  });

  it('keeps a subscription acknowledged by SUBACK and an unsubscription acknowledged by UNSUBACK', async () => {
    const subscriber = async (version: 4 | 5, id: string) => {
      const c = await open(version);
      const ack = await c.connect(version === 5 ? persistent(id) : { clientId: id, clean: false });
      return { c, ack };
    };
    let s5 = await subscriber(5, 'w-sub-5');
    let s4 = await subscriber(4, 'w-sub-4');
    for (const { c } of [s5, s4]) c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ws/a/#', qos: 1 }, { topic: 'ws/b/#', qos: 1 }] });
    for (const { c } of [s5, s4]) assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [1, 1]);
    await restart();

    await httpPublish(server!.http, 'ws/a/1', 'a1');
    s5 = await subscriber(5, 'w-sub-5');
    s4 = await subscriber(4, 'w-sub-4');
    for (const { c, ack } of [s5, s4]) {
      assert.equal(ack.sessionPresent, true, `${c.version}: session found after the crash`);
      const p = await nextPublish(c);
      assert.deepEqual([p.topic, p.payload.toString(), p.qos], ['ws/a/1', 'a1', 1], `${c.version}: the subscription came back`);
    }
    for (const { c } of [s5, s4]) c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['ws/b/#'] });
    assert.deepEqual(((await s5.c.next('unsuback')) as IUnsubackPacket).granted, [0]);
    await s4.c.next('unsuback');
    await restart();

    // history replays in order: ws/b/2 would come before ws/a/3 if ws/b/# were still held
    await httpPublish(server!.http, 'ws/b/2', 'b2');
    await httpPublish(server!.http, 'ws/a/3', 'a3');
    s5 = await subscriber(5, 'w-sub-5');
    s4 = await subscriber(4, 'w-sub-4');
    for (const { c, ack } of [s5, s4]) {
      assert.equal(ack.sessionPresent, true);
      // a1 may come again: its PUBACK is a grouped write (docs/mqtt.md), not what this test is about
      let p = await nextPublish(c);
      while (p.payload.toString() === 'a1') p = await nextPublish(c);
      assert.deepEqual([p.topic, p.payload.toString()], ['ws/a/3', 'a3'], `${c.version}: ws/b/# stayed unsubscribed, ws/a/# subscribed`);
    }
  });
});

/**
 * When the record cannot be written, nothing is acknowledged that would not be kept; the answers
 * are the ones docs/cluster.md ("Redis outage") gives for an unavailable store.
 */
describe('MQTT session records when the store cannot write them (Redis)', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  let server: RunningServer;
  before(async () => {
    redis = await startRedis({ persist: true });
    server = await onRedis(redis, 'sw:');
  });
  after(async () => {
    await server?.close();
    await redis?.remove();
  });

  it('a new persistent session whose record is refused gets CONNACK 0x88 (3.1.1: 3) and is not kept', async () => {
    const admin = new Redis(redis.url);
    const clients = new RawClients(() => server);
    const open = (version: 4 | 5) => clients.open(version);
    try {
      // the store may read but not write records (HSET refused): the record read of CONNECT works, its write fails
      await admin.call('ACL', 'SETUSER', 'default', '-hset');
      const v5 = await open(5);
      const ack5 = await v5.connect(persistent('w-refused-5'));
      assert.equal(ack5.reasonCode, 0x88, 'v5: Server unavailable');
      assert.equal(ack5.sessionPresent, false);
      await v5.waitClosed();
      const v4 = await open(4);
      const ack4 = await v4.connect({ clientId: 'w-refused-4', clean: false });
      assert.equal(ack4.returnCode, 3, '3.1.1: Server unavailable');
      await v4.waitClosed();
      // a clean session needs no record
      const transient = await open(5);
      assert.equal((await transient.connect({ clientId: 'w-transient', clean: true })).reasonCode, 0);
      await admin.call('ACL', 'SETUSER', 'default', '+@all');

      for (const [version, fields] of [
        [5, persistent('w-refused-5')],
        [4, { clientId: 'w-refused-4', clean: false }],
      ] as const) {
        const again = await open(version);
        const ack = await again.connect(fields);
        assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
        assert.equal(ack.sessionPresent, false, `${version}: the refused session was not kept`);
      }
    } finally {
      clients.closeAll();
      await admin.call('ACL', 'SETUSER', 'default', '+@all').catch(() => undefined);
      admin.disconnect();
    }
  });

  it('while Redis is down: SUBACK 0x80, v5 UNSUBACK 0x80, 3.1.1 UNSUBSCRIBE closes; the subscriptions stay as they were', async () => {
    const clients = new RawClients(() => server);
    const open = (version: 4 | 5) => clients.open(version);
    let down = false;
    try {
      const v5 = await open(5);
      await v5.connect(persistent('w-down-5'));
      const v4 = await open(4);
      await v4.connect({ clientId: 'w-down-4', clean: false });
      const clean = await open(5);
      await clean.connect({ clientId: 'w-down-clean', clean: true });
      // [MQTT-3.1.2-29] Request Problem Information 0: no reason string outside CONNACK and DISCONNECT
      const quiet = await open(5);
      await quiet.connect({ clientId: 'w-down-quiet', clean: false, properties: { sessionExpiryInterval: 300, requestProblemInformation: false } });
      // [MQTT-3.1.2-24] a SUBACK with its reason string would exceed 40 bytes: it goes without
      const small = await open(5);
      await small.connect({ clientId: 'w-down-small', clean: false, properties: { sessionExpiryInterval: 300, maximumPacketSize: 40 } });
      for (const c of [v5, v4]) c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wd/keep/#', qos: 1 }] });
      for (const c of [v5, v4]) assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [1]);

      down = true;
      await redis.stop();
      for (const c of [v5, v4, clean, quiet, small]) c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'wd/new/#', qos: 1 }] });
      const refused5 = (await v5.next('suback')) as ISubackPacket;
      assert.deepEqual(refused5.granted, [0x80], 'v5: Unspecified error');
      assert.match(refused5.properties?.reasonString ?? '', /unavailable/);
      assert.ok(mqttPacket.generate(refused5, { protocolVersion: 5 }).length > 40, 'the reason string alone would not fit 40 bytes');
      for (const c of [quiet, small]) {
        const ack = (await c.next('suback')) as ISubackPacket;
        assert.deepEqual(ack.granted, [0x80]);
        assert.equal(ack.properties?.reasonString, undefined, 'no reason string');
      }
      assert.deepEqual(((await v4.next('suback')) as ISubackPacket).granted, [0x80], '3.1.1: Failure');
      assert.deepEqual(((await clean.next('suback')) as ISubackPacket).granted, [1], 'a session without a record subscribes as usual');

      v5.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['wd/keep/#', 'wd/none'] });
      const un5 = (await v5.next('unsuback')) as IUnsubackPacket;
      assert.deepEqual(un5.granted, [0x80, 0x11], 'v5: the held filter refused, the unknown one has no subscription');
      assert.match(un5.properties?.reasonString ?? '', /unavailable/);
      // 3.1.1 UNSUBACK cannot say no: the connection is closed without one
      v4.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['wd/keep/#'] });
      await v4.waitClosed();
      assert.equal(
        v4.packets.some((p: Packet) => p.cmd === 'unsuback'),
        false,
        'no UNSUBACK for an unsubscription not written',
      );
      assert.equal(v5.closed, false, 'the v5 connection stays open');

      await redis.start();
      down = false;
      await waitFor(async () => (await fetch(`${server.http}/readyz`)).status === 200, 'the store to be back', 20_000);
      // live delivery is in publish order: wd/new/x would come first if that subscription had been kept
      await httpPublish(server.http, 'wd/new/x', 'new');
      await httpPublish(server.http, 'wd/keep/x', 'keep');
      const p = await nextPublish(v5);
      assert.deepEqual([p.topic, p.payload.toString()], ['wd/keep/x', 'keep'], 'v5: wd/keep/# still held, wd/new/# not');
      const back4 = await open(4);
      const ack4: IConnackPacket = await back4.connect({ clientId: 'w-down-4', clean: false });
      assert.equal(ack4.sessionPresent, true);
      const p4 = await nextPublish(back4);
      assert.deepEqual([p4.topic, p4.payload.toString()], ['wd/keep/x', 'keep'], '3.1.1: wd/keep/# still held, wd/new/# not');
    } finally {
      clients.closeAll();
      if (down) {
        // the server's close needs the store: it must be back before the suite ends
        await redis.start();
        await waitFor(async () => (await fetch(`${server.http}/readyz`)).status === 200, 'the store to be back', 20_000);
      }
    }
  });
});

/**
 * `mqtt.connectTimeout` bounds the wait for a whole CONNECT; once one has arrived it is answered
 * (docs/mqtt.md, Configuration): when its session record cannot be written in time, with CONNACK
 * 0x88 at its deadline rather than a silent close.
 */
describe('MQTT CONNECT answered at its deadline while the store is slow (Redis)', { skip: redisMissing || false }, () => {
  const CONNECT_S = 1;
  let redis: RedisServer;
  let server: RunningServer;
  before(async () => {
    redis = await startRedis();
    server = await onRedis(redis, 'late:', { mqtt: { connectTimeout: CONNECT_S } });
  });
  after(async () => {
    await server?.close();
    await redis?.remove();
  });

  it('a new persistent session whose record write hangs gets CONNACK 0x88 (3.1.1: 3) after connectTimeout, and is not kept when the write lands later', async () => {
    const admin = new Redis(redis.url);
    const clients = new RawClients(() => server);
    const open = (version: 4 | 5) => clients.open(version);
    try {
      // Redis holds every write (the record write of CONNECT among them) until UNPAUSE; reads go on
      await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
      const v5 = await open(5);
      const v4 = await open(4);
      const t0 = performance.now();
      v5.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', keepalive: 60, ...persistent('late-5') });
      v4.send({ cmd: 'connect', protocolVersion: 4, protocolId: 'MQTT', keepalive: 60, clientId: 'late-4', clean: false });
      const ack5 = (await v5.next('connack', (CONNECT_S + 5) * 1000)) as IConnackPacket;
      const ack4 = (await v4.next('connack', (CONNECT_S + 5) * 1000)) as IConnackPacket;
      const waited = performance.now() - t0;
      assert.equal(ack5.reasonCode, 0x88, 'v5: Server unavailable');
      assert.equal(ack5.sessionPresent, false);
      assert.match(ack5.properties?.reasonString ?? '', /in time/);
      assert.equal(ack4.returnCode, 3, '3.1.1: Server unavailable');
      assert.ok(waited >= CONNECT_S * 1000 - 50, `answered at the deadline, not before (${Math.round(waited)} ms)`);
      await v5.waitClosed();
      await v4.waitClosed();

      await admin.call('CLIENT', 'UNPAUSE');
      // the writes land now; the sessions they made were never acknowledged and go again
      const broker = server.mqttDoor!.broker;
      await waitFor(() => broker.sessions.size === 0, 'the refused sessions to be dropped');
      const again5 = await open(5);
      const back5 = await again5.connect(persistent('late-5'));
      assert.equal(back5.reasonCode, 0);
      assert.equal(back5.sessionPresent, false, 'v5: no session left from the refused CONNECT');
      const again4 = await open(4);
      const back4 = await again4.connect({ clientId: 'late-4', clean: false });
      assert.equal(back4.returnCode, 0);
      assert.equal(back4.sessionPresent, false, '3.1.1: no session left from the refused CONNECT');
    } finally {
      clients.closeAll();
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
    }
  });
});

/** PUBLISH packets (QoS 0) of `count` × `bytes` payload bytes, as one buffer. */
function publishes(topic: string, count: number, bytes: number, version: 4 | 5): Buffer {
  const one = mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(bytes, 0x61), qos: 0, retain: false, dup: false }, { protocolVersion: version });
  return Buffer.concat(Array.from({ length: count }, () => one));
}

function encoded(p: Packet, version: 4 | 5): Buffer {
  return mqttPacket.generate(p, { protocolVersion: version });
}

/** MQTT 5 over WebSocket at `/mqtt`, without a client library: what is sent is one binary message per call. */
async function wsMqtt(server: RunningServer): Promise<{ ws: WebSocket; packets: Packet[]; closed: () => boolean }> {
  const ws = new WebSocket(`${server.http.replace(/^http/, 'ws')}/mqtt`, 'mqtt');
  const packets: Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  parser.on('packet', (p: Packet) => packets.push(p));
  parser.on('error', () => undefined);
  ws.on('message', (d: Buffer) => parser.parse(d));
  ws.on('error', () => undefined);
  let closed = false;
  ws.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, packets, closed: () => closed };
}

/**
 * While a handler answers later (CONNECT, the record write before SUBACK / UNSUBACK), the broker
 * does not read the connection: what the client sends meanwhile waits in its socket, held back by
 * TCP flow control. Packets that came with data already read wait in order, at most
 * `limits.maxQueueBytes` of them (docs/mqtt.md, Sessions).
 */
describe('MQTT packets sent behind a handler still at work (Redis)', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.remove();
  });

  it('reads nothing more while a SUBSCRIBE write runs: 32 MiB pipelined behind it wait in the client, other clients are served, the keepalive is not held against it, and all of it is handled in order afterwards', async () => {
    // publishing is allowed under ok/ only: the pipelined publishes to denied/ are each dropped and counted
    const server = await onRedis(redis, 'bp:', {
      auth: { allowAnonymous: true, anonymous: { publish: ['ok/#'], subscribe: ['#'] } },
    });
    const admin = new Redis(redis.url);
    const clients = new RawClients(() => server);
    try {
      const watcher = await clients.open(5);
      assert.equal((await watcher.connect({ clientId: 'bp-watcher' })).reasonCode, 0);
      const pipe = await clients.open(5);
      // keepalive 1 s: the server would give up on it after 1.5 s of silence
      assert.equal((await pipe.connect({ ...persistent('bp-pipe'), keepalive: 1 })).reasonCode, 0);
      const ping = async (c: RawClient) => {
        c.send({ cmd: 'pingreq' });
        await c.next('pingresp');
      };
      const broker = server.mqttDoor!.broker;
      await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
      const in0 = broker.stats.bytesIn;
      const dropped0 = broker.stats.dropped;
      const t0 = performance.now();
      pipe.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bp/#', qos: 1 }] });
      const N = 512;
      const one = publishes('denied/x', 1, 64 * 1024 - 64, 5);
      for (let i = 0; i < N; i++) pipe.socket.write(one);
      pipe.send({ cmd: 'pingreq' });
      const total = N * one.length;

      // the watcher's round trip is all the server reads once it stopped reading the pipelining connection
      await waitFor(
        async () => {
          const before = broker.stats.bytesIn;
          await ping(watcher);
          return broker.stats.bytesIn - before === 2 && pipe.socket.writableLength > 0;
        },
        'the server to read nothing more from the pipelining connection',
      );
      const read = broker.stats.bytesIn - in0;
      assert.ok(read < 1024 * 1024, `the server read ${read} of the ${total} bytes pipelined`);
      assert.ok(pipe.socket.writableLength > 16 * 1024 * 1024, `${pipe.socket.writableLength} bytes still wait in the client`);
      // not read is not silent: 1.5 × its keepalive passes without a keepalive timeout
      await waitFor(
        async () => {
          await ping(watcher);
          return performance.now() - t0 > 2000;
        },
        'more than 1.5 × the keepalive to pass',
      );
      assert.equal(pipe.closed, false);
      assert.deepEqual(
        pipe.packets.map((p) => p.cmd),
        [],
        'nothing sent to it meanwhile: no SUBACK before the record is written, no keepalive timeout',
      );

      await admin.call('CLIENT', 'UNPAUSE');
      await waitFor(() => pipe.packets.some((p) => p.cmd === 'pingresp'), 'the PINGRESP to the last pipelined packet', 30_000);
      assert.deepEqual(
        pipe.packets.map((p) => p.cmd),
        ['suback', 'pingresp'],
      );
      assert.deepEqual((pipe.packets[0] as ISubackPacket).granted, [1]);
      assert.equal(broker.stats.dropped - dropped0, N, 'every pipelined publish was handled (and refused by its grants)');
      assert.equal(pipe.closed, false);
      await ping(pipe);
    } finally {
      clients.closeAll();
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
      await server.close();
    }
  });

  it('closes a connection whose packets read behind a handler at work pass limits.maxQueueBytes: DISCONNECT 0x97 (v5, TCP and WebSocket), CONNACK 0x97 during CONNECT (v5), a plain close (3.1.1); other connections carry on', async () => {
    const LIMIT = 16 * 1024;
    const server = await onRedis(redis, 'hb:', { limits: { maxQueueBytes: LIMIT } });
    const clients = new RawClients(() => server);
    const open = (version: 4 | 5) => clients.open(version);
    let viaWs: Awaited<ReturnType<typeof wsMqtt>> | undefined;
    try {
      const broker = server.mqttDoor!.broker;
      const bystander = await open(5);
      assert.equal((await bystander.connect({ clientId: 'hb-bystander' })).reasonCode, 0);
      const in0 = broker.stats.messagesIn;
      // each write is a packet whose handler answers later followed by 40 KB of publishes, sent at
      // once (under the 64 KiB the server reads at a time; over WebSocket, one message): the
      // publishes come with the data already read, so they are held behind it
      const subscribe = { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'hb/#', qos: 1 }] } as Packet;

      const v5 = await open(5);
      assert.equal((await v5.connect(persistent('hb-5'))).reasonCode, 0);
      v5.sendRaw(Buffer.concat([encoded(subscribe, 5), publishes('hb/x', 10, 4000, 5)]));
      const d5 = (await v5.next('disconnect')) as IDisconnectPacket;
      assert.equal(d5.reasonCode, 0x97, 'Quota exceeded');
      assert.match(d5.properties?.reasonString ?? '', /more than 16384 bytes/);
      await v5.waitClosed();

      const v4 = await open(4);
      assert.equal((await v4.connect({ clientId: 'hb-4', clean: false })).returnCode, 0);
      v4.sendRaw(Buffer.concat([encoded(subscribe, 4), publishes('hb/x', 10, 4000, 4)]));
      await v4.waitClosed();

      const c5 = await open(5);
      c5.sendRaw(Buffer.concat([encoded({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', clientId: 'hb-c5', clean: true, keepalive: 60 }, 5), publishes('hb/x', 10, 4000, 5)]));
      const ack = (await c5.next('connack')) as IConnackPacket;
      assert.equal(ack.reasonCode, 0x97, 'CONNACK Quota exceeded');
      await c5.waitClosed();

      const c4 = await open(4);
      c4.sendRaw(Buffer.concat([encoded({ cmd: 'connect', protocolVersion: 4, protocolId: 'MQTT', clientId: 'hb-c4', clean: true, keepalive: 60 }, 4), publishes('hb/x', 10, 4000, 4)]));
      await c4.waitClosed();

      viaWs = await wsMqtt(server);
      const ws = viaWs;
      ws.ws.send(encoded({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', keepalive: 60, ...persistent('hb-ws') }, 5));
      await waitFor(() => ws.packets.find((p) => p.cmd === 'connack'), 'CONNACK over WebSocket');
      ws.ws.send(Buffer.concat([encoded(subscribe, 5), publishes('hb/x', 10, 4000, 5)]));
      const dws = await waitFor(() => ws.packets.find((p): p is IDisconnectPacket => p.cmd === 'disconnect'), 'DISCONNECT over WebSocket');
      assert.equal(dws.reasonCode, 0x97);
      await waitFor(() => ws.closed(), 'the WebSocket to close');

      for (const c of [v4, c4]) assert.deepEqual(c.packets.filter((p) => p.cmd !== 'connack'), [], `3.1.1: closed without a word (${c.packets.map((p) => p.cmd).join()})`);
      assert.equal(v5.packets.filter((p) => p.cmd === 'suback').length, 0, 'no SUBACK after the close');
      assert.equal(broker.stats.messagesIn, in0, 'none of the held publishes was handled');
      // the others carry on: an open connection and a new one
      bystander.send({ cmd: 'pingreq' });
      await bystander.next('pingresp');
      const later = await open(5);
      assert.equal((await later.connect({ clientId: 'hb-later' })).reasonCode, 0);
      later.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'hb/#', qos: 1 }] });
      assert.deepEqual(((await later.next('suback')) as ISubackPacket).granted, [1]);
    } finally {
      clients.closeAll();
      viaWs?.ws.terminate();
      await server.close();
    }
  });
});

/** Redis CLIENT LIST, one field map per connection. */
async function redisClients(admin: Redis): Promise<Array<Record<string, string>>> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  return list
    .trim()
    .split('\n')
    .map((line) => Object.fromEntries(line.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
}

/**
 * Publishes that the server fans out while an UNSUBSCRIBE's record write runs. Redis holds writes
 * (CLIENT PAUSE WRITE); `publish` sends messages, whose append reaches Redis and is held there;
 * then `unsubscribe` sends UNSUBSCRIBE, whose record write queues on the same store connection
 * behind the append. On UNPAUSE Redis runs them in that order: the messages are stored and fanned
 * out first, and the record write is answered after them.
 */
async function publishDuringRecordWrite(admin: Redis, publish: () => void, unsubscribe: () => void): Promise<void> {
  await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
  publish();
  const store = await waitFor(async () => (await redisClients(admin)).find((c) => c.cmd === 'evalsha' && c.flags.includes('b')), 'the append to be held by Redis');
  unsubscribe();
  await waitFor(async () => Number((await redisClients(admin)).find((c) => c.id === store.id)?.qbuf ?? 0) > 0, 'the record write to queue behind the append');
  await admin.call('CLIENT', 'UNPAUSE');
}

/**
 * The store's records (`<prefix>rv:*`, `<prefix>rk:*`) become read-only for the server: a session
 * record write fails, while messages are still stored (their keys stay writable).
 */
async function refuseRecordWrites(admin: Redis, prefix: string): Promise<void> {
  await admin.call('ACL', 'SETUSER', 'default', 'resetkeys', `~${prefix}[^r]*`, `~${prefix}re*`, `%R~${prefix}r[vk]:*`);
}

async function allowAllKeys(admin: Redis): Promise<void> {
  await admin.call('ACL', 'SETUSER', 'default', 'allkeys');
}

/** A publish as the tests compare it: topic, payload, QoS and subscription identifiers (sorted). */
function seen(p: IPublishPacket): [string, string, number, number[]] {
  const ids = [p.properties?.subscriptionIdentifier ?? []].flat().sort((a, b) => a - b);
  return [p.topic, p.payload.toString(), p.qos, ids];
}

/**
 * UNSUBSCRIBE of a persistent session: until its record write is answered, messages for the
 * filters it removes are held, not dropped (docs/mqtt.md, Sessions). UNSUBACK 0x80 then means
 * nothing changed: the held messages go out in order, once, as the kept subscriptions say; UNSUBACK
 * 0x00 means the subscriptions ended when UNSUBSCRIBE arrived (MQTT 5 §3.10.4).
 */
describe('MQTT UNSUBSCRIBE while messages are published during its record write (Redis)', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  let server: RunningServer;
  let admin: Redis;
  const clients = new RawClients(() => server);
  const open = async (version: 4 | 5, fields: Partial<mqttPacket.IConnectPacket>) => {
    const c = await clients.open(version);
    const ack = await c.connect(fields);
    assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
    return c;
  };
  const subscribe = async (c: RawClient, messageId: number, topic: string, qos: 0 | 1, id?: number) => {
    c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }], ...(id ? { properties: { subscriptionIdentifier: id } } : {}) });
    assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [qos]);
  };
  /** One write carrying every PUBLISH: the server reads them at once and stores them in one append. */
  const publishAll = (c: RawClient, messages: Array<[string, 0 | 1]>) =>
    c.sendRaw(Buffer.concat(messages.map(([topic, qos], i) => encoded({ cmd: 'publish', topic, payload: Buffer.from(topic), qos, messageId: qos ? i + 1 : undefined, retain: false, dup: false } as Packet, c.version as 4 | 5))));
  /** Publishes are taken (and acknowledged) until `last` arrives. */
  const receiveUntil = async (c: RawClient, last: string): Promise<IPublishPacket[]> => {
    const got: IPublishPacket[] = [];
    while (got.at(-1)?.topic !== last) got.push(await nextPublish(c));
    return got;
  };
  /** The session's record is written and nothing waits to be: the store connection stays quiet. */
  const recordSettled = async (clientId: string) => {
    const s = await waitFor(() => [...server.mqttDoor!.broker.sessions.all()].find((x) => x.clientId === clientId), `session ${clientId}`);
    await waitFor(() => !s.dirty, `session ${clientId} written`);
    // a read on the store's connection comes after the write already sent on it
    await server.hub.getRecord('mqtt-session', clientId);
  };

  before(async () => {
    redis = await startRedis();
    server = await onRedis(redis, 'uw:', { mqtt: { sysInterval: 0 } });
    admin = new Redis(redis.url);
  });
  after(async () => {
    clients.closeAll();
    await admin?.call('CLIENT', 'UNPAUSE').catch(() => undefined);
    await admin?.call('ACL', 'SETUSER', 'default', 'allkeys').catch(() => undefined);
    admin?.disconnect();
    await server?.close();
    await redis?.remove();
  });

  it('v5, record write refused: UNSUBACK 0x80, and every message published meanwhile arrives once, in order, as the kept subscriptions say (overlapping filters, identifiers, a shared subscription)', async () => {
    const sub = await open(5, persistent('uw-fail'));
    await subscribe(sub, 1, 'uwf/a/#', 1, 1);
    await subscribe(sub, 2, 'uwf/k/#', 1, 2);
    await subscribe(sub, 3, 'uwf/o/#', 1, 3);
    await subscribe(sub, 4, 'uwf/o/k', 0, 4);
    // the group's only member
    await subscribe(sub, 5, '$share/g/uwf/s/#', 1, 5);
    const pub = await open(5, { clientId: 'uw-fail-pub' });
    publishAll(pub, [['uwf/a/0', 1]]);
    assert.deepEqual(seen(await nextPublish(sub)), ['uwf/a/0', 'uwf/a/0', 1, [1]]);
    await recordSettled('uw-fail');

    try {
      await refuseRecordWrites(admin, 'uw:');
      const during: Array<[string, 0 | 1]> = [
        ['uwf/a/1', 1],
        ['uwf/k/1', 1],
        ['uwf/o/x', 1],
        ['uwf/o/k', 1],
        ['uwf/s/1', 1],
        ['uwf/a/2', 0],
        ['uwf/k/2', 1],
        ['uwf/a/3', 1],
      ];
      await publishDuringRecordWrite(
        admin,
        () => publishAll(pub, during),
        // a SUBSCRIBE changing one of the filters comes right behind: it waits until UNSUBACK
        () =>
          sub.sendRaw(
            Buffer.concat([
              encoded({ cmd: 'unsubscribe', messageId: 6, unsubscriptions: ['uwf/a/#', 'uwf/o/#', '$share/g/uwf/s/#'] }, 5),
              encoded({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'uwf/a/#', qos: 0 }], properties: { subscriptionIdentifier: 9 } }, 5),
            ]),
          ),
      );
      await waitFor(() => sub.packets.some((p) => p.cmd === 'suback'), 'SUBACK');
      const order = sub.packets.map((p) => p.cmd);
      const un = (await sub.next('unsuback')) as IUnsubackPacket;
      assert.deepEqual(un.granted, [0x80, 0x80, 0x80], 'nothing unsubscribed');
      assert.match(un.properties?.reasonString ?? '', /session not saved/);
      assert.deepEqual(((await sub.next('suback')) as ISubackPacket).granted, [0x80], 'the SUBSCRIBE behind it is not written either');
      await allowAllKeys(admin);

      publishAll(pub, [['uwf/k/end', 1]]);
      assert.deepEqual(
        (await receiveUntil(sub, 'uwf/k/end')).map(seen),
        [
          ['uwf/a/1', 'uwf/a/1', 1, [1]],
          ['uwf/k/1', 'uwf/k/1', 1, [2]],
          ['uwf/o/x', 'uwf/o/x', 1, [3]],
          ['uwf/o/k', 'uwf/o/k', 1, [3, 4]],
          ['uwf/s/1', 'uwf/s/1', 1, [5]],
          ['uwf/a/2', 'uwf/a/2', 0, [1]],
          ['uwf/k/2', 'uwf/k/2', 1, [2]],
          ['uwf/a/3', 'uwf/a/3', 1, [1]],
          ['uwf/k/end', 'uwf/k/end', 1, [2]],
        ],
        'each message of the write once, in publish order, none delivered before UNSUBSCRIBE again',
      );
      assert.deepEqual(order, ['unsuback', ...during.map(() => 'publish'), 'suback'], 'the messages held for UNSUBSCRIBE go out with its answer, before the packet behind it is handled');
      // the subscriptions stand, as they were
      publishAll(pub, [
        ['uwf/s/2', 1],
        ['uwf/o/x2', 1],
        ['uwf/a/4', 1],
      ]);
      assert.deepEqual(
        (await receiveUntil(sub, 'uwf/a/4')).map(seen),
        [
          ['uwf/s/2', 'uwf/s/2', 1, [5]],
          ['uwf/o/x2', 'uwf/o/x2', 1, [3]],
          ['uwf/a/4', 'uwf/a/4', 1, [1]],
        ],
      );
      assert.equal(sub.packets.filter((p) => p.cmd === 'publish').length, 0, 'nothing more');
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      await allowAllKeys(admin).catch(() => undefined);
    }
  });

  it('3.1.1, record write refused: the connection closes, and the resumed session gets the messages published meanwhile from history, once, in order', async () => {
    const sub = await open(4, { clientId: 'uw-fail-4', clean: false });
    await subscribe(sub, 1, 'uw4/a/#', 1);
    await subscribe(sub, 2, 'uw4/k/#', 1);
    const pub = await open(5, { clientId: 'uw-fail-4-pub' });
    publishAll(pub, [['uw4/a/0', 1]]);
    assert.deepEqual(seen(await nextPublish(sub)), ['uw4/a/0', 'uw4/a/0', 1, []]);
    await recordSettled('uw-fail-4');
    try {
      await refuseRecordWrites(admin, 'uw:');
      await publishDuringRecordWrite(
        admin,
        () =>
          publishAll(pub, [
            ['uw4/a/1', 1],
            ['uw4/k/1', 1],
            ['uw4/a/2', 1],
          ]),
        () => sub.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['uw4/a/#'] }),
      );
      // 3.1.1 UNSUBACK cannot say no
      await sub.waitClosed();
      assert.equal(
        sub.packets.some((p) => p.cmd === 'unsuback'),
        false,
      );
      await allowAllKeys(admin);
      const back = await open(4, { clientId: 'uw-fail-4', clean: false });
      publishAll(pub, [['uw4/k/end', 1]]);
      assert.deepEqual(
        (await receiveUntil(back, 'uw4/k/end')).map((p) => p.topic),
        ['uw4/a/1', 'uw4/k/1', 'uw4/a/2', 'uw4/k/end'],
        'the subscriptions stayed; what was published during the write came from history',
      );
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      await allowAllKeys(admin).catch(() => undefined);
    }
  });

  it('v5, record write held then written: UNSUBACK 0x00; what the removed filters alone matched is not delivered, neither during the write nor after', async () => {
    const sub = await open(5, persistent('uw-ok'));
    await subscribe(sub, 1, 'uwo/a/#', 1, 1);
    await subscribe(sub, 2, 'uwo/k/#', 1, 2);
    await subscribe(sub, 3, 'uwo/o/#', 1, 3);
    await subscribe(sub, 4, 'uwo/o/k', 0, 4);
    await subscribe(sub, 5, '$share/g/uwo/s/#', 1, 5);
    // another member of the group: it takes what the group gets once UNSUBSCRIBE arrived
    const other = await open(5, { clientId: 'uw-ok-other' });
    await subscribe(other, 1, '$share/g/uwo/s/#', 1);
    const pub = await open(5, { clientId: 'uw-ok-pub' });
    await recordSettled('uw-ok');

    await publishDuringRecordWrite(
      admin,
      () =>
        publishAll(pub, [
          ['uwo/a/1', 1],
          ['uwo/k/1', 1],
          ['uwo/o/x', 1],
          ['uwo/o/k', 1],
          ['uwo/s/1', 1],
          ['uwo/k/2', 1],
        ]),
      () => sub.send({ cmd: 'unsubscribe', messageId: 6, unsubscriptions: ['uwo/a/#', 'uwo/o/#', '$share/g/uwo/s/#'] }),
    );
    assert.deepEqual(((await sub.next('unsuback')) as IUnsubackPacket).granted, [0, 0, 0]);
    publishAll(pub, [
      ['uwo/a/2', 1],
      ['uwo/o/x2', 1],
      ['uwo/o/k', 1],
      ['uwo/s/2', 1],
      ['uwo/k/end', 1],
    ]);
    assert.deepEqual(
      (await receiveUntil(sub, 'uwo/k/end')).map(seen),
      [
        ['uwo/k/1', 'uwo/k/1', 1, [2]],
        // published during the write: only the kept subscription counts
        ['uwo/o/k', 'uwo/o/k', 0, [4]],
        ['uwo/k/2', 'uwo/k/2', 1, [2]],
        ['uwo/o/k', 'uwo/o/k', 0, [4]],
        ['uwo/k/end', 'uwo/k/end', 1, [2]],
      ],
    );
    assert.equal(sub.packets.filter((p) => p.cmd === 'publish').length, 0, 'nothing more');
    assert.deepEqual(
      (await receiveUntil(other, 'uwo/s/2')).map((p) => p.topic),
      ['uwo/s/1', 'uwo/s/2'],
      'the group delivered both to its other member',
    );
  });
});
