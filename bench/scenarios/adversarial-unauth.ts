import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { SignJWT } from 'jose';
import { Agent, fetch } from 'undici';
import { forkLoadGen, startServerProcess, type LoadGen, type ServerProc } from '../lib/procs.js';
import { paced, sleep, stampedPayload } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';
import type { AdversarialOptions } from './adversarial.js';
import { stats, statsOnce } from './fanout.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const SECRET = 'bench-adversarial-unauth-secret-0123456789';
const TOPIC = 'bench/unauth';
const ATTACKERS = 3000;
const LEGIT = 1000;
/** Source addresses of the attackers: 250 each, under the default per-address cap of 256. */
const ATTACK_ADDRESSES = 12;
const WS_UPGRADE = 'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
/** An unsolicited empty pong (masked, as from a client): keeps an idle WebSocket alive through the server's pings. */
const PONG = Buffer.from([0x8a, 0x80, 0, 0, 0, 0]);

export interface UnauthFloodResult {
  legitConnected: { without: number; with: number };
  p50ms: { without: number; with: number };
  p99ms: { without: number; with: number };
  p99Ratio: number;
  attackers: { opened: number; heldWhenLegitBegan: number; heldAtEnd: number };
}

type Kind = 'mqtt' | 'ws' | 'head';

interface Attacker {
  kind: Kind;
  socket: Socket;
  open: boolean;
}

/** One socket that never authenticates: raw MQTT saying nothing, a WebSocket that never sends `auth`, or an HTTP head that trickles. */
function attack(kind: Kind, http: URL, mqtt: { host: string; port: number }, from: string): Promise<Attacker> {
  return new Promise((resolve) => {
    const target = kind === 'mqtt' ? { host: mqtt.host, port: mqtt.port } : { host: http.hostname, port: Number(http.port) };
    const socket = connect({ ...target, localAddress: from });
    const a: Attacker = { kind, socket, open: false };
    socket.on('error', () => undefined);
    socket.once('close', () => {
      a.open = false;
      resolve(a);
    });
    socket.once('connect', () => {
      a.open = true;
      if (kind === 'ws') {
        socket.write(WS_UPGRADE);
        socket.on('data', () => socket.write(PONG));
      } else if (kind === 'head') socket.write(`GET /v1/sse?topic=${TOPIC} HTTP/1.1\r\nHost: x\r\n`);
      resolve(a);
    });
  });
}

const publisher = new Agent({ keepAliveTimeout: 1000, connections: 16 });

/** Publishes `perSec` stamped messages a second for `seconds`; latency comes from the subscribers' stamps. */
async function fixedRate(gens: LoadGen[], url: string, token: string, perSec: number, seconds: number, clients: number): Promise<{ p50: number; p99: number }> {
  await stats(gens, { reset: true, timing: true });
  const sent = await paced(perSec, seconds, () => {
    void fetch(`${url}/v1/publish`, {
      dispatcher: publisher,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topic: TOPIC, data: stampedPayload() }),
    }).then(
      (r) => r.arrayBuffer(),
      () => undefined,
    );
  });
  const s = await statsOnce(gens, sent * clients, 5000);
  return { p50: s.hist.percentile(0.5), p99: s.hist.percentile(0.99) };
}

async function legitRound(server: ServerProc, token: string, quick: boolean): Promise<{ connected: number; p50: number; p99: number }> {
  const gen = forkLoadGen(join(LOADGEN_DIR, 'ws-clients.js'), []);
  try {
    const r = await gen.ask<{ connected: number }>({ cmd: 'connect', url: server.url, mode: 'omnipush', topic: TOPIC, count: LEGIT, token, countRefused: true });
    await sleep(300);
    // a second of publishing first, not measured: the first round would otherwise also measure the JIT warming up
    await fixedRate([gen], server.url, token, 20, 1, r.connected);
    const lat = await fixedRate([gen], server.url, token, 20, quick ? 3 : 10, r.connected);
    return { connected: r.connected, ...lat };
  } finally {
    await gen.ask({ cmd: 'close' }).catch(() => undefined);
    gen.stop();
  }
}

/**
 * 3,000 unauthenticated sockets (raw MQTT, WebSocket upgrades without `auth`, trickling HTTP heads)
 * from 12 loopback addresses, held open while 1,000 legitimate WebSocket clients connect with a
 * token; the server runs its default limits (pre-auth pool 2000 / 256 per address). Measured in one
 * server process: the legitimate round alone, then with the attackers.
 */
export async function unauthFlood(o: AdversarialOptions): Promise<void> {
  // the attackers' windows (connect timeout, auth timeout, pool timeout) are long here: they stay for the whole run
  const server = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--mqtt-port', '0', '--log-level', 'warn', '--store', 'memory'], {
    OMNIPUSH_AUTH__JWT__SECRET: SECRET,
    OMNIPUSH_MQTT__CONNECT_TIMEOUT: '600',
    OMNIPUSH_WEBSOCKET__AUTH_TIMEOUT: '600',
    OMNIPUSH_LIMITS__PRE_AUTH__TIMEOUT: '600',
    // the 1,000 legitimate clients share one token and one address: its connection quotas (100 per
    // principal, 1000 per address by default) are lifted, so the pool is what is measured
    OMNIPUSH_QUOTAS__CONNECTIONS_PER_PRINCIPAL: '0',
    OMNIPUSH_QUOTAS__CONNECTIONS_PER_ADDRESS: '0',
  });
  const attackers: Attacker[] = [];
  let trickle: NodeJS.Timeout | undefined;
  try {
    const token = await new SignJWT({ omnipush: { publish: ['#'], subscribe: ['#'] } })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('bench')
      .setExpirationTime('2h')
      .sign(new TextEncoder().encode(SECRET));
    const without = await legitRound(server, token, o.quick);

    const http = new URL(server.url);
    const kinds: Kind[] = ['mqtt', 'ws', 'head'];
    for (let i = 0; i < ATTACKERS; i += 200) {
      const wave = Array.from({ length: Math.min(200, ATTACKERS - i) }, (_, j) => {
        const n = i + j;
        return attack(kinds[n % 3], http, server.mqtt!, `127.0.0.${2 + (n % ATTACK_ADDRESSES)}`);
      });
      attackers.push(...(await Promise.all(wave)));
    }
    trickle = setInterval(() => {
      for (const a of attackers) if (a.kind === 'head' && a.open) a.socket.write('X-Slow: 1\r\n');
    }, 2000);
    // an evicted WebSocket lingers up to 2 s in its close handshake before it is cut
    await sleep(2500);
    const heldWhenLegitBegan = attackers.filter((a) => a.open).length;
    const withFlood = await legitRound(server, token, o.quick);
    const heldAtEnd = attackers.filter((a) => a.open).length;

    const ratio = withFlood.p99 / Math.max(without.p99, 1);
    const res: UnauthFloodResult = {
      legitConnected: { without: without.connected, with: withFlood.connected },
      p50ms: { without: without.p50, with: withFlood.p50 },
      p99ms: { without: without.p99, with: withFlood.p99 },
      p99Ratio: Number(ratio.toFixed(2)),
      attackers: { opened: ATTACKERS, heldWhenLegitBegan, heldAtEnd },
    };
    o.results.unauthFlood = res;
    o.row(`adversarial: ${LEGIT} WS clients connect beside ${ATTACKERS} unauthenticated sockets`, `${withFlood.connected} of ${LEGIT} got in (alone: ${without.connected})`, `all ${LEGIT}`, withFlood.connected === LEGIT ? 'PASS' : 'MISS');
    o.row('  publish→deliver p50/p99 alone / with the flood', `${without.p50}/${without.p99} ms / ${withFlood.p50}/${withFlood.p99} ms = ${res.p99Ratio}×`, '≤ 1.5×', ratio <= 1.5 ? 'PASS' : 'MISS');
    o.row('  attackers held open when the clients began / at the end', `${heldWhenLegitBegan} / ${heldAtEnd} of ${ATTACKERS}`);
  } finally {
    clearInterval(trickle);
    for (const a of attackers) a.socket.destroy();
    await server.stop();
  }
}
