import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { RunningServer } from '../../src/server.js';
import { exerciseDoors } from './doors.js';
import { accepting } from './npm-run.js';
import { freePort } from './ports.js';
import { startTestServer, waitFor } from './server.js';
import { selfSignedCert, type SelfSigned } from './tls-cert.js';

/**
 * Why a test of a reverse proxy cannot run here ('' when it can): the proxy's binary is missing.
 * Fails loudly where every component is required.
 */
export function proxyMissing(binary: string, name: string, debianPackage: string): string {
  if (existsSync(binary)) return '';
  const why = `${name} is not installed at ${binary} (Debian package "${debianPackage}")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING ${name} tests: ${why} ***\n`);
  return `${debianPackage} missing`;
}

/** A server that announces `base` as its public URL, for a proxy to serve over TLS in front of it. */
export interface ProxiedServer {
  server: RunningServer;
  /** The port the proxy serves https on; `base` is on it. */
  httpsPort: number;
  base: string;
  /** The server's own port: the proxy's upstream. */
  upstream: number;
  /** A self-signed certificate for 127.0.0.1, written into the directory given; its PEM is the CA to trust. */
  cert: SelfSigned;
}

/** Starts the server a proxy test puts its proxy in front of, with a certificate made in `dir`. */
export async function startProxiedServer(dir: string): Promise<ProxiedServer> {
  const cert = selfSignedCert(dir);
  const httpsPort = await freePort();
  const base = `https://127.0.0.1:${httpsPort}`;
  // a heartbeat far beyond the SSE deadline: a buffering proxy cannot pass by luck
  const server = await startTestServer({ http: { publicUrl: base }, sse: { heartbeat: 60 } });
  return { server, httpsPort, base, upstream: Number(new URL(server.http).port), cert };
}

/** A proxy process the test started. */
export interface ProxyProcess {
  /** What it wrote to stdout and stderr. */
  output(): string;
  /** Sends `signal` if it still runs, and waits for it to exit. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

export interface ProxyRun {
  /** For messages: `nginx`, `caddy`. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Where it serves: started once something accepts connections there. */
  base: string;
  /** How long it may take to start (ms). */
  startMs?: number;
  /** More to say when it exits before it listens (its error log). */
  more?: () => string;
}

/** Spawns the proxy and waits until it accepts connections; it dies with the test process whatever way that ends. */
export async function runProxy(run: ProxyRun): Promise<ProxyProcess> {
  const proc = spawn(run.command, run.args, { stdio: ['ignore', 'pipe', 'pipe'], env: run.env });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  process.once('exit', () => proc.kill('SIGKILL'));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (exited) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await gone;
  };
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`${run.name} exited: ${output}${run.more ? ` ${run.more()}` : ''}`);
        return accepting(run.base);
      },
      `${run.name} listening`,
      run.startMs,
    );
  } catch (e) {
    await stop('SIGKILL');
    throw e;
  }
  return { output: () => output, stop };
}

/** What every proxy in front of the server must pass: each door through it, over TLS, SSE unbuffered. */
export async function assertDoorsThrough(p: ProxiedServer): Promise<void> {
  const report = await exerciseDoors({ base: p.base, ca: p.cert.cert });
  assert.ok(report.sseLatencyMs < 5000);
}
