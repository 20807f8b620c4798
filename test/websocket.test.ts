import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { WebSocket as UndiciWebSocket } from 'undici';
import { WebSocket } from 'ws';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

async function httpPublish(base: string, topic: string, data: string): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200);
  return ((await r.json()) as { cursor: string }).cursor;
}

describe('WebSocket door', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ history: { maxCount: 1000, pruneInterval: 3600 } });
  });
  after(() => server.close());

  it('subscribes, publishes with an ack carrying the cursor, receives, unsubscribes', async () => {
    const a = await openWs(server.http);
    const b = await openWs(server.http);
    const sub = await a.request({ type: 'subscribe', topics: ['ws/+'], since: 'now' });
    assert.equal(sub.type, 'subscribed');
    assert.deepEqual(sub.topics, ['ws/+']);
    const ack = await b.request({ type: 'publish', topic: 'ws/x', data: 'hello', event: 'greet', properties: { k: 'v' } });
    assert.equal(ack.type, 'ack');
    await waitFor(() => a.messages().length === 1, 'delivery');
    assert.deepEqual(a.messages()[0], { type: 'message', topic: 'ws/x', cursor: ack.cursor, data: 'hello', event: 'greet', properties: [['k', 'v']], publishedAt: a.messages()[0].publishedAt });
    const bin = await b.request({ type: 'publish', topic: 'ws/y', data_base64: Buffer.from([0xff, 0]).toString('base64') });
    await waitFor(() => a.messages().length === 2, 'binary delivery');
    assert.equal(a.messages()[1].data_base64, '/wA=');
    assert.equal(a.messages()[1].cursor, bin.cursor);
    const un = await a.request({ type: 'unsubscribe', sub: sub.sub });
    assert.equal(un.type, 'unsubscribed');
    await b.request({ type: 'publish', topic: 'ws/x', data: 'after' });
    const pong = await a.request({ type: 'ping' });
    assert.equal(pong.type, 'pong');
    assert.equal(a.messages().length, 2, 'nothing after unsubscribe');
    a.close();
    b.close();
  });

  it('answers bad requests with error frames and keeps the socket open', async () => {
    const c = await openWs(server.http);
    c.ws.send('{not json');
    await waitFor(() => c.frames.some((f) => f.type === 'error' && f.code === 'invalid_json'), 'invalid_json error');
    for (const [msg, code] of [
      [{ type: 'nope' }, 'invalid_request'],
      [{ type: 'subscribe', topics: ['a/#/b'] }, 'invalid_filter'],
      [{ type: 'subscribe', topics: ['a'], since: 'garbage' }, 'invalid_cursor'],
      [{ type: 'publish', topic: 'a/+', data: 'x' }, 'invalid_topic'],
      [{ type: 'publish', topic: 'a', data: 'x', bogus: 1 }, 'invalid_request'],
      [{ type: 'unsubscribe', sub: 'missing' }, 'not_found'],
    ] as const) {
      const r = await c.request(msg);
      assert.equal(r.type, 'error');
      assert.equal(r.code, code, JSON.stringify(msg));
    }
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    c.close();
  });

  it('resumes with since: history then live, no gap, no duplicate; gap after pruning', async () => {
    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push(await httpPublish(server.http, 'wsr/a', `r${i}`));
    const c = await openWs(server.http);
    await c.request({ type: 'subscribe', topics: ['wsr/a'], since: cursors[1] });
    await httpPublish(server.http, 'wsr/a', 'r5');
    await waitFor(() => c.messages().length === 4, 'replay + live');
    assert.deepEqual(
      c.messages().map((m) => m.data),
      ['r2', 'r3', 'r4', 'r5'],
    );
    c.close();

    const small = await startTestServer({ history: { maxCount: 2, pruneInterval: 3600 } });
    try {
      const cs: string[] = [];
      for (let i = 0; i < 6; i++) cs.push(await httpPublish(small.http, 'g', `g${i}`));
      await small.hub.prune();
      const d = await openWs(small.http);
      const sub = await d.request({ type: 'subscribe', topics: ['g'], since: cs[0] });
      await waitFor(() => d.messages().length === 2, 'kept messages');
      const gap = d.frames.find((f) => f.type === 'gap');
      assert.equal(gap?.reason, 'pruned');
      assert.equal(gap?.sub, sub.sub);
      assert.ok(d.frames.indexOf(gap!) < d.frames.indexOf(d.messages()[0]), 'gap comes first');
      d.close();
    } finally {
      await small.close();
    }
  });

  it('crosses doors: WS publish reaches SSE and long-poll; HTTP publish reaches WS', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=cross/t`);
    const start = ((await (await fetch(`${server.http}/v1/poll?topic=cross/t&since=now&timeout=0`)).json()) as { cursor: string }).cursor;
    const poll = fetch(`${server.http}/v1/poll?topic=cross/t&since=${start}&timeout=10`).then((r) => r.json() as Promise<{ messages: Array<{ data: string; cursor: string }> }>);
    const w = await openWs(server.http);
    await w.request({ type: 'subscribe', topics: ['cross/t'], since: 'now' });
    const ack = await w.request({ type: 'publish', topic: 'cross/t', data: 'from ws' });
    const p = await poll;
    assert.deepEqual(p.messages.map((m) => [m.data, m.cursor]), [['from ws', ack.cursor]]);
    await waitFor(() => sse.events().length === 1, 'sse got it');
    assert.equal(sse.events()[0].id, ack.cursor);
    const c2 = await httpPublish(server.http, 'cross/t', 'from http');
    await waitFor(() => w.messages().length === 2, 'ws got both');
    assert.deepEqual(w.messages().map((m) => [m.data, m.cursor]), [['from ws', ack.cursor], ['from http', c2]]);
    sse.close();
    w.close();
  });

  it("works with undici's WebSocket client", async () => {
    const ws = new UndiciWebSocket(`${server.http.replace('http', 'ws')}/v1/ws`);
    const got: Array<Record<string, unknown>> = [];
    ws.addEventListener('message', (e) => got.push(JSON.parse(String(e.data)) as Record<string, unknown>));
    await new Promise((r, j) => {
      ws.addEventListener('open', r);
      ws.addEventListener('error', j);
    });
    ws.send(JSON.stringify({ type: 'subscribe', id: 'u1', topics: ['undici/#'] }));
    await waitFor(() => got.some((f) => f.id === 'u1'), 'subscribed');
    ws.send(JSON.stringify({ type: 'publish', id: 'u2', topic: 'undici/x', data: 'ü' }));
    await waitFor(() => got.some((f) => f.type === 'message'), 'message');
    assert.equal(got.find((f) => f.type === 'message')?.data, 'ü');
    ws.close();
  });

  it('closes a socket that stops reading with 4008 while a fast one gets everything', async () => {
    const s = await startTestServer({ limits: { maxQueueBytes: 256 * 1024 } });
    try {
      const fast = await openWs(s.http);
      await fast.request({ type: 'subscribe', topics: ['slow'], since: 'now' });
      const slow = await openWs(s.http);
      await slow.request({ type: 'subscribe', topics: ['slow'], since: 'now' });
      (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const payload = 'p'.repeat(8 * 1024);
      for (let i = 0; i < 1200; i += 50) {
        const messages = Array.from({ length: 50 }, (_, j) => ({ topic: 'slow', data: `${i + j}:${payload}` }));
        assert.equal((await fetch(`${s.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ messages }) })).status, 200);
      }
      await waitFor(() => fast.messages().length === 1200, 'fast got all', 30_000);
      await waitFor(async () => /omnipush_queue_closes_total\{transport="websocket"\} 1\b/.test(await (await fetch(`${s.http}/metrics`)).text()), 'slow closed');
      (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      const { code } = await slow.closed;
      assert.ok(code === 4008 || code === 1006, `close code ${code}`);
      fast.close();
    } finally {
      await s.close();
    }
  });

  it('drops a peer that stops answering pings', async () => {
    const s = await startTestServer({ websocket: { pingInterval: 0.2 } });
    try {
      // a raw client that completes the handshake and then never answers anything
      const u = new URL(s.http);
      const sock = connect(Number(u.port), u.hostname);
      let text = '';
      sock.on('data', (d) => (text += d.toString('latin1')));
      const ended = new Promise((r) => sock.on('close', r));
      sock.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      await waitFor(() => text.startsWith('HTTP/1.1 101'), 'handshake');
      await waitFor(() => text.includes('\x89'), 'a ping arrives');
      await ended;
      const m = await (await fetch(`${s.http}/metrics`)).text();
      assert.match(m, /omnipush_connections\{transport="websocket"\} 0\b/);
    } finally {
      await s.close();
    }
  });

  it('closes with 1001 on shutdown', async () => {
    const s = await startTestServer();
    const c = await openWs(s.http);
    await c.request({ type: 'subscribe', topics: ['bye'] });
    await s.close();
    assert.equal((await c.closed).code, 1001);
  });
});

describe('WebSocket auth', () => {
  const SECRET = 'websocket-test-secret-123456';
  let server: RunningServer;
  const tok = (claims: Record<string, unknown>, exp: string | number = '1h') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('carol').setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));
  const grants = { omnipush: { publish: ['team/#'], subscribe: ['team/#'] } };
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, websocket: { pingInterval: 0.3, authTimeout: 1 } });
  });
  after(() => server.close());

  it('takes the token from the Authorization header or ?access_token=, and checks grants per request', async () => {
    const t = await tok(grants);
    const c = await openWs(server.http, { headers: { authorization: `Bearer ${t}` } });
    assert.equal((await c.request({ type: 'subscribe', topics: ['team/a'] })).type, 'subscribed');
    const denied = await c.request({ type: 'subscribe', topics: ['other/#'] });
    assert.equal(denied.code, 'forbidden');
    const pubDenied = await c.request({ type: 'publish', topic: 'other/x', data: 'no' });
    assert.equal(pubDenied.code, 'forbidden');
    assert.equal((await c.request({ type: 'publish', topic: 'team/a', data: 'yes' })).type, 'ack');
    c.close();
    const q = new WebSocket(`${server.http.replace('http', 'ws')}/v1/ws?access_token=${t}`);
    await new Promise((r, j) => {
      q.addEventListener('open', r);
      q.addEventListener('error', j);
    });
    q.close();
  });

  it('refuses a bad token at the upgrade with 401', async () => {
    const u = new URL(server.http);
    const sock = connect(Number(u.port), u.hostname);
    let text = '';
    sock.on('data', (d) => (text += d.toString()));
    const done = new Promise((res) => sock.on('close', res));
    sock.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    await done;
    assert.match(text, /^HTTP\/1\.1 401/);
    assert.match(text, /"code":"unauthorized"/);
  });

  it('lets a socket without credentials authenticate with a first auth message, and closes silent ones with 4001', async () => {
    const c = await openWs(server.http);
    assert.equal((await c.request({ type: 'subscribe', topics: ['team/a'] })).code, 'unauthorized');
    assert.equal((await c.request({ type: 'auth', token: await tok(grants) })).type, 'ok');
    assert.equal((await c.request({ type: 'subscribe', topics: ['team/a'] })).type, 'subscribed');
    c.close();
    const silent = await openWs(server.http);
    assert.equal((await silent.closed).code, 4001);
  });

  it('closes with 4001 when the token expires', async () => {
    const c = await openWs(server.http, { headers: { authorization: `Bearer ${await tok(grants, Math.floor(Date.now() / 1000) + 1)}` } });
    await c.request({ type: 'subscribe', topics: ['team/exp'] });
    const { code } = await c.closed;
    assert.equal(code, 4001);
  });
});
