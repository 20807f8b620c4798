/**
 * Scenario `hooks`, connect hook rows: MQTT connections per second (CONNECT → CONNACK → DISCONNECT,
 * 32 at a time) when every connection asks the app (cold cache: each credential new), when the
 * answers come from the cache (warm: the same credentials again), and with JWTs beside them in the
 * same run (the hook is not asked about a token that verifies).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { generate } from 'mqtt-packet';
import { mintToken } from '../../src/auth/token.js';
import { startServerProcess, stopChild, trackChild } from '../lib/procs.js';
import type { Row } from './adversarial.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const SECRET = 'bench-hooks-secret-0123456789';
const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** One CONNECT with these credentials; resolves with the CONNACK return code once the server answered. */
function connectOnce(host: string, port: number, clientId: string, password: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port }, () => {
      s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60, username: 'u', password: Buffer.from(password) }));
    });
    let got = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4) {
        s.end(DISCONNECT);
        resolve(got[3]);
      }
    });
    s.on('error', reject);
  });
}

/** Connections per second for `creds`, `width` at a time; throws when any is refused. */
async function rate(host: string, port: number, creds: Array<{ clientId: string; password: string }>, width = 32): Promise<number> {
  let next = 0;
  let refused = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < creds.length) {
        const c = creds[next++];
        if ((await connectOnce(host, port, c.clientId, c.password)) !== 0) refused++;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  if (refused) throw new Error(`${refused} of ${creds.length} connections refused`);
  return Math.round(creds.length / s);
}

export async function connectHookRows(o: { quick: boolean; row: Row; results: Record<string, unknown> }): Promise<void> {
  const app = spawn(process.execPath, [join(ROOT, 'dist/test/helpers/hook-app-process.js')], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  trackChild(app);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: app.stdout! }).on('line', (l) => {
        const m = /^listening (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      app.once('exit', (c) => reject(new Error(`hook app exited with ${c}`)));
    });
    const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-hooks-connect-'));
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ mqtt: { port: 0 }, auth: { jwt: { secret: SECRET } }, hooks: { connect: { url: `http://127.0.0.1:${port}/connect`, cacheTtl: 600, cacheMax: 100_000 } } }));
    const server = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--log-level', 'warn', '--store', 'memory', '--config', config]);
    try {
      const { host, port: mqttPort } = server.mqtt!;
      const n = o.quick ? 2000 : 10_000;
      const creds = Array.from({ length: n }, (_, i) => ({ clientId: `b${i}`, password: `allow-b${i}` }));
      const cold = await rate(host, mqttPort, creds);
      const warm = await rate(host, mqttPort, creds);
      const token = await mintToken({ secret: SECRET, sub: 'bench', grants: { publish: [], subscribe: ['bench/#'], deny: { publish: [], subscribe: [] } } });
      const jwt = await rate(
        host,
        mqttPort,
        creds.map((c) => ({ clientId: c.clientId, password: token })),
      );
      o.results.hooksConnect = { connections: n, coldPerSec: cold, warmPerSec: warm, jwtPerSec: jwt };
      o.row('hooks: MQTT connects/s, connect hook, cold cache (app asked each time)', `${cold}/s`);
      o.row('hooks: MQTT connects/s, connect hook, warm cache', `${warm}/s`);
      o.row('hooks: MQTT connects/s, JWT (same run, hook not asked)', `${jwt}/s`);
    } finally {
      await server.stop();
    }
  } finally {
    await stopChild(app);
  }
}
