import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';

const children = new Set<ChildProcess>();

/** Kills every child this benchmark started (also on exit and Ctrl-C). */
export function killAll(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  children.clear();
}
process.once('exit', killAll);
process.once('SIGINT', () => {
  killAll();
  process.exit(130);
});

/** Registers a process the benchmark started itself, so killAll ends it too. */
export function trackChild(c: ChildProcess): void {
  children.add(c);
}

export interface ServerProc {
  proc: ChildProcess;
  /** The HTTP base URL (empty for a server without HTTP). */
  url: string;
  /** Where the MQTT listener is, when the server has one. */
  mqtt?: { host: string; port: number };
  /** The process's inspector (DevTools protocol) address, when it was started with one. */
  inspector?: string;
  stop(): Promise<void>;
}

/** SIGTERM, SIGKILL after 10 s, and wait for the exit. */
export async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
  children.delete(proc);
}

/**
 * The `"mqtt"` key of a listening line: a URL (`mqtt://127.0.0.1:1883`), `host:port`, or a port
 * on loopback.
 */
export function parseMqttAddress(v: unknown): { host: string; port: number } | undefined {
  if (typeof v === 'number') return { host: '127.0.0.1', port: v };
  if (typeof v !== 'string' || v === '') return undefined;
  const u = new URL(v.includes('://') ? v : `mqtt://${v}`);
  const port = Number(u.port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in the mqtt address ${v}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port };
}

/**
 * Starts a server process (`node <script> ...args`) and waits for its `{"event":"listening","http":...,"mqtt":...}` line.
 * With `inspect`, the process listens for the DevTools protocol on a free loopback port, so that
 * {@link heldRss} can ask it for a full garbage collection (not for cluster primaries: their
 * workers would take the next ports).
 */
export async function startServerProcess(script: string, args: string[], env: NodeJS.ProcessEnv = {}, opts: { inspect?: boolean } = {}): Promise<ServerProc> {
  const nodeArgs = opts.inspect ? ['--inspect=127.0.0.1:0'] : [];
  const proc = spawn(process.execPath, [...nodeArgs, script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', opts.inspect ? 'pipe' : 'inherit'] });
  children.add(proc);
  let inspector: string | undefined;
  const inspectorKnown = opts.inspect
    ? new Promise<void>((resolve) => {
        createInterface({ input: proc.stderr! }).on('line', (l) => {
          const m = /^Debugger listening on (ws:\/\/\S+)/.exec(l);
          if (m) {
            inspector = m[1];
            resolve();
          } else if (!l.startsWith('For help, see:') && !l.startsWith('Debugger attached') && !l.startsWith('Debugger ending')) process.stderr.write(`${l}\n`);
        });
      })
    : Promise.resolve();
  const j = await new Promise<{ http?: string; mqtt?: unknown }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${script} did not start`)), 30_000);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      try {
        const j = JSON.parse(l) as { event?: string; http?: string; mqtt?: unknown };
        if (j.event === 'listening' && (j.http || j.mqtt)) {
          clearTimeout(t);
          resolve(j);
        }
      } catch {
        /* other output */
      }
    });
    proc.once('exit', (c) => reject(new Error(`${script} exited with ${c}`)));
  });
  await inspectorKnown;
  return { proc, url: j.http ?? '', mqtt: parseMqttAddress(j.mqtt), inspector, stop: () => stopChild(proc) };
}

/** Asks a process started with `inspect` for a full garbage collection (twice: the first frees what finalizers held). */
async function collectGarbage(address: string): Promise<void> {
  const ws = new WebSocket(address);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  try {
    for (let id = 1; id <= 2; id++) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no answer to HeapProfiler.collectGarbage within 30 s')), 30_000);
        const onMessage = (d: Buffer) => {
          if ((JSON.parse(d.toString()) as { id?: number }).id !== id) return;
          clearTimeout(t);
          ws.off('message', onMessage);
          resolve();
        };
        ws.on('message', onMessage);
        ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      });
    }
  } finally {
    ws.close();
  }
}

/**
 * The memory a server holds now: its RSS once settled, after a full garbage collection when it
 * has an inspector. Without the collection a slope between two readings counts whatever garbage
 * V8 had not yet collected at each, which moves with the heap's size at start more than with
 * what a connection keeps (an RSS slope read that way moved by ±20% between runs of one build).
 */
export async function heldRss(s: ServerProc): Promise<number> {
  if (s.inspector) await collectGarbage(s.inspector);
  return settledRss(s.proc.pid!);
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11] = utime, fields[12] = stime, in clock ticks (100 per second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU nanoseconds a process has run so far, all its threads: the scheduler's own count
 * (`/proc/<pid>/task/<tid>/schedstat`), where `/proc/<pid>/stat` counts in 10 ms ticks. A thread
 * that ends between the listing and the read is skipped.
 */
export function cpuNanos(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread ended */
    }
  }
  return ns;
}

/** CPU lists for {@link pin}: servers on the first core, the bench and its load generators on the second. */
export const SERVER_CPU = '0';
export const DRIVER_CPU = '1';
export const ALL_CPUS = `0-${availableParallelism() - 1}`;

/**
 * Pins a process and all its threads to `cpus` (`taskset`'s list form); processes it starts later
 * inherit it. False, and nothing done, on a one-core machine or without `taskset`.
 */
export function pin(pid: number, cpus: string): boolean {
  if (availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Resident memory of a process, bytes. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export interface LoadGen {
  proc: ChildProcess;
  ask<T>(msg: Record<string, unknown>): Promise<T>;
  stop(): void;
}

/** Forks a load generator (IPC request/response by `id`). */
export function forkLoadGen(script: string, args: string[]): LoadGen {
  const proc = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  let next = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  proc.on('message', (m: { id: number; result: unknown }) => {
    waiting.get(m.id)?.resolve(m.result);
    waiting.delete(m.id);
  });
  proc.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error('load generator exited'));
    waiting.clear();
  });
  return {
    proc,
    ask<T>(msg: Record<string, unknown>): Promise<T> {
      const id = next++;
      return new Promise<T>((resolve, reject) => {
        waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        proc.send({ ...msg, id });
      });
    },
    stop() {
      proc.kill('SIGKILL');
      children.delete(proc);
    },
  };
}

/** RSS once it has stopped moving (under 0.5% over 300 ms), or after 5 s. */
export async function settledRss(pid: number): Promise<number> {
  const deadline = performance.now() + 5000;
  let prev = rssBytes(pid);
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const cur = rssBytes(pid);
    if (Math.abs(cur - prev) < prev * 0.005 || performance.now() > deadline) return cur;
    prev = cur;
  }
}
