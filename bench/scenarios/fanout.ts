import { join } from 'node:path';
import { Histogram } from '../lib/histogram.js';
import { cpuSeconds, forkLoadGen, heldRss, type LoadGen, type ServerProc } from '../lib/procs.js';
import { paced, publishBatch, sleep } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';

export interface FanoutResult {
  clients: number;
  /** (RSS with every client − RSS before any) / clients: includes one-time costs such as V8's young generation growing to its full size. */
  rssPerIdleConnBytes: number;
  /** RSS slope between half and all of the clients: what one more idle connection costs. */
  rssMarginalPerConnBytes: number;
  maxRate: { deliveriesPerSec: number; messages: number; serverCpuPct: number; loadGenCpuPct: number; benchCpuPct: number; closed: number };
  fixedRate: { targetDeliveriesPerSec: number; deliveriesPerSec: number; p50ms: number; p99ms: number; serverCpuPct: number };
}

interface Stats {
  delivered: number;
  hist?: number[];
  closed: number;
}

export interface StatsOptions {
  /** Start counting (and timing) from zero. */
  reset?: boolean;
  /** Time each delivery from now on (true) or only count (false); unchanged when absent. */
  timing?: boolean;
  /** Send the latency histogram along (10k buckets: not on every poll). */
  hist?: boolean;
}

/** The load generators' figures. */
export async function stats(gens: LoadGen[], o: StatsOptions = {}): Promise<{ delivered: number; hist: Histogram; closed: number }> {
  const all = await Promise.all(gens.map((g) => g.ask<Stats>({ cmd: 'stats', ...o })));
  const hist = new Histogram();
  for (const s of all) if (s.hist) hist.merge(s.hist);
  return { delivered: all.reduce((n, s) => n + s.delivered, 0), hist, closed: all.reduce((n, s) => n + s.closed, 0) };
}

/** The load generators' figures once they have `deliveries` in all, or after `ms` (with the histogram). */
export async function statsOnce(gens: LoadGen[], deliveries: number, ms: number): Promise<Awaited<ReturnType<typeof stats>>> {
  const until = performance.now() + ms;
  let s = await stats(gens);
  while (s.delivered < deliveries && performance.now() < until) {
    await sleep(20);
    s = await stats(gens);
  }
  return stats(gens, { hist: true });
}

/** How the load generators reach the server: which generator, and what it is told to connect to. */
export interface FanoutClients {
  loadgen: 'sse-clients.js' | 'ws-clients.js' | 'mqtt-clients.js';
  connect(server: ServerProc, topic: string): Record<string, unknown>;
}

export const SSE_CLIENTS: FanoutClients = {
  loadgen: 'sse-clients.js',
  connect: (server, topic) => ({ url: server.url, path: `/v1/sse?topic=${encodeURIComponent(topic)}` }),
};

export const wsClients = (mode: 'omnipush' | 'ws' | 'socketio'): FanoutClients => ({
  loadgen: 'ws-clients.js',
  connect: (server, topic) => ({ url: server.url, mode, topic }),
});

/** MQTT 3.1.1 subscribers at QoS 0 (HTTP publishes reach them at min(1, 0) = QoS 0). */
export const MQTT_CLIENTS: FanoutClients = {
  loadgen: 'mqtt-clients.js',
  connect: (server, topic) => {
    if (!server.mqtt) throw new Error('the server has no MQTT listener');
    return { ...server.mqtt, topic };
  },
};

/** N subscribers on one topic; max-rate then fixed-rate publishing of 100-byte messages. */
export async function fanout(server: ServerProc, kind: FanoutClients, clients: number, seconds: number): Promise<FanoutResult> {
  const pid = server.proc.pid!;
  const topic = 'bench/fanout';
  const rss0 = await heldRss(server);
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, kind.loadgen), []));
  try {
    // the halves connect one after the other so that the second half's cost can be read alone
    const half = Math.ceil(clients / 2);
    await gens[0].ask({ cmd: 'connect', ...kind.connect(server, topic), count: half });
    const rssHalf = await heldRss(server);
    await gens[1].ask({ cmd: 'connect', ...kind.connect(server, topic), count: clients - half });
    const rss1 = await heldRss(server);

    const maxRate = await maxRatePhase(gens, server.url, topic, clients, seconds, { batch: 20, inFlight: 2, cpu: () => cpuSeconds(pid) });
    const fixedRate = await fixedRatePhase(gens, server.url, topic, clients, seconds, () => cpuSeconds(pid));
    return {
      clients,
      rssPerIdleConnBytes: Math.round((rss1 - rss0) / clients),
      rssMarginalPerConnBytes: Math.round((rss1 - rssHalf) / (clients - half)),
      maxRate,
      fixedRate,
    };
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}

export interface MaxRateOptions {
  /** Messages per publish request, and requests in flight at once. */
  batch: number;
  inFlight: number;
  /** CPU seconds of the server (all its processes). */
  cpu: () => number;
}

/**
 * Publishes as fast as the subscribers take it, then drains; the rate counts every delivery.
 * `inFlight` publishers run side by side, each starting its next request as soon as its last
 * one is answered and the backlog (messages published but not yet delivered to every
 * subscriber) leaves room for it, so publishing and fan-out overlap instead of taking turns.
 */
export async function maxRatePhase(gens: LoadGen[], url: string, topic: string, clients: number, seconds: number, o: MaxRateOptions): Promise<FanoutResult['maxRate']> {
  await stats(gens, { reset: true, timing: false });
  /** Messages per subscriber published and not yet delivered, at most. */
  const maxBacklog = 200;
  let published = 0;
  let delivered = 0;
  const genCpu = () => gens.reduce((n, g) => n + cpuSeconds(g.proc.pid!), 0);
  const benchCpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const cpu0 = o.cpu();
  const gen0 = genCpu();
  const bench0 = benchCpu();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      delivered = (await stats(gens)).delivered;
      await sleep(5);
    }
  })();
  const publisher = async () => {
    while (performance.now() < end) {
      if ((published + o.batch) * clients - delivered > maxBacklog * clients) {
        await sleep(2);
        continue;
      }
      published += o.batch;
      await publishBatch(url, topic, o.batch);
    }
  };
  await Promise.all(Array.from({ length: o.inFlight }, publisher));
  polling = false;
  await poller;
  const s = await statsOnce(gens, published * clients, 10_000);
  const elapsed = (performance.now() - t0) / 1000;
  return {
    deliveriesPerSec: Math.round(s.delivered / elapsed),
    messages: published,
    serverCpuPct: Math.round(((o.cpu() - cpu0) / elapsed) * 100),
    // the load generators and this process share the machine's cores with the server
    loadGenCpuPct: Math.round(((genCpu() - gen0) / elapsed) * 100),
    benchCpuPct: Math.round(((benchCpu() - bench0) / elapsed) * 100),
    closed: s.closed,
  };
}

/** 50k deliveries/s in total, one message per request on a schedule; latency from the stamps in the payloads. */
export async function fixedRatePhase(gens: LoadGen[], url: string, topic: string, clients: number, seconds: number, cpu: () => number): Promise<FanoutResult['fixedRate']> {
  const target = 50_000;
  const perSec = Math.max(1, Math.round(target / clients));
  await stats(gens, { reset: true, timing: true });
  const cpu1 = cpu();
  const t1 = performance.now();
  let failed = 0;
  const sent = await paced(perSec, seconds, () => {
    publishBatch(url, topic, 1).catch((e: unknown) => {
      if (failed++ === 0) console.error(`publish to ${url} failed during the fixed-rate phase:`, e);
    });
  });
  const f = await statsOnce(gens, sent * clients, 5000);
  const fixedElapsed = (performance.now() - t1) / 1000;
  return {
    targetDeliveriesPerSec: perSec * clients,
    deliveriesPerSec: Math.round(f.delivered / fixedElapsed),
    p50ms: f.hist.percentile(0.5),
    p99ms: f.hist.percentile(0.99),
    serverCpuPct: Math.round(((cpu() - cpu1) / fixedElapsed) * 100),
  };
}
