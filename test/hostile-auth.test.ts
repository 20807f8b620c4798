import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/schema.js';
import { startServer, type RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'hostile-auth-secret-of-enough-length';

interface TokenOpts {
  sub?: string;
  /** seconds since the epoch; null: no exp claim */
  exp?: number | null;
  grants?: Record<string, unknown>;
}

async function token(o: TokenOpts = {}): Promise<string> {
  const jwt = new SignJWT({ omnipush: o.grants ?? { publish: ['#'], subscribe: ['#'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject(o.sub ?? 'alice').setIssuedAt();
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? Math.floor(Date.now() / 1000) + 3600);
  return jwt.sign(new TextEncoder().encode(SECRET));
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function publish(server: RunningServer, t: string, topic: string, data: string): Promise<void> {
  const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: bearer(t), body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200, await r.text());
}

async function errorOf(r: Response): Promise<{ code: string; message: string }> {
  return ((await r.json()) as { error: { code: string; message: string } }).error;
}

describe('hostile clients against credentials', () => {
  let server: RunningServer;
  let admin: string;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, websocket: { authTimeout: 1 }, mqtt: { connectTimeout: 1 } });
    admin = await token({ sub: 'admin' });
  });
  after(() => server.close());

  it('WebSocket: re-auth as another principal is refused and the socket closed (1008); a client beside it is served', async () => {
    const alice = await token({ sub: 'alice' });
    const bob = await token({ sub: 'bob' });
    const hostile = await openWs(server.http, { headers: bearer(alice) });
    const beside = await openWs(server.http, { headers: bearer(alice) });
    assert.equal((await hostile.request({ type: 'subscribe', topics: ['switch/#'], since: 'now' })).type, 'subscribed');
    assert.equal((await beside.request({ type: 'subscribe', topics: ['switch/#'], since: 'now' })).type, 'subscribed');
    // the same principal may renew its credentials
    assert.equal((await hostile.request({ type: 'auth', token: await token({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 7200 }) })).type, 'ok');
    const refused = await hostile.request({ type: 'auth', token: bob });
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'forbidden');
    const closed = await within(hostile.closed, 5000, 'hostile socket closed');
    assert.equal(closed.code, 1008);
    await publish(server, admin, 'switch/a', 'after');
    await waitFor(() => beside.messages().some((m) => m.data === 'after'), 'the client beside served');
    assert.equal(hostile.messages().length, 0, 'nothing reached the refused socket');
    beside.close();
  });

  it('WebSocket: a socket without credentials that authenticates may not switch identity either', async () => {
    const c = await openWs(server.http);
    assert.equal((await c.request({ type: 'auth', token: await token({ sub: 'carol' }) })).type, 'ok');
    assert.equal((await c.request({ type: 'auth', token: await token({ sub: 'dave' }) })).code, 'forbidden');
    assert.equal((await within(c.closed, 5000, 'close')).code, 1008);
  });

  it('WebSocket: grants narrowed by re-auth drop subscriptions at once and switch on per-message checks', async () => {
    const wide = await token({ sub: 'erin', grants: { subscribe: ['chat/#', 'news/#'] } });
    const c = await openWs(server.http, { headers: bearer(wide) });
    const both = await c.request({ type: 'subscribe', topics: ['chat/#', 'news/#'], since: 'now' });
    const news = await c.request({ type: 'subscribe', topics: ['news/x'], since: 'now' });
    const narrow = await token({ sub: 'erin', grants: { subscribe: ['chat/#'], deny: { subscribe: ['chat/secret'] } } });
    assert.equal((await c.request({ type: 'auth', token: narrow })).type, 'ok');
    const dropBoth = await waitFor(() => c.frames.find((f) => f.type === 'error' && f.sub === both.sub), 'error frame for the narrowed subscription');
    assert.equal(dropBoth.code, 'forbidden');
    assert.deepEqual(dropBoth.topics, ['news/#']);
    const dropNews = await waitFor(() => c.frames.find((f) => f.type === 'error' && f.sub === news.sub), 'error frame for the ended subscription');
    assert.deepEqual(dropNews.topics, ['news/x']);
    await waitFor(() => c.frames.find((f) => f.type === 'unsubscribed' && f.sub === news.sub), 'the ended subscription is unsubscribed');
    await publish(server, admin, 'news/x', 'no longer yours');
    await publish(server, admin, 'chat/secret', 'denied now');
    await publish(server, admin, 'chat/a', 'still yours');
    await waitFor(() => c.messages().some((m) => m.data === 'still yours'), 'chat delivery');
    assert.deepEqual(
      c.messages().map((m) => m.data),
      ['still yours'],
    );
    // the subscription that lost every filter is gone
    assert.equal((await c.request({ type: 'unsubscribe', sub: news.sub })).code, 'not_found');
    c.close();
  });

  it('MQTT: an AUTH packet on an open connection (re-authentication) is a protocol error, 0x82; a client beside it is served', async () => {
    const alice = await token({ sub: 'alice' });
    const hostile = await RawClient.open(server, 5);
    assert.equal((await hostile.connect({ username: 'alice', password: Buffer.from(alice) })).reasonCode, 0);
    const beside = await RawClient.open(server, 5);
    assert.equal((await beside.connect({ username: 'alice', password: Buffer.from(alice) })).reasonCode, 0);
    beside.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'mswitch/#', qos: 0 }] });
    await beside.next('suback');
    hostile.send({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'jwt', authenticationData: Buffer.from(await token({ sub: 'bob' })) } });
    assert.equal(await hostile.disconnectCode(), 0x82);
    await hostile.waitClosed();
    await publish(server, admin, 'mswitch/a', 'served');
    await waitFor(() => beside.packets.some((p) => p.cmd === 'publish' && String(p.payload) === 'served'), 'the client beside served');
    beside.close();
  });

  it('SSE: a request for another principal sent down an open stream is ignored; the stream stays its own', async () => {
    const alice = await token({ sub: 'alice', grants: { subscribe: ['sswitch/alice'] } });
    const bob = await token({ sub: 'bob', grants: { subscribe: ['sswitch/#'] } });
    const { port } = new URL(server.http);
    const sock = netConnect(Number(port), '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /v1/sse?topic=sswitch/alice HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice}\r\n\r\n`);
    await waitFor(() => got.includes(': ok'), 'stream open');
    // the socket belongs to the stream now: a second request (another identity, a wider filter) is not read as one
    sock.write(`GET /v1/sse?topic=sswitch/%23 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob}\r\n\r\n`);
    await publish(server, admin, 'sswitch/bob', 'not for alice');
    await publish(server, admin, 'sswitch/alice', 'for alice');
    await waitFor(() => got.includes('for alice'), 'alice’s message on her stream');
    assert.equal(got.split('HTTP/1.1 ').length - 1, 1, 'one response head only');
    assert.ok(!got.includes('not for alice'));
    sock.destroy();
  });

  it('every door ends a connection within one second of its token’s exp, with its code; long-lived clients beside are served', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3;
    const expMs = exp * 1000;
    const short = await token({ sub: 'frank', exp });
    const long = await token({ sub: 'frank' });
    const ended: Record<string, number> = {};
    const mark = (door: string) => () => (ended[door] ??= Date.now());

    const sse = await openRawSse(`${server.http}/v1/sse?topic=exp/%23`, bearer(short));
    assert.equal(sse.status, 200);
    void sse.ended.then(mark('sse'));
    const ws = await openWs(server.http, { headers: bearer(short) });
    const wsClosed = ws.closed.then((c) => (mark('ws')(), c));
    const poll = fetch(`${server.http}/v1/poll?topic=exp/%23&since=now&timeout=30`, { headers: bearer(short) }).then(async (r) => (mark('poll')(), { status: r.status, body: await errorOf(r) }));
    const m5 = await RawClient.open(server, 5);
    assert.equal((await m5.connect({ username: 'frank', password: Buffer.from(short) })).reasonCode, 0);
    void m5.closedPromise.then(mark('mqtt5'));
    const m4 = await RawClient.open(server, 4);
    assert.equal((await m4.connect({ username: 'frank', password: Buffer.from(short) })).returnCode, 0);
    void m4.closedPromise.then(mark('mqtt311'));

    const besideWs = await openWs(server.http, { headers: bearer(long) });
    await besideWs.request({ type: 'subscribe', topics: ['exp/#'], since: 'now' });
    const besideSse = await openRawSse(`${server.http}/v1/sse?topic=exp/%23`, bearer(long));

    const wsClose = await within(wsClosed, 10_000, 'WebSocket closed at exp');
    const disconnect = await m5.disconnectCode(10_000);
    const polled = await within(poll, 10_000, 'held poll answered at exp');
    await within(sse.ended, 10_000, 'SSE ended at exp');
    await m4.waitClosed(10_000);

    assert.equal(wsClose.code, 4001);
    assert.equal(disconnect, 0x87);
    assert.equal(polled.status, 401);
    assert.equal(polled.body.code, 'unauthorized');
    const close = sse.events().find((e) => e.event === 'close');
    assert.equal((JSON.parse(close?.data ?? '{}') as { code?: string }).code, 'unauthorized');
    for (const [door, at] of Object.entries(ended)) {
      assert.ok(at >= expMs - 50, `${door} ended ${expMs - at} ms before exp`);
      assert.ok(at - expMs <= 1000, `${door} ended ${at - expMs} ms after exp`);
    }
    assert.deepEqual(Object.keys(ended).sort(), ['mqtt311', 'mqtt5', 'poll', 'sse', 'ws']);

    await publish(server, admin, 'exp/after', 'still here');
    await waitFor(() => besideWs.messages().some((m) => m.data === 'still here'), 'WebSocket beside served');
    await waitFor(() => besideSse.events().some((e) => e.data === 'still here'), 'SSE beside served');
    besideWs.close();
    besideSse.close();
  });

  it('renewing a token on a WebSocket moves its expiry', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const c = await openWs(server.http, { headers: bearer(await token({ sub: 'gina', exp })) });
    assert.equal((await c.request({ type: 'auth', token: await token({ sub: 'gina' }) })).type, 'ok');
    // the moment under test is a time, not an event: half a second past the first exp
    await new Promise((r) => setTimeout(r, exp * 1000 + 500 - Date.now()));
    assert.equal((await c.request({ type: 'ping' })).type, 'pong', 'still open past the first exp');
    c.close();
  });

  it('a WebSocket that never sends auth is closed with 4001 on time (websocket.authTimeout)', async () => {
    const t0 = Date.now();
    const c = await openWs(server.http);
    const closed = await within(c.closed, 5000, 'auth timeout');
    const took = Date.now() - t0;
    assert.equal(closed.code, 4001);
    assert.ok(took >= 950 && took < 1600, `closed after ${took} ms; authTimeout is 1 s`);
  });

  it('a raw MQTT socket that sends nothing is closed on time (mqtt.connectTimeout)', async () => {
    const c = await RawClient.open(server, 5);
    const t0 = Date.now();
    await c.waitClosed(5000);
    const took = Date.now() - t0;
    assert.ok(took >= 950 && took < 1600, `closed after ${took} ms; connectTimeout is 1 s`);
    assert.equal(c.packets.length, 0);
  });

  it('malformed credentials get 401 with a JSON body, never 500', async () => {
    const badCookie = { cookie: 'omnipush_token=%E0%A4%A' };
    for (const path of ['/v1/sse?topic=a', '/v1/poll?topic=a&timeout=0', '/v1/history?topic=a']) {
      const r = await fetch(`${server.http}${path}`, { headers: badCookie });
      assert.equal(r.status, 401, path);
      assert.equal((await errorOf(r)).code, 'unauthorized');
    }
    const pub = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: badCookie, body: '{"topic":"a","data":"x"}' });
    assert.equal(pub.status, 401);
    for (const authorization of ['Bearer', 'Basic abc', 'Bearer a b', 'Bearer \u00ff\u00fe']) {
      const r = await fetch(`${server.http}/v1/history?topic=a`, { headers: { authorization } });
      assert.equal(r.status, 401, authorization);
      assert.equal((await errorOf(r)).code, 'unauthorized');
    }
    for (const q of ['%E0%A4%A', '%FF%FE', 'a.b.c', '%00']) {
      const r = await fetch(`${server.http}/v1/history?topic=a&access_token=${q}`);
      assert.equal(r.status, 401, q);
    }
    // the WebSocket upgrade too: refused with 401 before the handshake
    const ws = new WebSocket(`${server.http.replace('http', 'ws')}/v1/ws`, { headers: badCookie });
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });
    assert.equal(status, 401);
  });

  it('/metrics answers only with metrics.token when one is set', async () => {
    const s = await startTestServer({ metrics: { token: 'a-metrics-token-long-enough' } });
    try {
      const none = await fetch(`${s.http}/metrics`);
      assert.equal(none.status, 401);
      assert.equal((await errorOf(none)).code, 'unauthorized');
      assert.equal((await fetch(`${s.http}/metrics`, { headers: bearer('a-metrics-token-long-enough-not') })).status, 401);
      const ok = await fetch(`${s.http}/metrics`, { headers: bearer('a-metrics-token-long-enough') });
      assert.equal(ok.status, 200);
      assert.match(await ok.text(), /omnipush_connections/);
    } finally {
      await s.close();
    }
    // without a token configured it stays open (as before)
    assert.equal((await fetch(`${server.http}/metrics`)).status, 200);
  });
});

describe('auth.jwt.maxLifetime', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET, maxLifetime: 60 } } });
  });
  after(() => server.close());

  it('refuses tokens without exp or with one too far ahead, accepts short-lived ones', async () => {
    const noExp = await fetch(`${server.http}/v1/history?topic=a`, { headers: bearer(await token({ exp: null })) });
    assert.equal(noExp.status, 401);
    assert.match((await errorOf(noExp)).message, /no "exp"/);
    const far = await fetch(`${server.http}/v1/history?topic=a`, { headers: bearer(await token({ exp: Math.floor(Date.now() / 1000) + 3600 })) });
    assert.equal(far.status, 401);
    assert.match((await errorOf(far)).message, /at most 60 s/);
    const ok = await fetch(`${server.http}/v1/history?topic=a`, { headers: bearer(await token({ exp: Math.floor(Date.now() / 1000) + 30 })) });
    assert.equal(ok.status, 200);
    // MQTT: the password is the token, refused the same way
    const c = await RawClient.open(server, 5);
    const ack = await c.connect({ username: 'x', password: Buffer.from(await token({ exp: null })) });
    assert.equal(ack.reasonCode, 0x86);
    c.close();
  });
});

describe('embedding: startServer', () => {
  it('refuses to listen on 0.0.0.0 without authentication, as the CLI does', async () => {
    const config = parseConfig({ http: { host: '0.0.0.0', port: 0 }, mqtt: { enabled: false }, store: { kind: 'memory' }, log: { level: 'silent' } });
    await assert.rejects(startServer(config), /refusing to listen on 0\.0\.0\.0/);
  });

  it('an aborted upload is a debug line, not an error', async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: number; msg: string });
        cb();
      },
    });
    const s = await startServer(parseConfig({ http: { host: '127.0.0.1', port: 0 }, mqtt: { enabled: false }, store: { kind: 'memory' } }), { log: pino({ level: 'debug' }, sink) });
    try {
      const { port } = new URL(s.http);
      const sock = netConnect(Number(port), '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      // 100-continue: the server answers once it has the head, so the abort is surely mid-body
      sock.write('POST /v1/topics/up/load HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n');
      await waitFor(() => got.includes('100 Continue'), '100 Continue');
      sock.write('x'.repeat(1000));
      sock.destroy();
      const line = await waitFor(() => lines.find((l) => /before its request body was complete/.test(l.msg)), 'debug line for the aborted upload');
      assert.equal(line.level, 20);
      assert.deepEqual(
        lines.filter((l) => l.level >= 50),
        [],
      );
    } finally {
      await s.close();
    }
  });
});
