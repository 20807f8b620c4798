import assert from 'node:assert/strict';
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { clusterConfig, httpPublish, startCluster } from './helpers/cluster.js';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnServer, startTestServer, tempDir, waitFor } from './helpers/server.js';

/** Short heartbeats so that takeovers after a node goes away happen within a test's patience. */
const FAST = { cluster: { heartbeat: 0.1, nodeTimeout: 1, takeoverTimeout: 3 } };

async function closeAll(nodes: RunningServer[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.close()));
}

describe('MQTT, Web Push and wills across three nodes', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.remove();
  });

  it('moves a persistent session to another node with the QoS 1 messages published meanwhile on a third', async () => {
    const [a, b, c] = await startCluster(redis, 'mv:', 3, FAST);
    try {
      const first = await mqttClient(a, { protocolVersion: 5, clientId: 'mover', clean: false, properties: { sessionExpiryInterval: 300 } });
      await first.subscribeAsync('mv/#', { qos: 1 });
      await first.endAsync();
      const pub = await mqttClient(c, { protocolVersion: 5 });
      for (let i = 0; i < 5; i++) await pub.publishAsync(`mv/${i}`, `m${i}`, { qos: 1 });
      await pub.endAsync();

      const back = await mqttClient(b, { protocolVersion: 5, clientId: 'mover', clean: false, properties: { sessionExpiryInterval: 300 } });
      try {
        await waitFor(() => back.received.length >= 5, 'the five queued messages on node B', 10_000);
        assert.deepEqual(
          back.received.map((r) => r.payload),
          ['m0', 'm1', 'm2', 'm3', 'm4'],
        );
        assert.ok(back.received.every((r) => r.packet.qos === 1));
        // the subscription came along too: a live message published on A arrives
        const p2 = await mqttClient(a, { protocolVersion: 5 });
        await p2.publishAsync('mv/live', 'live', { qos: 1 });
        await p2.endAsync();
        await waitFor(() => back.received.some((r) => r.payload === 'live'), 'a live message after the move');
        assert.equal(back.received.length, 6, back.received.map((r) => r.payload).join(','));
      } finally {
        await back.endAsync();
      }
    } finally {
      await closeAll([a, b, c]);
    }
  });

  it('takes over a session still open on another node: DISCONNECT 0x8E there (v5), closed (3.1.1)', async () => {
    const [a, b, c] = await startCluster(redis, 'to:', 3, FAST);
    try {
      const old5 = await RawClient.open(a, 5);
      const ack1 = await old5.connect({ clientId: 'dup5', clean: false, properties: { sessionExpiryInterval: 60 } });
      assert.equal(ack1.reasonCode, 0);
      old5.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'dup/#', qos: 1 }] });
      await old5.next('suback');
      const new5 = await RawClient.open(b, 5);
      const ack2 = await new5.connect({ clientId: 'dup5', clean: false, properties: { sessionExpiryInterval: 60 } });
      assert.equal(ack2.reasonCode, 0);
      assert.equal(ack2.sessionPresent, true, 'the session (with its subscription) moved to B');
      assert.equal(await old5.disconnectCode(), 0x8e);
      await old5.waitClosed();
      await httpPublish(c.http, 'dup/x', 'after takeover');
      const p = (await new5.next('publish')) as { topic: string; payload: Buffer };
      assert.equal(p.topic, 'dup/x');
      assert.equal(p.payload.toString(), 'after takeover');
      new5.close();

      const old4 = await RawClient.open(b, 4);
      assert.equal((await old4.connect({ clientId: 'dup4' })).returnCode, 0);
      const new4 = await RawClient.open(c, 4);
      assert.equal((await new4.connect({ clientId: 'dup4' })).returnCode, 0);
      await old4.waitClosed();
      assert.equal(old4.packets.filter((x) => x.cmd === 'disconnect').length, 0, '3.1.1 has no server DISCONNECT');
      assert.equal(new4.closed, false);
      new4.close();

      // a clean start ending a stored session still holds the identifier: a later CONNECT elsewhere takes it over
      const stored = await mqttClient(a, { protocolVersion: 5, clientId: 'restart', clean: false, properties: { sessionExpiryInterval: 60 } });
      await stored.endAsync();
      const fresh = await RawClient.open(b, 5);
      const ack3 = await fresh.connect({ clientId: 'restart', clean: true });
      assert.equal(ack3.sessionPresent, false);
      const later = await RawClient.open(c, 5);
      assert.equal((await later.connect({ clientId: 'restart', clean: true })).reasonCode, 0);
      assert.equal(await fresh.disconnectCode(), 0x8e);
      await fresh.waitClosed();
      later.close();
    } finally {
      await closeAll([a, b, c]);
    }
  });

  it('balances a shared subscription over members on all nodes: each message once, spread out', async () => {
    const nodes = await startCluster(redis, 'sh:', 3, FAST);
    const clients: Array<Awaited<ReturnType<typeof mqttClient>>> = [];
    try {
      for (let i = 0; i < 6; i++) {
        const cl = await mqttClient(nodes[i % 3], { protocolVersion: 5, clientId: `member${i}` });
        await cl.subscribeAsync('$share/g/sh/#', { qos: 1 });
        // a plain subscription too, for the end marker
        await cl.subscribeAsync('mark/#', { qos: 1 });
        clients.push(cl);
      }
      const ids = clients.map((_, i) => `member${i}`).sort();
      for (const n of nodes) {
        await waitFor(() => n.mqttDoor!.broker.shared.members('$share/g/sh/#').join() === ids.join(), 'every node to see all six members');
      }
      const N = 60;
      for (let i = 0; i < N; i++) await httpPublish(nodes[i % 3].http, `sh/${i}`, `s${i}`);
      await waitFor(() => clients.reduce((n, cl) => n + cl.received.filter((r) => r.topic.startsWith('sh/')).length, 0) >= N, `${N} shared deliveries`);
      // a second delivery of any of them would reach its client before this marker does
      await httpPublish(nodes[1].http, 'mark/end', 'end');
      for (const cl of clients) await waitFor(() => cl.received.some((r) => r.topic === 'mark/end'), 'the marker at every member');
      const all = clients.flatMap((cl) => cl.received.filter((r) => r.topic.startsWith('sh/')).map((r) => r.payload));
      assert.equal(all.length, N, 'no message twice');
      assert.deepEqual(new Set(all), new Set(Array.from({ length: N }, (_, i) => `s${i}`)));
      for (const cl of clients) assert.ok(cl.received.filter((r) => r.topic.startsWith('sh/')).length >= 3, 'every member took a share');
    } finally {
      for (const cl of clients) await cl.endAsync();
      await closeAll(nodes);
    }
  });

  it('publishes a will once: at once when the connection drops, and after its delay when its node stopped', async () => {
    const [a, b, c] = await startCluster(redis, 'wl:', 3, FAST);
    const watchers = [await mqttClient(b, { protocolVersion: 5 }), await mqttClient(c, { protocolVersion: 5 })];
    try {
      for (const w of watchers) await w.subscribeAsync('will/#', { qos: 1 });
      const wills = (w: (typeof watchers)[number], id: string) => w.received.filter((r) => r.topic === `will/${id}`);
      const marker = async (tag: string) => {
        await httpPublish(a.http, 'will/marker', tag);
        for (const w of watchers) await waitFor(() => w.received.some((r) => r.topic === 'will/marker' && r.payload === tag), `marker ${tag}`);
      };

      const gone = await RawClient.open(a, 5);
      await gone.connect({ clientId: 'dropper', will: { topic: 'will/dropper', payload: Buffer.from('dropped'), qos: 1, retain: false } });
      gone.close();
      for (const w of watchers) await waitFor(() => wills(w, 'dropper').length === 1, 'the will of the dropped connection');
      await marker('m1');
      for (const w of watchers) assert.equal(wills(w, 'dropper').length, 1);

      // a will waiting out its delay on a node that stops is published by another, once, when due
      const waiting = await RawClient.open(a, 5);
      await waiting.connect({
        clientId: 'waiter',
        properties: { sessionExpiryInterval: 60 },
        will: { topic: 'will/waiter', payload: Buffer.from('late'), qos: 1, retain: false, properties: { willDelayInterval: 2 } },
      });
      const t0 = Date.now();
      await a.close();
      for (const w of watchers) await waitFor(() => wills(w, 'waiter').length === 1, 'the will of the stopped node', 10_000);
      assert.ok(Date.now() - t0 >= 1900, `published after its delay (${Date.now() - t0} ms)`);
      assert.equal(wills(watchers[0], 'waiter')[0].payload, 'late');
      await httpPublish(b.http, 'will/marker', 'm2');
      for (const w of watchers) await waitFor(() => w.received.some((r) => r.payload === 'm2'), 'marker m2');
      for (const w of watchers) assert.equal(wills(w, 'waiter').length, 1, 'the will once');
      waiting.close();
    } finally {
      for (const w of watchers) await w.endAsync();
      await closeAll([a, b, c]);
    }
  });

  it('after kill -9 of a node: another takes over its Web Push deliveries and publishes the will of its open connection', async () => {
    const svc = await startPushService();
    const dir = tempDir();
    const common = { ...FAST, auth: { allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['#'] } }, webpush: webpushConfig(svc, { retryMinDelay: 20, retryMaxDelay: 200 }) };
    const file = join(dir.path, 'node.json');
    writeFileSync(file, JSON.stringify({ ...common, http: { host: '127.0.0.1' }, store: { kind: 'redis', redis: { url: redis.url, prefix: 'kill:' } }, bus: { kind: 'redis' }, log: { level: 'warn' } }));
    // the child starts first, so it takes the sender lease
    const child = await spawnServer(['--config', file]);
    let childAlive = true;
    const nodes = await startCluster(redis, 'kill:', 2, common);
    const watcher = await mqttClient(nodes[0], { protocolVersion: 5 });
    try {
      assert.ok(nodes.every((n) => !n.webpush!.sending), 'the child node sends');
      svc.expectedKey = ((await (await fetch(`${nodes[0].http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
      const browser = svc.browser('killed');
      const r = await fetch(`${nodes[1].http}/v1/webpush/subscriptions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ subscription: browser.subscription, topics: ['k/#'] }),
      });
      assert.equal(r.status, 201, await r.text());
      const accepted = () => svc.received.filter((x) => x.name === 'killed' && x.status >= 200 && x.status < 300).map((x) => x.payload!.cursor as string);
      await waitFor(
        async () => {
          await httpPublish(nodes[0].http, 'k/probe', 'probe');
          return accepted().length > 0;
        },
        'a first push from the child',
      );

      await watcher.subscribeAsync('will/#', { qos: 1 });
      const doomed = await RawClient.open({ mqtt: child.mqtt } as RunningServer, 5);
      await doomed.connect({ clientId: 'doomed', will: { topic: 'will/doomed', payload: Buffer.from('node died'), qos: 1, retain: false } });

      svc.answer = () => ({ status: 503, headers: { 'retry-after': '1' } });
      const pending: string[] = [];
      for (let i = 0; i < 3; i++) pending.push(await httpPublish(nodes[i % 2].http, `k/${i}`, `k${i}`));
      await waitFor(() => pending.every((c) => svc.received.some((x) => x.payload?.cursor === c)), 'each pending delivery tried once');
      await child.kill();
      childAlive = false;
      svc.answer = () => ({ status: 201 });

      await waitFor(() => pending.every((c) => accepted().includes(c)), 'the pending deliveries sent by a surviving node', 15_000);
      assert.ok(nodes.some((n) => n.webpush!.sending), 'a surviving node holds the lease');
      const end = await httpPublish(nodes[1].http, 'k/end', 'end');
      await waitFor(() => accepted().includes(end), 'the end marker push');
      for (const c of pending) assert.equal(accepted().filter((x) => x === c).length, 1, `one accepted push for ${c}`);

      await waitFor(() => watcher.received.some((x) => x.topic === 'will/doomed'), 'the will of the connection on the killed node', 10_000);
      await httpPublish(nodes[1].http, 'will/marker', 'after');
      await waitFor(() => watcher.received.some((x) => x.payload === 'after'), 'the marker');
      assert.equal(watcher.received.filter((x) => x.topic === 'will/doomed').length, 1, 'the will once');
      doomed.close();
    } finally {
      await watcher.endAsync();
      if (childAlive) await child.kill();
      await closeAll(nodes);
      await svc.close();
      dir.remove();
    }
  });

  it('after kill -9 of the node holding a session: a reconnect elsewhere waits until that node is found dead, not the whole takeover timeout', async () => {
    // the takeover timeout is far longer than the time to find a node dead
    const TAKEOVER_S = 10;
    const cluster = { heartbeat: 0.1, nodeTimeout: 1, takeoverTimeout: TAKEOVER_S };
    const dir = tempDir();
    const file = join(dir.path, 'node.json');
    writeFileSync(file, JSON.stringify({ cluster, http: { host: '127.0.0.1' }, store: { kind: 'redis', redis: { url: redis.url, prefix: 'dead:' } }, bus: { kind: 'redis' }, history: { pruneInterval: 3600 }, log: { level: 'warn' } }));
    const child = await spawnServer(['--config', file]);
    let childAlive = true;
    const [b, c] = await startCluster(redis, 'dead:', 2, { cluster });
    const held = await RawClient.open({ mqtt: child.mqtt } as RunningServer, 5);
    let back: RawClient | undefined;
    try {
      await waitFor(() => b.cluster.nodes().length === 3, 'node B to see all three nodes');
      assert.equal((await held.connect({ clientId: 'on-dead', clean: false, properties: { sessionExpiryInterval: 300 } })).reasonCode, 0);
      held.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'dead/#', qos: 1 }] });
      await held.next('suback');

      await child.kill();
      childAlive = false;
      for (let i = 0; i < 3; i++) await httpPublish(c.http, `dead/${i}`, `q${i}`);
      // the reconnect comes while B still counts the killed node live, so B asks it to let go
      assert.equal(b.cluster.nodes().length, 3, 'B has not yet found the killed node dead');
      back = await RawClient.open(b, 5);
      const t0 = performance.now();
      back.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', clientId: 'on-dead', clean: false, keepalive: 60, properties: { sessionExpiryInterval: 300 } });
      const ack = (await back.next('connack', (TAKEOVER_S + 5) * 1000)) as IConnackPacket;
      const waited = performance.now() - t0;
      assert.equal(ack.reasonCode, 0);
      assert.equal(ack.sessionPresent, true, 'the session written on the killed node');
      assert.ok(waited < 5000, `CONNACK after ${Math.round(waited)} ms: the wait should end once the node is found dead (node timeout 1 s), not after the ${TAKEOVER_S} s takeover timeout`);
      const got: string[] = [];
      for (let i = 0; i < 3; i++) {
        const p = (await back.next('publish')) as IPublishPacket;
        assert.equal(p.qos, 1);
        back.send({ cmd: 'puback', messageId: p.messageId });
        got.push(p.payload.toString());
      }
      assert.deepEqual(got, ['q0', 'q1', 'q2'], 'the QoS 1 messages published after the kill');
    } finally {
      held.close();
      back?.close();
      if (childAlive) await child.kill();
      await closeAll([b, c]);
      dir.remove();
    }
  });

  it('a CONNECT waiting for a takeover longer than mqtt.connectTimeout is still answered (CONNACK, session present); a socket without CONNECT is closed', async () => {
    // the holder is killed but counts as live for 10 s, so the takeover waits out its whole 3 s
    // timeout: three times the 1 s connect timeout
    const TAKEOVER_S = 3;
    const CONNECT_S = 1;
    const cluster = { heartbeat: 0.1, nodeTimeout: 10, takeoverTimeout: TAKEOVER_S };
    const dir = tempDir();
    const file = join(dir.path, 'node.json');
    writeFileSync(file, JSON.stringify({ cluster, http: { host: '127.0.0.1' }, store: { kind: 'redis', redis: { url: redis.url, prefix: 'slowto:' } }, bus: { kind: 'redis' }, history: { pruneInterval: 3600 }, log: { level: 'warn' } }));
    const child = await spawnServer(['--config', file]);
    let childAlive = true;
    const [b] = await startCluster(redis, 'slowto:', 1, { cluster, mqtt: { connectTimeout: CONNECT_S } });
    const clients: RawClient[] = [];
    const open = async (node: RunningServer, version: 4 | 5) => {
      const c = await RawClient.open(node, version);
      clients.push(c);
      return c;
    };
    try {
      await waitFor(() => b.cluster.nodes().length === 2, 'node B to see the other node');
      const held5 = await open({ mqtt: child.mqtt } as RunningServer, 5);
      assert.equal((await held5.connect({ clientId: 'slow-5', clean: false, properties: { sessionExpiryInterval: 300 } })).reasonCode, 0);
      const held4 = await open({ mqtt: child.mqtt } as RunningServer, 4);
      assert.equal((await held4.connect({ clientId: 'slow-4', clean: false })).returnCode, 0);
      await child.kill();
      childAlive = false;

      const silent = await open(b, 5);
      const back5 = await open(b, 5);
      const back4 = await open(b, 4);
      const t0 = performance.now();
      back5.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', clientId: 'slow-5', clean: false, keepalive: 60, properties: { sessionExpiryInterval: 300 } });
      back4.send({ cmd: 'connect', protocolVersion: 4, protocolId: 'MQTT', clientId: 'slow-4', clean: false, keepalive: 60 });
      const ack5 = (await back5.next('connack', (TAKEOVER_S + CONNECT_S + 5) * 1000)) as IConnackPacket;
      const ack4 = (await back4.next('connack', (TAKEOVER_S + CONNECT_S + 5) * 1000)) as IConnackPacket;
      const waited = performance.now() - t0;
      assert.equal(ack5.reasonCode, 0, 'v5: CONNACK success after the takeover');
      assert.equal(ack5.sessionPresent, true, 'v5: the session written on the killed node');
      assert.equal(ack4.returnCode, 0, '3.1.1: CONNACK accepted after the takeover');
      assert.equal(ack4.sessionPresent, true, '3.1.1: the session written on the killed node');
      assert.ok(waited > (CONNECT_S + 0.5) * 1000, `the takeover really outlasted the connect timeout (CONNACK after ${Math.round(waited)} ms)`);
      assert.equal(back5.closed || back4.closed, false, 'both connections stay open');
      // the connect timeout still closes a connection that never sent CONNECT, without a word
      await silent.waitClosed((CONNECT_S + 5) * 1000);
      assert.deepEqual(silent.packets, []);
    } finally {
      for (const c of clients) c.close();
      if (childAlive) await child.kill();
      await closeAll([b]);
      dir.remove();
    }
  });

  describe('Web Push', () => {
    let svc: PushService;
    before(async () => {
      svc = await startPushService();
    });
    after(async () => {
      await svc?.close();
    });

    it('nodes starting together share one VAPID key pair', async () => {
      const cfg = clusterConfig(redis, 'vk:', { ...FAST, webpush: webpushConfig(svc) });
      const nodes = await Promise.all([0, 1, 2].map(() => startTestServer(cfg)));
      try {
        const keys = new Set(nodes.map((n) => n.webpush!.publicKey));
        assert.equal(keys.size, 1, [...keys].join(' '));
      } finally {
        await closeAll(nodes);
      }
    });

    it('sends each push once with three nodes, and a new sender takes over pending deliveries', async () => {
      const nodes = await startCluster(redis, 'wp:', 3, { ...FAST, auth: { allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['#'] } }, webpush: webpushConfig(svc, { retryMinDelay: 20, retryMaxDelay: 200 }) });
      const closed = new Set<RunningServer>();
      try {
        svc.expectedKey = ((await (await fetch(`${nodes[0].http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
        const browser = svc.browser('cluster');
        const r = await fetch(`${nodes[1].http}/v1/webpush/subscriptions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ subscription: browser.subscription, topics: ['wp/#'] }),
        });
        assert.equal(r.status, 201, await r.text());
        const ok = () => svc.received.filter((x) => x.name === 'cluster' && x.status >= 200 && x.status < 300);
        const cursorsOf = () => ok().map((x) => x.payload!.cursor as string);

        // the sender attaches the subscription registered on another node; wait for a first push
        await waitFor(
          async () => {
            await httpPublish(nodes[2].http, 'wp/probe', 'probe');
            return ok().length > 0;
          },
          'the first push',
        );
        const sent: string[] = [];
        for (let i = 0; i < 12; i++) sent.push(await httpPublish(nodes[i % 3].http, `wp/${i}`, `p${i}`));
        const end = await httpPublish(nodes[0].http, 'wp/end', 'end');
        // one sender, in seq order per subscription: a duplicate would come before the end marker
        await waitFor(() => cursorsOf().includes(end), 'the end marker push');
        for (const c of sent) assert.equal(cursorsOf().filter((x) => x === c).length, 1, `one push for ${c}`);

        // the push service refuses for a while: deliveries stay queued at the sender, which then stops
        const sender = whoSends(nodes);
        assert.ok(sender, 'one node sends');
        assert.equal(nodes.filter((n) => n.webpush!.sending).length, 1, 'only one');
        svc.answer = () => ({ status: 503, headers: { 'retry-after': '1' } });
        const pending: string[] = [];
        for (let i = 0; i < 4; i++) pending.push(await httpPublish(nodes[i % 3].http, `wp/pending${i}`, `q${i}`));
        await waitFor(() => sender.webpush!.queue.size === 4 && svc.received.filter((x) => x.payload?.cursor === pending[3]).length > 0, 'the four deliveries queued and tried');
        svc.answer = () => ({ status: 201 });
        await sender.close();
        closed.add(sender);
        const rest = nodes.filter((n) => n !== sender);
        await waitFor(() => pending.every((c) => cursorsOf().includes(c)), 'the pending deliveries sent by the new sender', 15_000);
        const end2 = await httpPublish(rest[0].http, 'wp/end', 'end2');
        await waitFor(() => cursorsOf().includes(end2), 'the second end marker');
        for (const c of pending) assert.equal(cursorsOf().filter((x) => x === c).length, 1, `one accepted push for ${c}`);
        assert.ok(whoSends(rest), 'another node sends now');
      } finally {
        await closeAll(nodes.filter((n) => !closed.has(n)));
      }
    });
  });
});

/** The node holding the Web Push sender lease (the one whose door reports it sends). */
function whoSends(nodes: RunningServer[]): RunningServer | undefined {
  return nodes.find((n) => n.webpush!.sending);
}
