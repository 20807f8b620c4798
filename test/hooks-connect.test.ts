import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { startHookApp, type HookApp } from './helpers/hook-app.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'hooks-test-secret-0123456789';

/** Status and error body of a WebSocket upgrade the server refused. */
function refusedUpgrade(base: string, headers: Record<string, string>): Promise<{ status: number; body: { error: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws`, { headers });
    ws.on('open', () => {
      ws.close();
      reject(new Error('the upgrade was accepted'));
    });
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error: { code: string; message: string } } }));
    });
  });
}

async function metric(server: RunningServer, result: string): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const m = new RegExp(`omnipush_hook_requests_total\\{hook="connect",result="${result}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

async function mqttConnect(server: RunningServer, version: 4 | 5, password: string, username = 'someone', clientId = `c-${Math.random().toString(36).slice(2)}`) {
  const c = await RawClient.open(server, version);
  try {
    const ack = await c.connect({ clientId, username, password: Buffer.from(password) });
    return { code: version === 5 ? ack.reasonCode : ack.returnCode, reason: ack.properties?.reasonString, c };
  } catch (e) {
    c.close();
    throw e;
  }
}

describe('connect hook on every door', () => {
  let app: HookApp;
  let server: RunningServer;
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({
      auth: { jwt: { secret: SECRET } },
      hooks: { connect: { url: `${app.url}/connect`, headers: ['x-app-session', 'user-agent'], cookies: ['session'], timeout: 2 } },
    });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  it('SSE: a cookie the app knows lets the client in with the grants the app gave; the app sees only allow-listed cookies and headers', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=alice/news`, { cookie: 'session=allow-alice; tracking=secret-tracker', 'x-app-session': 'ignored-when-cookie', 'x-other': 'not-for-the-app' });
    try {
      assert.equal(sse.status, 200);
      const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { cookie: 'session=allow-alice' }, body: JSON.stringify({ topic: 'alice/news', data: 'hello' }) });
      assert.equal(r.status, 200);
      await waitFor(() => sse.events().find((e) => e.data.includes('hello')), 'the event on the stream');
    } finally {
      sse.close();
    }
    const asked = await app.asked();
    const first = asked.find((a) => (a.cookies as Record<string, string> | undefined)?.session === 'allow-alice')!;
    assert.equal(first.door, 'http');
    assert.equal(first.path, '/v1/sse');
    assert.deepEqual(first.cookies, { session: 'allow-alice' }, 'cookies off the allow-list are not sent');
    assert.equal((first.headers as Record<string, string>)['x-app-session'], 'ignored-when-cookie');
    assert.equal((first.headers as Record<string, string>)['x-other'], undefined, 'headers off the allow-list are not sent');
    // grants are the app's: alice may not read bob's topics
    const other = await openRawSse(`${server.http}/v1/sse?topic=bob/news`, { cookie: 'session=allow-alice' });
    assert.equal(other.status, 403);
    other.close();
  });

  it('long-poll: allowed, refused with 403 or 401 as the app says, with the app\'s reason', async () => {
    const ok = await fetch(`${server.http}/v1/poll?topic=erin/x&timeout=0`, { headers: { 'x-app-session': 'allow-erin' } });
    assert.equal(ok.status, 200);
    const forbidden = await fetch(`${server.http}/v1/poll?topic=erin/x&timeout=0`, { headers: { 'x-app-session': 'deny-403' } });
    assert.equal(forbidden.status, 403);
    const body = (await forbidden.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'forbidden');
    assert.match(body.error.message, /account suspended/);
    const unknown = await fetch(`${server.http}/v1/poll?topic=erin/x&timeout=0`, { headers: { 'x-app-session': 'who-knows' } });
    assert.equal(unknown.status, 401);
    assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /unknown credentials/);
  });

  it('WebSocket: the upgrade asks the app; a refusal is the handshake\'s 401/403; a token in an `auth` message asks it too', async () => {
    const c = await openWs(server.http, { headers: { cookie: 'session=allow-frank' } });
    try {
      assert.equal((await c.request({ type: 'subscribe', topics: ['frank/#'] })).type, 'subscribed');
      assert.equal((await c.request({ type: 'subscribe', topics: ['alice/#'] })).type, 'error');
    } finally {
      c.close();
    }
    const forbidden = await refusedUpgrade(server.http, { cookie: 'session=deny-403' });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'forbidden');
    const unknown = await refusedUpgrade(server.http, { cookie: 'session=nobody', authorization: 'Bearer nobody' });
    assert.equal(unknown.status, 401);
    // credentials the app does not know and no token: the socket may still authenticate by message
    const late = await openWs(server.http, { headers: { cookie: 'session=nobody' } });
    try {
      const wrong = await late.request({ type: 'auth', token: 'not-known' });
      assert.equal(wrong.type, 'error');
      const r = await late.request({ type: 'auth', token: 'allow-gina' });
      assert.notEqual(r.type, 'error', JSON.stringify(r));
      assert.equal((await late.request({ type: 'subscribe', topics: ['gina/#'] })).type, 'subscribed');
    } finally {
      late.close();
    }
    const asked = await app.asked();
    assert.ok(asked.some((a) => a.door === 'websocket' && a.token === 'allow-gina'));
  });

  it('MQTT: username, password and client id reach the app; refusals are 0x86 / 0x87 (3.1.1: 4 / 5)', async () => {
    const ok = await mqttConnect(server, 5, 'allow-hank', 'hank-user', 'hank-device');
    assert.equal(ok.code, 0);
    ok.c.close();
    const asked = await app.asked();
    assert.deepEqual(asked.find((a) => a.door === 'mqtt')?.mqtt, { clientId: 'hank-device', username: 'hank-user', password: 'allow-hank' });
    for (const v of [5, 4] as const) {
      const bad = await mqttConnect(server, v, 'nobody');
      assert.equal(bad.code, v === 5 ? 0x86 : 4);
      bad.c.close();
      const forbidden = await mqttConnect(server, v, 'deny-403');
      assert.equal(forbidden.code, v === 5 ? 0x87 : 5);
      if (v === 5) assert.match(forbidden.reason ?? '', /account suspended/);
      forbidden.c.close();
    }
  });

  it('a token that verifies as a JWT is used without asking the app; one that does not is the app\'s to judge', async () => {
    const before = (await app.asked()).length;
    const jwt = await mintToken({ secret: SECRET, sub: 'jwt-user', grants: { subscribe: ['j/#'], publish: [], deny: { publish: [], subscribe: [] } } });
    const r = await fetch(`${server.http}/v1/poll?topic=j/x&timeout=0`, { headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(r.status, 200);
    const m = await mqttConnect(server, 5, jwt);
    assert.equal(m.code, 0);
    m.c.close();
    assert.equal((await app.asked()).length, before, 'the app was not asked about a valid JWT');
    const opaque = await fetch(`${server.http}/v1/poll?topic=ivy/x&timeout=0`, { headers: { authorization: 'Bearer allow-ivy' } });
    assert.equal(opaque.status, 200);
    assert.equal((await app.asked()).at(-1)?.token, 'allow-ivy');
  });

  it('answers are cached per credential: the same cookie again is not asked, another one is', async () => {
    const count = async () => (await app.asked()).filter((a) => (a.cookies as Record<string, string> | undefined)?.session?.startsWith('allow-cache')).length;
    const cachedBefore = await metric(server, 'cached');
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${server.http}/v1/poll?topic=cache1/x&timeout=0`, { headers: { cookie: 'session=allow-cache1' } });
      assert.equal(r.status, 200);
    }
    assert.equal(await count(), 1);
    assert.ok((await metric(server, 'cached')) >= cachedBefore + 2);
    assert.equal((await fetch(`${server.http}/v1/poll?topic=cache2/x&timeout=0`, { headers: { cookie: 'session=allow-cache2' } })).status, 200);
    assert.equal(await count(), 2);
    // a refusal is remembered as well
    const deniedBefore = (await app.asked()).length;
    for (let i = 0; i < 2; i++) assert.equal((await fetch(`${server.http}/v1/poll?topic=x&timeout=0`, { headers: { cookie: 'session=stranger' } })).status, 401);
    assert.equal((await app.asked()).length, deniedBefore + 1);
  });

  it('an allowed answer whose expiry is past refuses; counts appear in metrics', async () => {
    const r = await fetch(`${server.http}/v1/poll?topic=late/x&timeout=0`, { headers: { cookie: 'session=expired' } });
    assert.equal(r.status, 401);
    assert.ok((await metric(server, 'allow')) >= 1);
    assert.ok((await metric(server, 'deny')) >= 1);
  });
});

describe('connect hook in mode always', () => {
  let app: HookApp;
  let server: RunningServer;
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, hooks: { connect: { url: `${app.url}/connect`, mode: 'always', headers: ['authorization'] } } });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  it('a valid JWT is the app\'s to judge too; an Authorization header of another scheme reaches the app', async () => {
    const jwt = await mintToken({ secret: SECRET, sub: 'jwt-user', grants: { subscribe: ['#'], publish: [], deny: { publish: [], subscribe: [] } } });
    const r = await fetch(`${server.http}/v1/poll?topic=j/x&timeout=0`, { headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(r.status, 401, 'the app does not know the JWT');
    assert.equal((await app.asked()).at(-1)?.token, jwt);
    const basic = `Basic ${Buffer.from('kate:allow-kate').toString('base64')}`;
    assert.equal((await fetch(`${server.http}/v1/poll?topic=kate/x&timeout=0`, { headers: { authorization: basic } })).status, 200);
    assert.equal(((await app.asked()).at(-1)?.headers as Record<string, string>).authorization, basic);
  });
});

describe('connect hook cache bound', () => {
  let app: HookApp;
  let server: RunningServer;
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({ hooks: { connect: { url: `${app.url}/connect`, cookies: ['session'], cacheMax: 1 } } });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  it('keeps at most cacheMax answers: with room for one, two credentials in turn ask the app every time', async () => {
    const poll = (who: string) => fetch(`${server.http}/v1/poll?topic=${who}/x&timeout=0`, { headers: { cookie: `session=allow-${who}` } });
    for (const who of ['lea', 'lea', 'max', 'lea', 'max']) assert.equal((await poll(who)).status, 200);
    // lea, (cached), max evicts lea, lea evicts max, max
    assert.equal((await app.asked()).length, 4);
  });
});

describe('connect hook failures', () => {
  let app: HookApp;
  let server: RunningServer;
  before(async () => {
    app = await startHookApp();
    server = await startTestServer({ hooks: { connect: { url: `${app.url}/connect`, cookies: ['session'], timeout: 0.5, concurrency: 1, maxQueued: 0 } } });
  });
  after(async () => {
    await server.close();
    await app.stop();
  });

  const poll = (session: string) => fetch(`${server.http}/v1/poll?topic=x&timeout=0`, { headers: { cookie: `session=${session}` } });

  async function unavailable(r: Response, pattern: RegExp): Promise<void> {
    assert.equal(r.status, 503);
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'unavailable');
    assert.match(body.error.message, pattern);
  }

  it('a slow app: the connection is refused at the timeout (503 over HTTP, 0x88 over MQTT), not left hanging', async () => {
    const t0 = Date.now();
    await unavailable(await within(poll('slow'), 4000, 'the refusal'), /did not answer within 500 ms/);
    assert.ok(Date.now() - t0 < 3000, `refused after ${Date.now() - t0} ms`);
    const m = await mqttConnect(server, 5, 'slow');
    assert.equal(m.code, 0x88);
    m.c.close();
    assert.ok((await metric(server, 'timeout')) >= 2);
  });

  it('garbage and answers of the wrong shape fail closed with a clear message', async () => {
    await unavailable(await poll('garbage'), /not JSON/);
    await unavailable(await poll('shapeless'), /answer is not valid/);
    await unavailable(await poll('badfilter'), /bad filter/);
    assert.ok((await metric(server, 'invalid')) >= 3);
  });

  it('bounded concurrency: with one request in flight and no queue, another is refused at once as busy', async () => {
    const slow = poll('slow');
    await waitFor(async () => (await app.asked()).filter((a) => (a.cookies as Record<string, string> | undefined)?.session === 'slow').length >= 2, 'the slow request to reach the app');
    const t0 = Date.now();
    await unavailable(await poll('allow-busy'), /in flight/);
    assert.ok(Date.now() - t0 < 400, 'refused before the hook timeout');
    await unavailable(await slow, /did not answer/);
    assert.ok((await metric(server, 'busy')) >= 1);
  });

  it('an app that is down: refused (fail closed); the server keeps serving', async () => {
    await app.stop();
    await unavailable(await poll('allow-zed'), /could not be reached|answered HTTP/);
    assert.equal((await fetch(`${server.http}/healthz`)).status, 200);
  });
});

describe('connect hook failing open', () => {
  let server: RunningServer;
  before(async () => {
    // nothing listens on port 9 of loopback: the hook is down from the start
    server = await startTestServer({ auth: { allowAnonymous: true, anonymous: { subscribe: ['public/#'] } }, hooks: { connect: { url: 'http://127.0.0.1:9/connect', failOpen: true, timeout: 0.5 } } });
  });
  after(() => server.close());

  it('with failOpen the client gets in as anonymous, with anonymous grants only', async () => {
    assert.equal((await fetch(`${server.http}/v1/poll?topic=public/x&timeout=0`, { headers: { authorization: 'Bearer allow-anyone' } })).status, 200);
    assert.equal((await fetch(`${server.http}/v1/poll?topic=private/x&timeout=0`, { headers: { authorization: 'Bearer allow-anyone' } })).status, 403);
  });

  it('a hook alone counts as authentication: unless anonymous access is allowed, failing open lets nobody in', async () => {
    const s = await startTestServer({ hooks: { connect: { url: 'http://127.0.0.1:9/connect', failOpen: true, timeout: 0.5 } } });
    try {
      assert.equal((await fetch(`${s.http}/v1/poll?topic=any/x&timeout=0`)).status, 401);
    } finally {
      await s.close();
    }
  });
});
