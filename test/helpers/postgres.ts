/** A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp dir, a free port, removed after. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';
import { tempDir, waitFor, within } from './server.js';

/** Debian's `postgresql` puts its binaries in /usr/lib/postgresql/<major>/bin; the newest wins. */
export const PG_BIN = ((): string | undefined => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((d) => existsSync(join(root, d, 'bin', 'initdb')) && existsSync(join(root, d, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return majors.length ? join(root, majors[0], 'bin') : undefined;
})();

/** PostgreSQL refuses to run as root: as root, it runs as the `postgres` OS user the package creates. */
const runAs = ((): { uid: number; gid: number } | undefined => {
  if (userInfo().uid !== 0) return undefined;
  try {
    return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) };
  } catch {
    return undefined;
  }
})();

/** Why PostgreSQL tests cannot run here, or '' when they can. Fails loudly where every component is required. */
export const postgresMissing = ((): string => {
  let why = '';
  if (!PG_BIN) why = 'PostgreSQL is not installed under /usr/lib/postgresql/*/bin (Debian package "postgresql")';
  else if (userInfo().uid === 0 && !runAs) why = 'running as root and there is no "postgres" OS user to run PostgreSQL as';
  if (!why) return '';
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING PostgreSQL tests: ${why} ***\n`);
  return 'postgresql missing';
})();

export interface PostgresServer {
  url: string;
  port: number;
  /** A connected client (the caller ends it). */
  client(): Promise<pg.Client>;
  /** Fast shutdown (SIGINT) and wait. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

/** initdb into a temp dir (fsync off: throwaway), then start on a free loopback port, socket in the dir. */
export async function startPostgres(opts: { onSpawn?: (p: ChildProcess) => void } = {}): Promise<PostgresServer> {
  const dir = tempDir('omnipush-pg-');
  if (runAs) chownSync(dir.path, runAs.uid, runAs.gid);
  const data = join(dir.path, 'data');
  execFileSync(join(PG_BIN!, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], { stdio: 'pipe', ...runAs });
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const start = async () => {
    const args = ['-D', data, '-p', String(port), '-k', dir.path, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
    const p = spawn(join(PG_BIN!, 'postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...runAs });
    proc = p;
    opts.onSpawn?.(p);
    p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    exited = new Promise((r) => p.once('exit', () => r()));
    let dead = false;
    void exited.then(() => (dead = true));
    await waitFor(
      async () => {
        if (dead) throw new Error(`postgres exited: ${log.slice(-2000)}`);
        const c = new pg.Client({ connectionString: url });
        c.on('error', () => undefined);
        try {
          await c.connect();
          await c.end();
          return true;
        } catch {
          return false;
        }
      },
      'postgres accepting connections',
      30_000,
    );
  };
  const stop = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGINT');
    await within(exited, 20_000, 'postgres exit');
  };
  await start();
  return {
    url,
    port,
    async client() {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    },
    stop,
    start,
    async remove() {
      await stop();
      dir.remove();
    },
  };
}
