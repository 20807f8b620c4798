/**
 * MQTT against one broker, through the same load generator and publisher whatever the broker:
 * idle RSS per connection, QoS 0 fan-out at max rate and at a fixed delivery rate (latency), and
 * QoS 1 point-to-point pairs acknowledged end to end.
 */
import { join } from 'node:path';
import { Histogram } from '../lib/histogram.js';
import { MqttConn } from '../lib/mqtt-wire.js';
import { cpuNanos, cpuSeconds, forkLoadGen, heldRss, type LoadGen, type ServerProc } from '../lib/procs.js';
import { paced, sleep, stampedPayload } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';

export interface MqttResult {
  clients: number;
  /** (RSS with every client − RSS before any) / clients: includes one-time costs such as V8's young generation growing. */
  rssPerIdleConnBytes: number;
  /** RSS slope between half and all of the clients: what one more idle connection costs. */
  rssMarginalPerConnBytes: number;
  fanout: { deliveriesPerSec: number; messages: number; lost: number; serverCpuPct: number; closed: number };
  /** `undelivered`: deliveries still missing 5 s after the last publish (a broker slower than the target is still catching up) */
  fixedRate: { targetDeliveriesPerSec: number; deliveriesPerSec: number; undelivered: number; p50ms: number; p99ms: number; serverCpuPct: number };
  qos1: Qos1Result;
}

export interface MqttOptions {
  clients: number;
  pairs: number;
  seconds: number;
}

const TOPIC = 'bench/fanout';
/**
 * How far publishing may run ahead of deliveries in the max-rate phase: enough that the broker never
 * waits for the publisher (two seconds of its own pace, and at least 100k deliveries or two messages
 * per subscriber), but no more than 200 messages per subscriber (as the SSE/WS fan-out allows), so a
 * slow broker ends the phase with a backlog it delivers in seconds, not minutes. Messages go out in
 * batches of up to BATCH.
 */
const BACKLOG_PER_CLIENT = 200;
const BACKLOG_SECONDS = 2;
const BACKLOG_FLOOR = 100_000;
const BATCH = 40;
/** QoS 1 messages each pair may have short of end-to-end acknowledgement. */
const QOS1_WINDOW = 10;
/**
 * A broker that delivers nothing for this long has dropped what is missing (QoS 0 allows it). Long
 * enough that a broker starved of CPU by its neighbours on a shared machine is not taken for one.
 */
const STALL_MS = 3000;

export async function call<T>(g: LoadGen, msg: Record<string, unknown>): Promise<T> {
  const r = await g.ask<T & { error?: string }>(msg);
  if (r && typeof r === 'object' && 'error' in r && r.error) throw new Error(`load generator: ${r.error}`);
  return r;
}

interface Stats {
  delivered: number;
  closed: number;
  hist?: number[];
}

async function stats(gens: LoadGen[], opts: { reset?: boolean; hist?: boolean; timing?: boolean } = {}): Promise<{ delivered: number; closed: number; hist: Histogram }> {
  const all = await Promise.all(gens.map((g) => call<Stats>(g, { cmd: 'stats', ...opts })));
  const hist = new Histogram();
  for (const s of all) if (s.hist) hist.merge(s.hist);
  return { delivered: all.reduce((n, s) => n + s.delivered, 0), closed: all.reduce((n, s) => n + s.closed, 0), hist };
}

/**
 * Waits until `delivered` reaches `want`, stops moving for STALL_MS, or `ms` pass; returns the last
 * stats and when deliveries last moved (so a wait for lost messages does not count as working time).
 */
async function drain(gens: LoadGen[], want: number, ms: number, hist = false): Promise<{ delivered: number; closed: number; hist: Histogram; movedAt: number }> {
  const deadline = performance.now() + ms;
  let s = await stats(gens, { hist });
  let last = s.delivered;
  let movedAt = performance.now();
  while (s.delivered < want && performance.now() < deadline && performance.now() - movedAt < STALL_MS) {
    await sleep(10);
    s = await stats(gens, { hist });
    if (s.delivered !== last) {
      last = s.delivered;
      movedAt = performance.now();
    }
  }
  return { ...s, movedAt };
}


/** Writes `n` stamped QoS 0 messages in one go, waiting for the socket to drain if it backs up. */
async function publishQos0(pub: MqttConn, n: number): Promise<void> {
  pub.sock.cork();
  for (let i = 0; i < n; i++) pub.publish(TOPIC, stampedPayload(), 0);
  pub.sock.uncork();
  if (pub.sock.writableNeedDrain) await new Promise((r) => pub.sock.once('drain', r));
  if (!pub.isOpen) throw new Error('the broker closed the publisher');
}

/**
 * QoS 0 fan-out at max rate from `pub` to the load generators' subscribers, with the backlog
 * bounded so that buffering is not what gets measured.
 */
export async function mqttMaxRate(gens: LoadGen[], pub: MqttConn, pid: number, clients: number, seconds: number): Promise<MqttResult['fanout']> {
  await stats(gens, { reset: true, timing: false });
  let published = 0;
  // deliveries given up on after a stall, so a broker that drops does not stall every later round
  let writtenOff = 0;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let lastDelivered = -1;
  let movedAt = t0;
  while (performance.now() < end) {
    const s = await stats(gens);
    const now = performance.now();
    if (s.delivered !== lastDelivered) {
      lastDelivered = s.delivered;
      movedAt = now;
    }
    const pace = now - t0 > 200 ? (s.delivered / (now - t0)) * 1000 : 0;
    const limit = Math.min(clients * BACKLOG_PER_CLIENT, Math.max(2 * clients, BACKLOG_FLOOR, pace * BACKLOG_SECONDS));
    const room = Math.floor((limit - (published * clients - writtenOff - s.delivered)) / clients);
    if (room > 0) {
      const n = Math.min(BATCH, room);
      await publishQos0(pub, n);
      published += n;
    } else if (now - movedAt >= STALL_MS) {
      writtenOff = published * clients - s.delivered;
      movedAt = now;
    } else await sleep(2);
  }
  // the rate counts what arrived while the broker had work queued all along; the rest is drained after
  const inWindow = await stats(gens);
  const elapsed = (performance.now() - t0) / 1000;
  const cpuPct = Math.round(((cpuSeconds(pid) - cpu0) / elapsed) * 100);
  const s = await drain(gens, published * clients, 30_000);
  return {
    deliveriesPerSec: Math.round(inWindow.delivered / elapsed),
    messages: published,
    lost: Math.max(0, published * clients - s.delivered),
    serverCpuPct: cpuPct,
    closed: s.closed,
  };
}

export async function mqttScenario(server: ServerProc, o: MqttOptions): Promise<MqttResult> {
  const addr = server.mqtt;
  if (!addr) throw new Error('server has no MQTT listener');
  const pid = server.proc.pid!;
  const rss0 = await heldRss(server);
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, 'mqtt-clients.js'), []));
  let pub: MqttConn | undefined;
  try {
    // the halves connect one after the other so that the second half's cost can be read alone
    const half = Math.ceil(o.clients / 2);
    await call(gens[0], { cmd: 'connect', ...addr, topic: TOPIC, count: half });
    const rssHalf = await heldRss(server);
    await call(gens[1], { cmd: 'connect', ...addr, topic: TOPIC, count: o.clients - half });
    const rss1 = await heldRss(server);
    pub = await MqttConn.open(addr, 'bench-publisher');

    const fanout = await mqttMaxRate(gens, pub, pid, o.clients, o.seconds);

    // fixed rate: 50k deliveries/s in all, one message at a time on a schedule
    const target = 50_000;
    const perSec = Math.max(1, Math.round(target / o.clients));
    await stats(gens, { reset: true, timing: true });
    const cpu1 = cpuSeconds(pid);
    const t1 = performance.now();
    const sent = await paced(perSec, o.seconds, () => pub!.publish(TOPIC, stampedPayload(), 0));
    const f = await drain(gens, sent * o.clients, 5000, true);
    const fixedElapsed = (f.movedAt - t1) / 1000;
    const fixedRate = {
      targetDeliveriesPerSec: perSec * o.clients,
      deliveriesPerSec: Math.round(f.delivered / fixedElapsed),
      undelivered: Math.max(0, sent * o.clients - f.delivered),
      p50ms: f.hist.percentile(0.5),
      p99ms: f.hist.percentile(0.99),
      serverCpuPct: Math.round(((cpuSeconds(pid) - cpu1) / fixedElapsed) * 100),
    };
    await Promise.all(gens.map((g) => call(g, { cmd: 'close' })));

    const qos1 = await runPairs(gens, addr, pid, o.pairs, o.seconds);
    return { clients: o.clients, rssPerIdleConnBytes: Math.round((rss1 - rss0) / o.clients), rssMarginalPerConnBytes: Math.round((rss1 - rssHalf) / (o.clients - half)), fanout, fixedRate, qos1 };
  } finally {
    pub?.destroy();
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}

export interface Qos1Result {
  pairs: number;
  window: number;
  messagesPerSec: number;
  inFlightLeft: number;
  p50ms: number;
  p99ms: number;
  serverCpuPct: number;
  /** Server CPU time per completed message. */
  serverCpuUsPerMsg: number;
}

/** QoS 1 point to point: half the pairs in each load generator, each pair keeping QOS1_WINDOW in flight. */
async function runPairs(gens: LoadGen[], addr: { host: string; port: number }, pid: number, pairs: number, seconds: number): Promise<Qos1Result> {
  const halfPairs = Math.ceil(pairs / 2);
  await Promise.all(gens.map((g, i) => call(g, { cmd: 'pairs', ...addr, count: i === 0 ? halfPairs : pairs - halfPairs })));
  const cpu0 = cpuNanos(pid);
  const runs = await Promise.all(
    gens.map((g) => call<{ completed: number; elapsedSec: number; inFlightLeft: number; hist: number[] }>(g, { cmd: 'run-pairs', seconds, window: QOS1_WINDOW })),
  );
  const cpu = (cpuNanos(pid) - cpu0) / 1e9;
  const elapsed = Math.max(...runs.map((r) => r.elapsedSec));
  const completed = runs.reduce((n, r) => n + r.completed, 0);
  const hist = new Histogram();
  for (const r of runs) hist.merge(r.hist);
  return {
    pairs,
    window: QOS1_WINDOW,
    messagesPerSec: Math.round(completed / elapsed),
    inFlightLeft: runs.reduce((n, r) => n + r.inFlightLeft, 0),
    p50ms: hist.percentile(0.5),
    p99ms: hist.percentile(0.99),
    serverCpuPct: Math.round((cpu / elapsed) * 100),
    serverCpuUsPerMsg: completed > 0 ? Math.round((cpu / completed) * 1e7) / 10 : 0,
  };
}

/** The QoS 1 phase alone, on a broker with no other clients: for comparisons that the fan-out phases before it would only make noisier. */
export async function mqttQos1(server: ServerProc, pairs: number, seconds: number): Promise<Qos1Result> {
  const addr = server.mqtt;
  if (!addr) throw new Error('server has no MQTT listener');
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, 'mqtt-clients.js'), []));
  try {
    return await runPairs(gens, addr, server.proc.pid!, pairs, seconds);
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}
