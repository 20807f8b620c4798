/**
 * Presence: a join storm of N WebSocket subscribers on one presence topic (with a join/leave
 * watcher) against the same storm on a topic without a rule; the list read at N members; fan-out
 * on both topics; and the heap per present member (in this process, after forced GCs: a server's
 * RSS, or its heap beside 10k sockets, moves by more than the few hundred bytes looked for).
 */
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { newNodeId } from '../../src/cluster/control.js';
import type { ConnectionInfo } from '../../src/core/connections.js';
import { ALLOW_ALL, type Principal } from '../../src/core/grants.js';
import { Presence } from '../../src/core/presence.js';
import { LocalPresence } from '../../src/core/presence-local.js';
import { Histogram } from '../lib/histogram.js';
import { cpuSeconds, forkLoadGen, startServerProcess, type LoadGen, type ServerProc } from '../lib/procs.js';
import { sleep } from '../lib/publish.js';
import { LOADGEN_DIR, startOmnipush } from '../lib/servers.js';
import { maxRatePhase } from './fanout.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const RULED = 'bench/presence';
const PLAIN = 'bench/plain';
const RULES = [{ filter: RULED, joinLeave: true, maxMembers: 1_000_000 }];

export interface StormResult {
  clients: number;
  ms: number;
  serverCpuUsPerJoin: number;
}

export interface PresenceBenchResult {
  ruled: StormResult;
  plain: StormResult;
  /** Join events the watcher received during the ruled storm. */
  watcherEvents: number;
  snapshot: { members: number; p50ms: number; p99ms: number };
  fanout: { ruledPerSec: number; plainPerSec: number };
  heapPerMemberBytes: number;
}

/** Connects `n` subscribers of `topic` across two load generators; time and server CPU per join. */
async function storm(server: ServerProc, gens: LoadGen[], topic: string, n: number): Promise<StormResult> {
  const pid = server.proc.pid!;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const half = Math.ceil(n / 2);
  await Promise.all([gens[0].ask({ cmd: 'connect', url: server.url, mode: 'omnipush', topic, count: half }), gens[1].ask({ cmd: 'connect', url: server.url, mode: 'omnipush', topic, count: n - half })]);
  const ms = performance.now() - t0;
  return { clients: n, ms: Math.round(ms), serverCpuUsPerJoin: Math.round(((cpuSeconds(pid) - cpu0) * 1e6) / n) };
}

/** A WebSocket that asked for the join/leave events of `topic`; counts them. */
async function watcher(url: string, topic: string): Promise<{ joins(): number; close(): void }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`);
  let joins = 0;
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('message', (d: Buffer) => {
    if (d.includes('"type":"join"')) joins++;
  });
  ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], presence: true, since: 'now', id: 1 }));
  return { joins: () => joins, close: () => ws.terminate() };
}

async function snapshotTimes(url: string, topic: string, rounds: number): Promise<{ members: number; p50ms: number; p99ms: number }> {
  const h = new Histogram();
  let members = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/presence?topic=${encodeURIComponent(topic)}&limit=100000`);
    const body = await r.arrayBuffer();
    // to the last byte of the answer; the count is read after the clock stops
    h.add(performance.now() - t0);
    members = (JSON.parse(Buffer.from(body).toString('utf8')) as { members: unknown[] }).members.length;
  }
  return { members, p50ms: h.percentile(0.5), p99ms: h.percentile(0.99) };
}

/** Heap after two full collections (the flag is set once; `gc` comes from a fresh context). */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/**
 * Heap per member between half and all of `n` members: the presence registry (with the local
 * backend, as a lone node runs it) fed connection-like objects, each holding one ruled filter. The
 * connections are made before the first reading, so the slope is what presence adds to them.
 */
function memberHeapSlope(n: number, warm = true): number {
  // a first round compiles the code paths, whose feedback and code would otherwise count
  if (warm) memberHeapSlope(2000, false);
  const presence = new Presence(RULES, new LocalPresence(), { nodeId: newNodeId(), pollGraceMs: 30_000, leaveGraceMs: 5_000, maxPageSize: 1000 });
  const principal: Principal = { id: 'anonymous', kind: 'anonymous', grants: ALLOW_ALL };
  const subs = [RULED];
  const conns: ConnectionInfo[] = [];
  for (let i = 0; i < n; i++) {
    conns.push({ id: `websocket-${i + 1}`, door: 'websocket', address: '127.0.0.1', since: Date.now(), principal, subscriptions: () => subs, close: () => undefined, presenceState: undefined });
  }
  const half = Math.ceil(n / 2);
  for (let i = 0; i < half; i++) presence.connected(conns[i]);
  const h1 = heapAfterGc();
  for (let i = half; i < n; i++) presence.connected(conns[i]);
  const h2 = heapAfterGc();
  if (presence.heldCount !== n) throw new Error(`presence holds ${presence.heldCount} members, not ${n}`);
  return (h2 - h1) / (n - half);
}

/** A WebSocket member of `topic` on `url` with the stable id `client`; resolves once subscribed. */
async function member(url: string, topic: string, client: string): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws?client=${client}`);
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], since: 'now', id: 1 }));
  await new Promise<void>((resolve) => ws.once('message', () => resolve()));
  return ws;
}

/**
 * Two nodes on one Redis: members join on the first, one at a time, and a watcher on the second
 * times each join from the member's subscribe to its event.
 */
export async function clusterJoinLatency(redisUrl: string, joins: number): Promise<{ joins: number; p50ms: number; p99ms: number; missed: number }> {
  const env = {
    OMNIPUSH_STORE__REDIS__URL: redisUrl,
    OMNIPUSH_STORE__REDIS__PREFIX: 'bench-presence:',
    OMNIPUSH_BUS__KIND: 'redis',
    OMNIPUSH_PRESENCE__RULES: JSON.stringify(RULES),
    OMNIPUSH_PRESENCE__LEAVE_GRACE: '0',
  };
  const node = () => startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--mqtt-port', '0', '--log-level', 'warn', '--store', 'redis'], env);
  const [a, b] = [await node(), await node()];
  const seen = new Map<string, number>();
  const w = new WebSocket(`${b.url.replace(/^http/, 'ws')}/v1/ws`);
  const members: WebSocket[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      w.once('open', () => resolve());
      w.once('error', reject);
    });
    w.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString()) as { type: string; member?: { id: string } };
      if (f.type === 'join') seen.set(f.member!.id, performance.now());
    });
    w.send(JSON.stringify({ type: 'subscribe', topics: [RULED], presence: true, since: 'now', id: 1 }));
    await sleep(300);
    const h = new Histogram();
    let missed = 0;
    for (let i = 0; i < joins; i++) {
      const id = `anonymous/j${i}`;
      const t0 = performance.now();
      members.push(await member(a.url, RULED, `j${i}`));
      const until = performance.now() + 2000;
      while (!seen.has(id) && performance.now() < until) await sleep(1);
      if (seen.has(id)) h.add(seen.get(id)! - t0);
      else missed++;
    }
    return { joins, p50ms: h.percentile(0.5), p99ms: h.percentile(0.99), missed };
  } finally {
    w.terminate();
    for (const m of members) m.terminate();
    await a.stop();
    await b.stop();
  }
}

export async function presenceScenario(n: number, seconds: number): Promise<PresenceBenchResult> {
  const env = { OMNIPUSH_PRESENCE__RULES: JSON.stringify(RULES), OMNIPUSH_PRESENCE__MAX_PAGE_SIZE: '100000' };
  const runOn = async (topic: string) => {
    const server = await startOmnipush('memory', { env });
    const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, 'ws-clients.js'), []));
    const w = await watcher(server.url, RULED);
    try {
      await sleep(300);
      const s = await storm(server, gens, topic, n);
      // the watcher's joins come after the storm's last reply at most a little later
      const until = performance.now() + 5000;
      while (topic === RULED && w.joins() < n + 1 && performance.now() < until) await sleep(20);
      const snap = topic === RULED ? await snapshotTimes(server.url, RULED, 30) : undefined;
      const rate = await maxRatePhase(gens, server.url, topic, n, seconds, { batch: 20, inFlight: 2, cpu: () => cpuSeconds(server.proc.pid!) });
      return { storm: s, joins: w.joins(), snap, rate: rate.deliveriesPerSec };
    } finally {
      w.close();
      await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
      gens.forEach((g) => g.stop());
      await server.stop();
    }
  };
  const ruled = await runOn(RULED);
  const plain = await runOn(PLAIN);
  return {
    ruled: ruled.storm,
    plain: plain.storm,
    // the watcher is a member too: its own join is one of them
    watcherEvents: ruled.joins,
    snapshot: ruled.snap!,
    fanout: { ruledPerSec: ruled.rate, plainPerSec: plain.rate },
    // at least 20k: below, a hash table doubling inside the half→all span outweighs the members
    heapPerMemberBytes: Math.round(memberHeapSlope(Math.max(n, 20_000))),
  };
}
