import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { httpPublish, startCluster } from './helpers/cluster.js';
import { RawClient } from './helpers/mqtt.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { spawnServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';

/** Sweep period (250 ms), store round trips and timer slack on a busy machine. */
const SLACK_MS = 2500;

interface Cluster {
  heartbeat: number;
  nodeTimeout: number;
  takeoverTimeout: number;
}

const persistent = (clientId: string, expiry: number) => ({ clientId, clean: false, properties: { sessionExpiryInterval: expiry } });

/** A spawned server as the MQTT helpers take it (they only read its MQTT address). */
const at = (s: ChildServer): RunningServer => ({ mqtt: s.mqtt }) as RunningServer;

/**
 * In a cluster, exactly one live node runs the expiry clock of each persistent session that has
 * no connection (docs/cluster.md, MQTT across nodes): the holder of its claim, also when the
 * CONNECT that claimed it never took the session up, when the previous holder answered a
 * takeover late, and when the holder died. Node A is a child process (so that it can be stopped
 * with SIGSTOP or killed with SIGKILL); node B runs in this process. Whether a session still
 * exists is read from Redis itself: a CONNECT would drop an expired record on the spot and so
 * would hide a record that nobody expires.
 */
describe('MQTT session expiry across nodes (Redis)', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  let admin: Redis;
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url);
  });
  after(async () => {
    admin?.disconnect();
    await redis?.remove();
  });

  /** Runs the registered cleanups, last first (clients, then nodes). */
  async function tidy(): Promise<void> {
    await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
    for (const f of cleanup.splice(0).reverse()) await f();
  }

  /** Node A, a child process, with the cluster settings given. */
  async function childNode(prefix: string, cluster: Cluster, mqtt: Record<string, unknown> = {}): Promise<ChildServer> {
    const dir = tempDir();
    const file = join(dir.path, 'node.json');
    writeFileSync(
      file,
      JSON.stringify({ cluster, mqtt, http: { host: '127.0.0.1' }, store: { kind: 'redis', redis: { url: redis.url, prefix } }, bus: { kind: 'redis' }, history: { pruneInterval: 3600 }, log: { level: 'warn' } }),
    );
    const child = await spawnServer(['--config', file]);
    cleanup.push(async () => {
      child.proc.kill('SIGCONT');
      if (child.proc.exitCode === null && child.proc.signalCode === null) await child.kill();
      dir.remove();
    });
    return child;
  }

  async function inProcessNode(prefix: string, cluster: Cluster, mqtt: Record<string, unknown> = {}): Promise<RunningServer> {
    const [node] = await startCluster(redis, prefix, 1, { cluster, mqtt });
    cleanup.push(() => node.close());
    return node;
  }

  async function open(node: RunningServer, version: 4 | 5 = 5): Promise<RawClient> {
    const c = await RawClient.open(node, version);
    cleanup.push(() => c.close());
    return c;
  }

  /** The session record as stored, or undefined. */
  async function record(prefix: string, clientId: string): Promise<{ node?: string; gone?: number; expiry: number } | undefined> {
    const raw = await admin.hget(`${prefix}rv:mqtt-session`, clientId);
    return raw ? (JSON.parse(raw) as { node?: string; gone?: number; expiry: number }) : undefined;
  }

  /** The owner's node id of the client id's claim, or undefined. */
  async function claimant(prefix: string, clientId: string): Promise<string | undefined> {
    const v = await admin.hget(`${prefix}cluster:claims:mqtt-session`, clientId);
    return v ? v.slice(0, v.indexOf(' ')) : undefined;
  }

  /** A persistent session on `node` with a QoS 1 subscription, left without a connection; resolves with its record. */
  async function offlineSession(node: RunningServer, prefix: string, clientId: string, expiry: number): Promise<{ node?: string; gone?: number }> {
    const c = await open(node);
    assert.equal((await c.connect(persistent(clientId, expiry))).reasonCode, 0);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${clientId}/#`, qos: 1 }] });
    await c.next('suback');
    c.send({ cmd: 'disconnect' });
    await c.waitClosed();
    return waitFor(async () => {
      const r = await record(prefix, clientId);
      return r?.gone !== undefined ? r : undefined;
    }, `the record of ${clientId} written without a connection`);
  }

  /** Resolves with the time (ms) the record was first seen gone; fails once `byMs` (epoch ms) is past. */
  async function goneBy(prefix: string, clientId: string, byMs: number, why: string): Promise<number> {
    await waitFor(async () => (await record(prefix, clientId)) === undefined, `${clientId}: ${why}`, Math.max(0, byMs - Date.now()));
    return Date.now();
  }

  it('a CONNECT that claimed the session but never took it up (the client vanished; refused at its deadline) leaves its node to expire it', async () => {
    const P = 'ab:';
    const E = 6;
    const cluster = { heartbeat: 0.1, nodeTimeout: 10, takeoverTimeout: 1 };
    try {
      const a = await childNode(P, cluster);
      const b = await inProcessNode(P, cluster, { connectTimeout: 1 });
      await waitFor(() => b.cluster.nodes().length === 2, 'node B to see node A');
      const vanished = await offlineSession(at(a), P, 'ab-vanished', E);
      const refused = await offlineSession(at(a), P, 'ab-refused', E);
      assert.equal(vanished.node, await claimant(P, 'ab-vanished'), 'A holds the session');

      // Redis holds every write (the claims among them) until UNPAUSE, so both CONNECTs on B
      // stop at their claim; heartbeats wait too, and nobody is found dead meanwhile
      await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
      const broker = b.mqttDoor!.broker;
      const gone = await open(b);
      gone.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', keepalive: 60, ...persistent('ab-vanished', E) });
      await waitFor(() => [...broker.connections].some((c) => c.clientId === 'ab-vanished' && c.state === 'connecting'), 'B to be at work on the CONNECT');
      // the client goes at once (a reset: B notices it although it does not read the socket meanwhile)
      gone.socket.resetAndDestroy();
      await waitFor(() => ![...broker.connections].some((c) => c.clientId === 'ab-vanished'), 'B to see the client gone');

      const late = await open(b);
      late.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', keepalive: 60, ...persistent('ab-refused', E) });
      const ack = (await late.next('connack', 10_000)) as IConnackPacket;
      assert.equal(ack.reasonCode, 0x88, 'refused at its deadline: Server unavailable');

      // the claims land now; A lets go of both sessions, and neither CONNECT takes its session up
      await admin.call('CLIENT', 'UNPAUSE');
      await waitFor(async () => (await claimant(P, 'ab-vanished')) === b.cluster.nodeId && (await claimant(P, 'ab-refused')) === b.cluster.nodeId, 'B to hold both claims');

      for (const [id, r] of [
        ['ab-vanished', vanished],
        ['ab-refused', refused],
      ] as const) {
        const t = await goneBy(P, id, r.gone! + E * 1000 + SLACK_MS, `the session expired ${E} s after its client left`);
        assert.ok(t >= r.gone! + E * 1000, `${id}: not before its expiry (gone ${t - r.gone!} ms after its client left)`);
      }
      const again = await open(at(a));
      assert.equal((await again.connect(persistent('ab-vanished', E))).sessionPresent, false, 'no session left');
    } finally {
      await tidy();
    }
  });

  it('a CONNECT refused after it read the session (store stalled at its deadline) leaves its node to expire it', async () => {
    const P = 'rd:';
    const E = 7;
    const cluster = { heartbeat: 0.1, nodeTimeout: 10, takeoverTimeout: 1 };
    try {
      const a = await childNode(P, cluster);
      const b = await inProcessNode(P, cluster, { connectTimeout: 1 });
      await waitFor(() => b.cluster.nodes().length === 2, 'node B to see node A');
      const rec = await offlineSession(at(a), P, 'rd-1', E);

      // A stops answering (it still counts as live), so B waits out its takeover timeout
      a.proc.kill('SIGSTOP');
      const c = await open(b);
      c.send({ cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', keepalive: 60, ...persistent('rd-1', E) });
      await waitFor(async () => (await claimant(P, 'rd-1')) === b.cluster.nodeId, 'B to claim the session');
      // every command waits for 3.5 s: B's read of the record, after the 1 s takeover wait, is still
      // pending at its CONNECT's deadline (connect 1 s + takeover 1 s)
      await admin.call('CLIENT', 'PAUSE', '3500', 'ALL');
      const ack = (await c.next('connack', 10_000)) as IConnackPacket;
      assert.equal(ack.reasonCode, 0x88, 'refused at its deadline');
      // A takes the takeover request now and lets go, late
      a.proc.kill('SIGCONT');

      const t = await goneBy(P, 'rd-1', rec.gone! + E * 1000 + SLACK_MS, `the session expired ${E} s after its client left`);
      assert.ok(t >= rec.gone! + E * 1000, `not before its expiry (gone ${t - rec.gone!} ms after its client left)`);
    } finally {
      await tidy();
    }
  });

  it('a takeover answered late (the old holder writes the session after the new one did) still leaves one node to expire it', async () => {
    const P = 'lt:';
    const E = 4;
    const cluster = { heartbeat: 0.1, nodeTimeout: 10, takeoverTimeout: 1 };
    try {
      const a = await childNode(P, cluster);
      const b = await inProcessNode(P, cluster);
      await waitFor(() => b.cluster.nodes().length === 2, 'node B to see node A');
      const old = await open(at(a));
      assert.equal((await old.connect(persistent('lt-1', E))).reasonCode, 0);
      old.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'lt/#', qos: 1 }] });
      await old.next('suback');

      // A stops answering while its connection is open: B goes ahead after its takeover timeout
      a.proc.kill('SIGSTOP');
      const c = await open(b);
      const ack = await c.connect(persistent('lt-1', E));
      assert.equal(ack.reasonCode, 0);
      assert.equal(ack.sessionPresent, true);
      c.send({ cmd: 'disconnect' });
      await c.waitClosed();
      await waitFor(async () => (await record(P, 'lt-1'))?.node === b.cluster.nodeId, 'B to write the session without a connection');

      // A answers now: it closes its connection (0x8E) and writes the session a last time
      a.proc.kill('SIGCONT');
      assert.equal(await old.disconnectCode(10_000), 0x8e);
      const last = await waitFor(async () => {
        const r = await record(P, 'lt-1');
        return r?.node !== b.cluster.nodeId ? r : undefined;
      }, "A's late write of the session");
      assert.ok(last.gone !== undefined);

      const t = await goneBy(P, 'lt-1', last.gone! + E * 1000 + SLACK_MS, `the session expired ${E} s after its last connection ended`);
      assert.ok(t >= last.gone! + E * 1000, `the later deadline of the two writes counts (gone ${t - last.gone!} ms after the last connection ended)`);
    } finally {
      await tidy();
    }
  });

  it('the sessions of a killed node (offline, and connected at the kill) are expired by a node that was up before they existed', async () => {
    const P = 'kd:';
    const E = 3;
    const cluster = { heartbeat: 0.1, nodeTimeout: 1, takeoverTimeout: 3 };
    try {
      const b = await inProcessNode(P, cluster);
      const a = await childNode(P, cluster);
      await waitFor(() => b.cluster.nodes().length === 2, 'node B to see node A');
      const off = await offlineSession(at(a), P, 'kd-offline', E);
      const on = await open(at(a));
      assert.equal((await on.connect(persistent('kd-connected', E))).reasonCode, 0);
      on.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'kd/#', qos: 1 }] });
      await on.next('suback');
      assert.ok(await record(P, 'kd-connected'));

      const killedAt = Date.now();
      await a.kill();
      const tOff = await goneBy(P, 'kd-offline', Math.max(off.gone! + E * 1000, killedAt + cluster.nodeTimeout * 1000) + SLACK_MS, 'the offline session expired');
      assert.ok(tOff >= off.gone! + E * 1000, `not before its expiry (gone ${tOff - off.gone!} ms after its client left)`);
      const t = await goneBy(P, 'kd-connected', killedAt + (cluster.nodeTimeout + E) * 1000 + SLACK_MS, `the connected session expired ${E} s after its node was found dead`);
      assert.ok(t >= killedAt + E * 1000, `the clock of the session connected at the kill starts when its node is found dead, not before (gone ${t - killedAt} ms after the kill)`);
    } finally {
      await tidy();
    }
  });

  it('never expires a session a connection holds, on a node that learned of it from the store at start', async () => {
    const P = 'lv:';
    const E = 1;
    const cluster = { heartbeat: 0.1, nodeTimeout: 2, takeoverTimeout: 1 };
    try {
      const a = await childNode(P, cluster);
      const held = await open(at(a));
      assert.equal((await held.connect(persistent('lv-1', E))).reasonCode, 0);
      held.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'lv/#', qos: 1 }] });
      await held.next('suback');
      // C starts with the record in the store (written while connected): it looks at it, finds
      // the session's holder alive, and lets it be
      const c = await inProcessNode(P, cluster);
      const started = Date.now();
      await waitFor(() => c.mqttDoor!.broker.sessions.size === 0, 'C to look at the session and leave it to A', (E + 5) * 1000);
      // whatever clock C started for it has run out by now (its expiry from C's start, and a sweep)
      await new Promise((r) => setTimeout(r, Math.max(0, started + E * 1000 + 500 - Date.now())));
      assert.ok(await record(P, 'lv-1'), 'the record is still there');
      await httpPublish(c.http, 'lv/x', 'still here');
      const p = (await held.next('publish')) as IPublishPacket;
      assert.equal(p.payload.toString(), 'still here');
      held.send({ cmd: 'puback', messageId: p.messageId });

      held.send({ cmd: 'disconnect' });
      await held.waitClosed();
      const rec = await waitFor(async () => {
        const r = await record(P, 'lv-1');
        return r?.gone !== undefined ? r : undefined;
      }, 'the record written without a connection');
      const t = await goneBy(P, 'lv-1', rec.gone! + E * 1000 + SLACK_MS, 'the session expired once its connection ended');
      assert.ok(t >= rec.gone! + E * 1000, `not before its expiry (gone ${t - rec.gone!} ms after its client left)`);
    } finally {
      await tidy();
    }
  });
});
