import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/schema.js';
import type { RunningServer } from '../server.js';

/** What a worker tells the primary. */
type WorkerReport = { event: 'listening'; http: string; mqtt?: string; mqtts?: string } | { event: 'failed'; message: string };

/** Restart delays grow from this (ms), doubling per quick death, up to MAX_RESTART_MS. */
const MIN_RESTART_MS = 200;
const MAX_RESTART_MS = 10_000;
/** A worker that lived this long counts as healthy: the next restart starts from MIN_RESTART_MS again. */
const HEALTHY_AFTER_MS = 30_000;
/** A drain that takes longer than this ends with SIGKILL and exit code 1. */
const DRAIN_TIMEOUT_MS = 20_000;

/**
 * Why `--workers` cannot run with this config, or undefined: processes sharing the ports only act
 * as one server when they share history and fan-out, i.e. store and bus on Redis.
 */
export function workersRefusal(config: Config): string | undefined {
  if (config.store.kind !== 'redis' || config.bus.kind !== 'redis') {
    return `--workers needs store.kind "redis" and bus.kind "redis" (now "${config.store.kind}" and "${config.bus.kind}"): workers share history and fan-out through Redis; see docs/cluster.md`;
  }
  return undefined;
}

/**
 * The primary of `serve --workers N`: forks N workers running this same command (node:cluster
 * shares their HTTP and MQTT listening sockets), prints one listening line once all of them
 * listen, restarts a worker that dies (with backoff), and on SIGTERM/SIGINT lets every worker
 * drain and exits 0 if all of them did.
 *
 * Port 0: every worker's listen(0) at the same position gets the same port, picked once by the
 * primary while any worker holds it; fixed ports are the production setting.
 */
export function runPrimary(n: number, out: (line: string) => void, fail: (message: string) => never): void {
  let announced = false;
  let stopping = false;
  const listening = new Map<number, WorkerReport & { event: 'listening' }>();
  const slots = new Map<Worker, { slot: number; started: number; listening: boolean }>();
  const delays = new Array<number>(n).fill(MIN_RESTART_MS);

  const fork = (slot: number): void => {
    const w = cluster.fork();
    const info = { slot, started: Date.now(), listening: false };
    slots.set(w, info);
    w.on('message', (m: WorkerReport) => {
      if (m.event === 'failed' && !announced) {
        // a worker that cannot start now will not start on retry either (bad config, no Redis)
        stopAll();
        fail(`cannot start: worker ${slot + 1}: ${m.message}`);
      }
      if (m.event !== 'listening') return;
      info.listening = true;
      listening.set(slot, m);
      if (!announced && listening.size === n) {
        announced = true;
        out(JSON.stringify({ event: 'listening', http: m.http, mqtt: m.mqtt, mqtts: m.mqtts, workers: n }));
      }
    });
  };

  cluster.on('exit', (w, code, signal) => {
    const info = slots.get(w);
    slots.delete(w);
    if (!info) return;
    if (stopping) {
      // a worker still starting may be ended by the signal itself: it held no connections to drain
      if (code !== 0 && info.listening) {
        exitCode = 1;
        process.stderr.write(`omnipush: worker ${info.slot + 1} (pid ${w.process.pid}) ended its drain with ${signal ?? `exit ${code}`}\n`);
      }
      if (slots.size === 0) process.exit(exitCode);
      return;
    }
    const lived = Date.now() - info.started;
    if (lived > HEALTHY_AFTER_MS) delays[info.slot] = MIN_RESTART_MS;
    const delay = delays[info.slot];
    delays[info.slot] = Math.min(delay * 2, MAX_RESTART_MS);
    process.stderr.write(`omnipush: worker ${info.slot + 1} (pid ${w.process.pid}) died (${signal ?? `exit ${code}`}); restarting in ${delay} ms\n`);
    setTimeout(() => {
      if (!stopping) fork(info.slot);
    }, delay);
  });

  let exitCode = 0;
  const stopAll = (): void => {
    stopping = true;
    for (const w of slots.keys()) w.process.kill('SIGTERM');
  };
  const stop = (signal: string): void => {
    if (stopping) return;
    stopAll();
    if (slots.size === 0) process.exit(0);
    const force = setTimeout(() => {
      process.stderr.write(`omnipush: ${signal}: workers took too long to drain, killing them\n`);
      for (const w of slots.keys()) w.process.kill('SIGKILL');
      process.exit(1);
    }, DRAIN_TIMEOUT_MS);
    force.unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  for (let i = 0; i < n; i++) fork(i);
}

/** A worker: tells the primary where it listens (or why it could not start); drains on SIGTERM/SIGINT. */
export async function runWorker(config: Config): Promise<void> {
  const send = (m: WorkerReport): Promise<void> => new Promise((r) => (process.send ? process.send(m, undefined, {}, () => r()) : r()));
  let server: RunningServer | undefined;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // still starting (e.g. a replacement worker): it holds no connections yet, nothing to drain
    if (!server) process.exit(0);
    server.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`omnipush: worker shutdown failed: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  // installed before starting, so a drain asked for during start-up is not a kill by signal
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // the primary is gone (killed): do not linger as an orphan holding connections
  process.on('disconnect', stop);
  const { startServer } = await import('../server.js');
  try {
    server = await startServer(config);
  } catch (e) {
    await send({ event: 'failed', message: (e as Error).message });
    process.exit(1);
  }
  if (stopping) {
    await server.close();
    process.exit(0);
  }
  await send({ event: 'listening', http: server.http, mqtt: server.mqtt, mqtts: server.mqtts });
}

export const isWorker = (): boolean => cluster.isWorker;
