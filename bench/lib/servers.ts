import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess, type ServerProc } from './procs.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** Our server in its own process (memory store unless `sqlite`). */
export function startOmnipush(store: 'memory' | 'sqlite' = 'memory'): Promise<ServerProc> {
  const args = [join(ROOT, 'bin/omnipush.js'), 'serve', '--port', '0', '--log-level', 'warn', '--store', store];
  if (store === 'sqlite') args.push('--data', mkdtempSync(join(tmpdir(), 'omnipush-bench-')));
  return startServerProcess(args[0], args.slice(1), {
    OMNIPUSH_LIMITS__MAX_CONNECTIONS: '19000',
    OMNIPUSH_LIMITS__MAX_QUEUE_BYTES: String(16 * 1024 * 1024),
  });
}

/** The naive node:http SSE broadcaster. */
export function startFloor(): Promise<ServerProc> {
  return startServerProcess(join(ROOT, 'dist/bench/floor/sse-broadcaster.js'), []);
}

/** A peer server from bench/peers (`ws-ceiling`, `socketio-server`). */
export function startPeer(name: 'ws-ceiling' | 'socketio-server', args: string[] = []): Promise<ServerProc> {
  return startServerProcess(join(ROOT, `dist/bench/peers/${name}.js`), args);
}

export const LOADGEN_DIR = join(ROOT, 'dist/bench/loadgen');
