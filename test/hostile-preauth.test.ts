import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { RunningServer } from '../src/server.js';
import { mqttAddress, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'hostile-preauth-secret-of-enough-length';

async function token(sub: string): Promise<string> {
  return new SignJWT({ omnipush: { publish: ['#'], subscribe: ['#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SECRET));
}

const WS_UPGRADE = 'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

type Kind = 'mqtt' | 'ws' | 'head';

/** One hostile socket: it connects, says as little as it can, and records how it was ended. */
interface Attacker {
  kind: Kind;
  socket: Socket;
  received: string;
  closed: boolean;
}

function attack(host: string, port: number, from: string, kind: Kind): Promise<Attacker> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port, localAddress: from });
    const a: Attacker = { kind, socket, received: '', closed: false };
    socket.on('data', (d: Buffer) => {
      if (a.received.length < 256) a.received += d.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.once('close', () => (a.closed = true));
    socket.once('connect', () => {
      if (kind === 'ws') socket.write(WS_UPGRADE);
      else if (kind === 'head') socket.write('GET /v1/sse?topic=a HTTP/1.1\r\nHost: x\r\n');
      resolve(a);
    });
    socket.once('error', reject);
  });
}

/** The close code in a server's (unmasked, short) frames, past any pings before it. */
function closeCodeOf(frames: Buffer): number | undefined {
  let at = 0;
  while (at + 2 <= frames.length) {
    const opcode = frames[at] & 0x0f;
    const len = frames[at + 1] & 0x7f;
    if (opcode === 0x8) return at + 4 <= frames.length ? frames.readUInt16BE(at + 2) : undefined;
    at += 2 + len;
  }
  return undefined;
}

describe('unauthenticated sockets cannot crowd out real clients', () => {
  let server: RunningServer;
  const attackers: Attacker[] = [];
  let trickle: NodeJS.Timeout | undefined;
  before(async () => {
    server = await startTestServer({
      auth: { jwt: { secret: SECRET } },
      // a connection budget far below the flood: attackers must not take its slots
      limits: { maxConnections: 40, preAuth: { max: 1000, perAddress: 200, timeout: 60 } },
      websocket: { authTimeout: 60 },
      mqtt: { connectTimeout: 60 },
    });
  });
  after(async () => {
    clearInterval(trickle);
    for (const a of attackers) a.socket.destroy();
    await server.close();
  });

  it('3,000 sockets that never authenticate fill the pre-auth pool, not the server; legitimate clients on every door get in and are served', async () => {
    const http = new URL(server.http);
    const mq = mqttAddress(server);
    // 20 source addresses × 150 sockets: under the per-address cap, so the pool's own cap is what holds
    const kinds: Kind[] = ['mqtt', 'ws', 'head'];
    for (let wave = 0; wave < 30; wave++) {
      const opening: Array<Promise<Attacker>> = [];
      for (let i = 0; i < 100; i++) {
        const n = wave * 100 + i;
        const kind = kinds[n % 3];
        const from = `127.0.0.${2 + (n % 20)}`;
        opening.push(kind === 'mqtt' ? attack(mq.host, mq.port, from, kind) : attack(http.hostname, Number(http.port), from, kind));
      }
      attackers.push(...(await Promise.all(opening)));
      assert.ok(server.preAuth.size <= 1000, `pool holds ${server.preAuth.size}`);
    }
    // HTTP heads trickle in, a header line at a time, as a slowloris does
    trickle = setInterval(() => {
      for (const a of attackers) if (a.kind === 'head' && !a.closed) a.socket.write('X-Slow: 1\r\n');
    }, 500);
    await waitFor(() => server.preAuth.evicted >= 2000, 'the pool full, its oldest members evicted');
    assert.equal(server.preAuth.size, 1000);
    assert.equal(server.preAuth.refused, 0, 'no address reached its cap');
    await waitFor(() => attackers.filter((a) => a.closed).length >= 2000, 'evicted attackers closed');

    // legitimate clients, each one evicting an attacker's place for the moment it needs to authenticate
    const t = await token('legit');
    const ws = await Promise.all(Array.from({ length: 15 }, () => openWs(server.http, { headers: { authorization: `Bearer ${t}` } })));
    for (const c of ws) assert.equal((await c.request({ type: 'subscribe', topics: ['flood/#'], since: 'now' })).type, 'subscribed');
    const lateAuth = await openWs(server.http);
    assert.equal((await lateAuth.request({ type: 'auth', token: t })).type, 'ok');
    await lateAuth.request({ type: 'subscribe', topics: ['flood/#'], since: 'now' });
    const mqtt: RawClient[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.open(server, 5);
      assert.equal((await c.connect({ username: 'legit', password: Buffer.from(t) })).reasonCode, 0);
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 0 }] });
      await c.next('suback');
      mqtt.push(c);
    }
    const sse = await Promise.all(Array.from({ length: 5 }, () => openRawSse(`${server.http}/v1/sse?topic=flood/%23`, { authorization: `Bearer ${t}` })));
    for (const s of sse) assert.equal(s.status, 200);

    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${t}` }, body: JSON.stringify({ topic: 'flood/x', data: 'served' }) });
    assert.equal(r.status, 200);
    for (const c of [...ws, lateAuth]) await waitFor(() => c.messages().some((m) => m.data === 'served'), 'WebSocket delivery');
    for (const c of mqtt) await waitFor(() => c.packets.some((p) => p.cmd === 'publish' && String(p.payload) === 'served'), 'MQTT delivery');
    for (const s of sse) await waitFor(() => s.events().some((e) => e.data === 'served'), 'SSE delivery');

    // how the attackers were ended: MQTT and HTTP heads cut without a word, WebSockets 101 then 1013
    const evictedWs = attackers.filter((a) => a.kind === 'ws' && a.closed && a.received.startsWith('HTTP/1.1 101'));
    assert.ok(evictedWs.length > 0, 'some upgraded attackers were evicted');
    for (const a of evictedWs) {
      const code = closeCodeOf(Buffer.from(a.received.slice(a.received.indexOf('\r\n\r\n') + 4), 'latin1'));
      if (code !== undefined) assert.equal(code, 1013, 'close code of an evicted WebSocket');
    }
    for (const a of attackers) if (a.kind !== 'ws' && a.closed) assert.equal(a.received, '', `${a.kind} attacker got an answer`);
    for (const c of [...ws, lateAuth]) c.close();
    for (const c of mqtt) c.close();
    for (const s of sse) s.close();
  });
});

describe('the pre-auth cap per source address', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, limits: { preAuth: { max: 1000, perAddress: 10, timeout: 60, burst: 0 } }, mqtt: { connectTimeout: 60 } });
  });
  after(() => server.close());

  it('closes sockets past the cap at once while another address is served', async () => {
    const mq = mqttAddress(server);
    const http = new URL(server.http);
    const held = await Promise.all(Array.from({ length: 15 }, () => attack(mq.host, mq.port, '127.0.0.50', 'mqtt')));
    await waitFor(() => held.filter((a) => a.closed).length === 5, 'five sockets past the cap closed');
    assert.equal(server.preAuth.countOf('127.0.0.50'), 10);
    assert.equal(server.preAuth.refused, 5);
    const metrics = await (await fetch(`${server.http}/metrics`)).text();
    assert.match(metrics, /omnipush_preauth_closed_total\{reason="refused"\} 5\n/);
    assert.match(metrics, /omnipush_preauth_sockets 1[01]\n/, 'ten held, and the scrape itself until its head was read');
    // an HTTP connection from the full address is cut before it can send anything
    const extra = await attack(http.hostname, Number(http.port), '127.0.0.50', 'ws');
    await waitFor(() => extra.closed, 'upgrade from a full address cut');
    assert.equal(extra.received, '');
    // another address is not affected
    const c = await RawClient.open(server, 5);
    assert.equal((await c.connect({ username: 'legit', password: Buffer.from(await token('legit')) })).reasonCode, 0);
    c.close();
    for (const a of held) a.socket.destroy();
    await waitFor(() => server.preAuth.countOf('127.0.0.50') === 0, 'places freed when the sockets go');
  });
});

describe('a burst from one address (a NAT or a proxy) within limits.preAuth.burst', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, limits: { preAuth: { max: 1000, perAddress: 10, timeout: 60, burst: 3 } }, mqtt: { connectTimeout: 60 } });
  });
  after(() => server.close());

  it('goes past the cap while its oldest socket is young, and is refused once that one has waited the burst out', async () => {
    const mq = mqttAddress(server);
    const t0 = Date.now();
    const burst = await Promise.all(Array.from({ length: 25 }, () => attack(mq.host, mq.port, '127.0.0.60', 'mqtt')));
    await waitFor(() => server.preAuth.countOf('127.0.0.60') === 25, 'all 25 of the burst held');
    assert.ok(Date.now() - t0 < 3000, 'the burst took less than limits.preAuth.burst');
    assert.equal(server.preAuth.refused, 0);
    // the time under test is the burst window itself
    await new Promise((r) => setTimeout(r, t0 + 3100 - Date.now()));
    const late = await attack(mq.host, mq.port, '127.0.0.60', 'mqtt');
    await waitFor(() => late.closed, 'a socket after the burst window refused');
    assert.equal(server.preAuth.refused, 1);
    assert.ok(burst.every((a) => !a.closed), 'the burst is still held');
    for (const a of burst) a.socket.destroy();
  });
});
