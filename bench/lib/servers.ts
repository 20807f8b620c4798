import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess, stopChild, trackChild, type ServerProc } from './procs.js';
import { freePort } from '../../test/helpers/ports.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** Our server in its own process (memory store unless `sqlite`; with `mqtt`, its broker on a free port too). */
export async function startOmnipush(store: 'memory' | 'sqlite' = 'memory', opts: { mqtt?: boolean; env?: Record<string, string> } = {}): Promise<ServerProc> {
  const args = [join(ROOT, 'bin/omnipush.js'), 'serve', '--port', '0', '--log-level', 'warn', '--store', store];
  if (store === 'sqlite') args.push('--data', mkdtempSync(join(tmpdir(), 'omnipush-bench-')));
  // the MQTT listener is on by default: on a free port, so a broker already on 1883 does not stop the run
  if (opts.mqtt || hasMqttDoor()) args.push('--mqtt-port', '0');
  const server = await startServerProcess(args[0], args.slice(1), {
    OMNIPUSH_LIMITS__MAX_CONNECTIONS: '19000',
    OMNIPUSH_LIMITS__MAX_QUEUE_BYTES: String(16 * 1024 * 1024),
    // every load generator connects from 127.0.0.1: the per-address quota stays on, as high as the connection limit
    OMNIPUSH_QUOTAS__CONNECTIONS_PER_ADDRESS: '19000',
    ...opts.env,
  }, { inspect: true });
  if (opts.mqtt && !server.mqtt) {
    await server.stop();
    throw new Error('omnipush was started with --mqtt-port but its listening line has no "mqtt" address');
  }
  return server;
}

let mqttDoor: boolean | undefined;

/** Whether this build has the MQTT door (its `serve` takes `--mqtt-port`). */
export function hasMqttDoor(): boolean {
  mqttDoor ??= execFileSync(process.execPath, [join(ROOT, 'bin/omnipush.js'), 'serve', '--help'], { encoding: 'utf8' }).includes('--mqtt-port');
  return mqttDoor;
}

/** The naive node:http SSE broadcaster. */
export function startFloor(): Promise<ServerProc> {
  return startServerProcess(join(ROOT, 'dist/bench/floor/sse-broadcaster.js'), [], {}, { inspect: true });
}

/** The bare node:http server that reads a publish body and answers a small JSON (the HTTP publish floor). */
export function startPublishFloor(): Promise<ServerProc> {
  return startServerProcess(join(ROOT, 'dist/bench/floor/http-publish.js'), [], {}, { inspect: true });
}

/** The bare node:http server that holds every request open (the held long-poll floor). */
export function startPollFloor(): Promise<ServerProc> {
  return startServerProcess(join(ROOT, 'dist/bench/floor/longpoll-hold.js'), [], {}, { inspect: true });
}

/** A peer server from bench/peers (`ws-ceiling`, `socketio-server`, `aedes-server`). */
export function startPeer(name: 'ws-ceiling' | 'socketio-server' | 'aedes-server', args: string[] = []): Promise<ServerProc> {
  return startServerProcess(join(ROOT, `dist/bench/peers/${name}.js`), args, {}, { inspect: true });
}

export const MOSQUITTO = '/usr/sbin/mosquitto';


function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Mosquitto from the system package, with a config of our own: loopback listener on a free port,
 * anonymous access, no persistence, and a per-client queue long enough that the benchmark's bounded
 * backlog never makes it drop QoS 0 messages (its default, 1000, would).
 */
export async function startMosquitto(): Promise<ServerProc> {
  if (!existsSync(MOSQUITTO)) throw new Error(`the MQTT benchmark compares with Mosquitto: install the Debian package mosquitto (${MOSQUITTO})`);
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'max_queued_messages 1000000', 'log_dest stderr', 'log_type error', 'log_type warning', ''].join('\n'),
  );
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  trackChild(proc);
  const exited = new Promise<never>((_, reject) => proc.once('exit', (c) => reject(new Error(`mosquitto exited with ${c}`))));
  exited.catch(() => undefined);
  // Mosquitto prints no machine-readable line; it is up once its port accepts connections.
  const deadline = Date.now() + 10_000;
  while (!(await Promise.race([accepts(port), exited]))) {
    if (Date.now() > deadline) {
      await stopChild(proc);
      throw new Error(`mosquitto did not listen on ${port} within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    proc,
    url: '',
    mqtt: { host: '127.0.0.1', port },
    async stop() {
      await stopChild(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const LOADGEN_DIR = join(ROOT, 'dist/bench/loadgen');
