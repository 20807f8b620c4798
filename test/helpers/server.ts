import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { parseConfig, type ConfigInput } from '../../src/config/schema.js';
import { startServer, type RunningServer } from '../../src/server.js';

/** Repository root (tests run from dist/test/...). */
export const REPO_ROOT = new URL('../../../', import.meta.url).pathname;

/** Deep-merges plain objects (test config overrides). */
function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur) ? merge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Starts the real server in this process on 127.0.0.1, port 0, memory store, silent logs. */
export async function startTestServer(overrides: ConfigInput = {}): Promise<RunningServer> {
  const base = { http: { host: '127.0.0.1', port: 0 }, mqtt: { port: 0 }, store: { kind: 'memory' }, log: { level: 'silent' } };
  return startServer(parseConfig(merge(base, overrides as Record<string, unknown>)));
}

export function tempDir(prefix = 'omnipush-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Resolves when `check` returns a truthy value; rejects after `ms` with `what` in the message. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, ms = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Rejects if `p` does not settle within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

export interface ChildServer {
  proc: ChildProcess;
  http: string;
  /** The MQTT listener from the listening line (mqtt://host:port). */
  mqtt?: string;
  stderr: () => string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** Starts `omnipush serve` as a child process and waits for its listening line. */
export async function spawnServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildServer> {
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'bin/omnipush.js'), 'serve', '--port', '0', '--mqtt-port', '0', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 100_000) err = err.slice(-50_000);
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const { http, mqtt } = await listeningLine(proc.stdout!, exited, (code) => `server exited with ${code} before listening: ${err}`, 20_000, 'server listening line');
  return {
    proc,
    http,
    mqtt,
    stderr: () => err,
    async stop() {
      proc.kill('SIGTERM');
      return within(exited, 15_000, 'server exit after SIGTERM');
    },
    async kill() {
      proc.kill('SIGKILL');
      await within(exited, 15_000, 'server exit after SIGKILL');
    },
  };
}

/** The addresses `omnipush serve` announces in its JSON listening line. */
export interface Listening {
  http: string;
  mqtt?: string;
}

/**
 * Reads `stdout` of a process that runs `omnipush serve` (perhaps behind npm, whose own lines are
 * passed over) until the listening line. Rejects with `early(result)` when `exited` settles first,
 * or after `ms` with `what` in the message.
 */
export function listeningLine<T>(stdout: Readable, exited: Promise<T>, early: (result: T) => string, ms: number, what: string): Promise<Listening> {
  const lines = createInterface({ input: stdout });
  return within(
    new Promise<Listening>((resolve, reject) => {
      lines.on('line', (l) => {
        try {
          const j = JSON.parse(l) as { event?: string; http?: string; mqtt?: string };
          if (j.event === 'listening' && j.http) resolve({ http: j.http, mqtt: j.mqtt });
        } catch {
          /* not the server's line */
        }
      });
      void exited.then((result) => reject(new Error(early(result))));
    }),
    ms,
    what,
  );
}
