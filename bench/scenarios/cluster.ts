import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { cpuSeconds, forkLoadGen, rssBytes, startServerProcess, type LoadGen, type ServerProc } from '../lib/procs.js';
import { publishBatch } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';
import { fixedRatePhase, maxRatePhase, MQTT_CLIENTS, stats, statsOnce, wsClients, type FanoutClients } from './fanout.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
/** Connections one load generator holds (its file-descriptor cap is 20k). */
const PER_GEN = 9_500;

export interface ClusterRun {
  workers: number;
  door: 'ws' | 'mqtt';
  clients: number;
  maxRate: { deliveriesPerSec: number; messages: number; serverCpuPct: number; loadGenCpuPct: number; benchCpuPct: number; closed: number };
  fixedRate: { targetDeliveriesPerSec: number; deliveriesPerSec: number; p50ms: number; p99ms: number };
}

export interface ClusterHold {
  workers: number;
  clients: number;
  connected: number;
  /** Subscribers one message reached, and how long the last one waited. */
  delivered: number;
  deliverMs: number;
  rssPerWorkerMB: number[];
}

/** `omnipush serve --workers N` over the Redis store and bus. */
function startWorkers(workers: number, redisUrl: string, prefix: string): Promise<ServerProc> {
  return startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--workers', String(workers), '--port', '0', '--mqtt-port', '0', '--log-level', 'warn', '--store', 'redis'], {
    OMNIPUSH_BUS__KIND: 'redis',
    OMNIPUSH_STORE__REDIS__URL: redisUrl,
    OMNIPUSH_STORE__REDIS__PREFIX: prefix,
    OMNIPUSH_LIMITS__MAX_CONNECTIONS: '19500',
    // every load generator connects from 127.0.0.1: the per-address quota stays on, as high as the connection limit
    OMNIPUSH_QUOTAS__CONNECTIONS_PER_ADDRESS: '19500',
    OMNIPUSH_LIMITS__MAX_QUEUE_BYTES: String(16 * 1024 * 1024),
  });
}

function workerPids(primary: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary)]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds of the primary and its workers together. */
const groupCpu = (primary: number) => [primary, ...workerPids(primary)].reduce((n, p) => n + cpuSeconds(p), 0);


/** Load generators (one source address each) holding `clients` subscribers of `topic` of one kind. */
async function connectClients(server: ServerProc, kind: FanoutClients, topic: string, clients: number): Promise<LoadGen[]> {
  const n = Math.max(2, Math.ceil(clients / PER_GEN));
  const gens = Array.from({ length: n }, () => forkLoadGen(join(LOADGEN_DIR, kind.loadgen), []));
  let left = clients;
  for (let i = 0; i < n; i++) {
    const count = Math.ceil(left / (n - i));
    left -= count;
    await gens[i].ask({ cmd: 'connect', ...kind.connect(server, topic), count, localAddress: `127.0.0.${2 + i}` });
  }
  return gens;
}

async function closeGens(gens: LoadGen[]): Promise<void> {
  await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
  gens.forEach((g) => g.stop());
}

/**
 * WS or MQTT (QoS 0) fan-out over `workers` processes: max rate (batches of 25, backlog bounded as
 * in the fan-out scenario), then a fixed 50k deliveries/s for publish→deliver latency. Every delivery goes through
 * the Redis bus, and publishes land on the workers in turn, so with two workers half the
 * subscribers get each message from a publish made on the other one.
 */
export async function clusterFanout(redisUrl: string, door: ClusterRun['door'], workers: number, clients: number, seconds: number): Promise<ClusterRun> {
  const server = await startWorkers(workers, redisUrl, `bench${workers}-${Date.now()}:`);
  const pid = server.proc.pid!;
  const topic = 'bench/cluster';
  const gens = await connectClients(server, door === 'ws' ? wsClients('omnipush') : MQTT_CLIENTS, topic, clients);
  try {
    // more publishes in flight than the one-process scenario: each waits for the bus round trip,
    // and the measure is the workers' fan-out, not one publisher's latency
    const maxRate = await maxRatePhase(gens, server.url, topic, clients, seconds, { batch: 25, inFlight: 8, cpu: () => groupCpu(pid) });
    const { serverCpuPct: _cpu, ...fixedRate } = await fixedRatePhase(gens, server.url, topic, clients, seconds, () => groupCpu(pid));
    return { workers, door, clients, maxRate, fixedRate };
  } finally {
    await closeGens(gens);
    await server.stop();
  }
}

/** Holds `clients` WebSocket subscribers across the workers and sends one message to all of them. */
export async function clusterHold(redisUrl: string, workers: number, clients: number): Promise<ClusterHold> {
  const server = await startWorkers(workers, redisUrl, `hold-${Date.now()}:`);
  const topic = 'bench/hold';
  let gens: LoadGen[] = [];
  try {
    gens = await connectClients(server, wsClients('omnipush'), topic, clients);
    const connected = clients - (await stats(gens)).closed;
    const t0 = performance.now();
    await publishBatch(server.url, topic, 1);
    const s = await statsOnce(gens, connected, 20_000);
    return {
      workers,
      clients,
      connected,
      delivered: s.delivered,
      deliverMs: Math.round(performance.now() - t0),
      rssPerWorkerMB: workerPids(server.proc.pid!).map((p) => Math.round(rssBytes(p) / 1048576)),
    };
  } finally {
    await closeGens(gens);
    await server.stop();
  }
}
