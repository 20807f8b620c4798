/** A private redis-server for tests and benchmarks (no check of whether tests may run: see redis.ts). */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './ports.js';
import { tempDir, waitFor, within } from './server.js';

/** Debian's package "redis-server". */
export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory (data survives only with `persist`). */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that holds its connections but answers nothing. */
  freeze(): void;
  thaw(): void;
}

/** One PING over a raw socket: true when the server answers PONG (and is done loading). */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    sock.write('PING\r\n');
  });
}

/**
 * Starts a private redis-server on a free loopback port in a temp directory and waits until it
 * answers PING. `persist` turns on the append-only file with fsync on every write, so a restart
 * keeps the data; otherwise nothing is written to disk. `onSpawn` sees each redis-server process
 * started (a benchmark registers it, to kill it if the benchmark itself dies).
 */
export async function startRedis(opts: { persist?: boolean; onSpawn?: (p: ChildProcess) => void } = {}): Promise<RedisServer> {
  const dir = tempDir('omnipush-redis-');
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir.path, '--save', '', '--daemonize', 'no'];
    args.push(...(opts.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
    const p = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    opts.onSpawn?.(p);
    log = '';
    const keep = (d: Buffer) => {
      log = (log + d.toString()).slice(-20_000);
    };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    let gone = false;
    exited = new Promise((r) =>
      p.once('exit', () => {
        gone = true;
        r();
      }),
    );
    await waitFor(
      async () => {
        if (gone) throw new Error(`redis-server exited during start:\n${log}`);
        return pings(port);
      },
      `redis-server on port ${port} to answer PING`,
      15_000,
    );
  };

  const stop = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    await within(exited, 15_000, 'redis-server exit after SIGTERM');
  };

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    async remove() {
      proc?.kill('SIGCONT');
      await stop();
      dir.remove();
    },
    freeze: () => proc?.kill('SIGSTOP'),
    thaw: () => proc?.kill('SIGCONT'),
  };
}
