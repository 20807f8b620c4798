import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { IConnackPacket, IPubackPacket, ISubackPacket } from 'mqtt-packet';
import { request as httpRequest } from 'node:http';
import { WebSocket } from 'ws';
import type { ConfigInput } from '../src/config/schema.js';
import type { RunningServer } from '../src/server.js';
import { mqttClient, RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { openRawSse, type RawSse } from './helpers/sse.js';
import { openWs, type WsClient } from './helpers/ws.js';

const SECRET = 'a-test-secret-of-enough-length-1234';
const ALL = { omnipush: { publish: ['#'], subscribe: ['#'] } };
/** Hostile clients that must look like another host come from here (Linux routes all of 127/8 to loopback). */
const OTHER_HOST = '127.0.0.2';

function token(sub: string): Promise<string> {
  return new SignJWT(ALL).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

interface ErrorBody {
  error: { code: string; limit?: string; retryAfter?: number };
}

/** What every test here tears down: sockets of every kind, then the check that nothing is left counted. */
class Opened {
  private readonly closers: Array<() => void> = [];
  add<T>(x: T, close: (x: T) => void): T {
    this.closers.push(() => close(x));
    return x;
  }
  closeAll(): void {
    for (const c of this.closers.splice(0)) c();
  }
}

/** Starts a server with JWT auth (anonymous allowed, with every grant) and these quotas. */
function quotaServer(quotas: NonNullable<ConfigInput['quotas']>): Promise<RunningServer> {
  return startTestServer({ auth: { jwt: { secret: SECRET }, allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['#'] } }, quotas });
}

/** A WebSocket upgrade's refusal: its HTTP status and JSON body. */
function refusedUpgrade(url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<{ status: number; body: ErrorBody; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`, { headers, localAddress });
    ws.once('open', () => reject(new Error('the upgrade was accepted')));
    ws.once('error', () => undefined);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as ErrorBody, retryAfter: res.headers['retry-after'] }));
    });
  });
}

/** An HTTP request from `localAddress` (undici cannot choose its source address): status, Retry-After and JSON body. */
function requestFrom(url: string, localAddress: string, body?: string): Promise<{ status: number; retryAfter?: string; json: ErrorBody | null }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: body === undefined ? 'GET' : 'POST', localAddress }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      const done = () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], json: res.headers['content-type']?.includes('json') ? (JSON.parse(text) as ErrorBody) : null });
      // a stream that was let in stays open: its head is the answer
      if (res.statusCode === 200 && !res.headers['content-length']) {
        req.destroy();
        done();
      } else res.on('end', done);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function jsonError(r: { status: number; json(): Promise<unknown> }): Promise<{ status: number; body: ErrorBody }> {
  return { status: r.status, body: (await r.json()) as ErrorBody };
}

/** A publish by a legitimate client arrives at a legitimate subscriber: the server still serves. */
async function legitimateIsServed(server: RunningServer, tok: string, topic: string): Promise<void> {
  const headers: Record<string, string> = tok ? { Authorization: `Bearer ${tok}` } : {};
  const sse = await openRawSse(`${server.http}/v1/sse?topic=${topic}`, headers);
  try {
    assert.equal(sse.status, 200);
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers, body: JSON.stringify({ topic, data: 'legit' }) });
    assert.equal(r.status, 200);
    await waitFor(() => sse.events().find((e) => e.data === 'legit'), `the legitimate message on ${topic}`);
  } finally {
    sse.close();
  }
}

async function noLeak(server: RunningServer): Promise<void> {
  await waitFor(() => server.registry.size === 0, `an empty connection registry (left: ${[...server.registry.all()].map((c) => `${c.door} ${c.principal.id}`).join(', ')})`);
  assert.equal(server.quotas.reserved, 0);
}

describe('hostile clients against the quotas', () => {
  const opened = new Opened();
  afterEach(() => opened.closeAll());

  describe('connections per principal (2), on every door together', () => {
    let server: RunningServer;
    let mallory: string;
    let alice: string;
    before(async () => {
      server = await quotaServer({ connectionsPerPrincipal: 2 });
      mallory = await token('mallory');
      alice = await token('alice');
    });
    after(() => server.close());

    it('refuses the third connection on every door with the documented code, while another principal is served', async () => {
      const auth = { Authorization: `Bearer ${mallory}` };
      opened.add(await openRawSse(`${server.http}/v1/sse?topic=a`, auth), (s: RawSse) => s.close());
      opened.add(await openWs(server.http, { headers: auth }), (w: WsClient) => w.close());
      await waitFor(() => server.registry.countOfPrincipal('mallory') === 2, 'two connections of mallory');

      const sse = await jsonError(await fetch(`${server.http}/v1/sse?topic=a`, { headers: auth }));
      assert.equal(sse.status, 429);
      assert.equal(sse.body.error.code, 'quota_exceeded');
      assert.equal(sse.body.error.limit, 'connectionsPerPrincipal');
      const poll = await fetch(`${server.http}/v1/poll?topic=a&timeout=5`, { headers: auth });
      assert.equal(poll.status, 429);
      assert.ok(poll.headers.get('retry-after'));
      assert.equal(((await poll.json()) as ErrorBody).error.limit, 'connectionsPerPrincipal');
      const up = await refusedUpgrade(server.http, auth);
      assert.equal(up.status, 429);
      assert.equal(up.body.error.code, 'quota_exceeded');
      assert.ok(up.retryAfter);

      // a socket without credentials is let in, and refused when it says who it is
      const late = opened.add(await openWs(server.http), (w: WsClient) => w.close());
      late.send({ type: 'auth', token: mallory, id: 'a1' });
      assert.equal((await within(late.closed, 5000, 'close after auth over quota')).code, 1008);
      assert.ok(late.frames.some((f) => f.type === 'error' && f.code === 'quota_exceeded'));

      const v5 = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      const ack5 = await v5.connect({ clientId: 'mal-5', username: 'jwt', password: Buffer.from(mallory) });
      assert.equal(ack5.reasonCode, 0x97);
      await v5.waitClosed();
      const v4 = opened.add(await RawClient.open(server, 4), (c: RawClient) => c.close());
      const ack4 = await v4.connect({ clientId: 'mal-4', username: 'jwt', password: Buffer.from(mallory) });
      assert.equal(ack4.returnCode, 3, '3.1.1 has no quota code: Server unavailable');
      await v4.waitClosed();
      assert.equal(server.registry.countOfPrincipal('mallory'), 2);

      await legitimateIsServed(server, alice, 'legit/conn');
      const mq = opened.add(await mqttClient(server, { protocolVersion: 5, username: 'jwt', password: Buffer.from(alice) }), (c) => c.end(true));
      assert.ok(mq.connected);

      opened.closeAll();
      await noLeak(server);
      // once mallory's connections are gone, mallory may connect again
      const again = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      assert.equal((await again.connect({ clientId: 'mal-again', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
    });

    it('lets an MQTT client take over its own session at the limit (it replaces a connection)', async () => {
      await noLeak(server);
      const a = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      const b = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      assert.equal((await a.connect({ clientId: 'mal-x', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
      assert.equal((await b.connect({ clientId: 'mal-y', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
      const c = opened.add(await RawClient.open(server, 5), (x: RawClient) => x.close());
      assert.equal((await c.connect({ clientId: 'mal-x', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
      assert.equal(await a.disconnectCode(), 0x8e);
      assert.equal(server.registry.countOfPrincipal('mallory'), 2);
      opened.closeAll();
      await noLeak(server);
    });
  });

  describe('connections per address (3), anonymous clients', () => {
    let server: RunningServer;
    before(async () => {
      server = await quotaServer({ connectionsPerAddress: 3 });
    });
    after(() => server.close());

    it('refuses a fourth connection from one address on every door; another address is served', async () => {
      for (let i = 0; i < 3; i++) {
        const ws = new WebSocket(`${server.http.replace(/^http/, 'ws')}/v1/ws`, { localAddress: OTHER_HOST });
        ws.on('error', () => undefined);
        await new Promise((r) => ws.once('open', r));
        opened.add(ws, (w) => w.close());
      }
      await waitFor(() => server.registry.countOfAddress(OTHER_HOST) === 3, 'three sockets from the other host');

      const sse = await requestFrom(`${server.http}/v1/sse?topic=a`, OTHER_HOST);
      assert.equal(sse.status, 429);
      assert.equal(sse.json?.error.limit, 'connectionsPerAddress');
      const poll = await requestFrom(`${server.http}/v1/poll?topic=a&timeout=5`, OTHER_HOST);
      assert.equal(poll.status, 429);
      assert.ok(poll.retryAfter);
      const up = await refusedUpgrade(server.http, {}, OTHER_HOST);
      assert.equal(up.status, 429);
      assert.equal(up.body.error.limit, 'connectionsPerAddress');
      const raw = opened.add(await RawClient.open(server, 5, OTHER_HOST), (c: RawClient) => c.close());
      assert.equal(((await raw.connect({ clientId: 'far' })) as IConnackPacket).reasonCode, 0x97);

      // 127.0.0.1 is another address: served on every door
      await legitimateIsServed(server, '', 'legit/addr');
      const mq = opened.add(await mqttClient(server, { protocolVersion: 5 }), (c) => c.end(true));
      assert.ok(mq.connected);

      opened.closeAll();
      await noLeak(server);
    });
  });

  describe('subscriptions per connection (3) and per principal (5)', () => {
    let server: RunningServer;
    let mallory: string;
    let alice: string;
    before(async () => {
      server = await quotaServer({ subscriptionsPerConnection: 3, subscriptionsPerPrincipal: 5, wsRefusalsBeforeClose: 3 });
      mallory = await token('mallory');
      alice = await token('alice');
    });
    after(() => server.close());

    it('refuses filters over the quota on every door, $share included, and closes a WebSocket that keeps going', async () => {
      const auth = { Authorization: `Bearer ${mallory}` };
      const sse = await fetch(`${server.http}/v1/sse?topic=a&topic=b&topic=c&topic=d`, { headers: auth });
      assert.equal(sse.status, 429);
      assert.equal(((await sse.json()) as ErrorBody).error.limit, 'subscriptionsPerConnection');
      const poll = await fetch(`${server.http}/v1/poll?topic=a&topic=b&topic=c&topic=d&timeout=1`, { headers: auth });
      assert.equal(poll.status, 429);
      await poll.body?.cancel();

      // MQTT v5: 3 of 4 granted, the shared one included in the count
      const mq = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      assert.equal((await mq.connect({ clientId: 'mal-sub', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
      mq.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 's/1', qos: 1 }, { topic: '$share/g/s/2', qos: 1 }, { topic: 's/3', qos: 0 }, { topic: 's/4', qos: 0 }] });
      assert.deepEqual(((await mq.next('suback')) as ISubackPacket).granted, [1, 1, 0, 0x97]);
      // MQTT 3.1.1: Failure
      const mq4 = opened.add(await RawClient.open(server, 4), (c: RawClient) => c.close());
      assert.equal((await mq4.connect({ clientId: 'mal-sub4', username: 'jwt', password: Buffer.from(mallory) })).returnCode, 0);
      mq4.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 't/1', qos: 0 }, { topic: 't/2', qos: 0 }, { topic: 't/3', qos: 0 }] });
      // mallory holds 3 (v5 connection): 2 more fit the principal's 5
      assert.deepEqual(((await mq4.next('suback')) as ISubackPacket).granted, [0, 0, 0x80]);
      assert.equal(server.registry.subscriptionCountOfPrincipal('mallory'), 5);

      // WebSocket: the principal is full; refusals come as error frames, then 1008
      const ws = opened.add(await openWs(server.http, { headers: auth }), (w: WsClient) => w.close());
      const r1 = await ws.request({ type: 'subscribe', topics: ['w/1'] });
      assert.equal(r1.type, 'error');
      assert.equal(r1.code, 'quota_exceeded');
      assert.equal(r1.limit, 'subscriptionsPerPrincipal');
      ws.send({ type: 'subscribe', topics: ['w/2'] });
      ws.send({ type: 'subscribe', topics: ['w/3'] });
      assert.equal((await within(ws.closed, 5000, 'close 1008 after refusals')).code, 1008);

      // alice is another principal: served
      await legitimateIsServed(server, alice, 'legit/subs');
      const wa = opened.add(await openWs(server.http, { headers: { Authorization: `Bearer ${alice}` } }), (w: WsClient) => w.close());
      assert.equal((await wa.request({ type: 'subscribe', topics: ['x/1', 'x/2', 'x/3'] })).type, 'subscribed');
      const r4 = await wa.request({ type: 'subscribe', topics: ['x/4'] });
      assert.equal(r4.limit, 'subscriptionsPerConnection');

      opened.closeAll();
      await noLeak(server);
    });
  });

  describe('publish rates: per principal (2 messages, then 1 per 10 s) and per address (1000 bytes)', () => {
    let server: RunningServer;
    const toks: Record<string, string> = {};
    before(async () => {
      server = await quotaServer({
        publish: { perPrincipal: { messagesPerSecond: 0.1, burst: 20 }, perAddress: { bytesPerSecond: 50, burst: 20 } },
        wsRefusalsBeforeClose: 3,
      });
      for (const who of ['m-http', 'm-ws', 'm-mqtt', 'm-mqtt0', 'm-mqtt4', 'm-batch', 'alice']) toks[who] = await token(who);
    });
    after(() => server.close());

    const pub = (tok: string, topic: string, data = 'x') =>
      fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { Authorization: `Bearer ${tok}` }, body: JSON.stringify({ topic, data }) });

    it('answers HTTP over the rate with 429, Retry-After and rate_limited', async () => {
      assert.equal((await pub(toks['m-http'], 'r/1')).status, 200);
      assert.equal((await pub(toks['m-http'], 'r/1')).status, 200);
      const r = await pub(toks['m-http'], 'r/1');
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      const body = (await r.json()) as ErrorBody;
      assert.equal(body.error.code, 'rate_limited');
      assert.equal(body.error.limit, 'publish.perPrincipal');
      // a batch counts each message: one larger than the burst goes when the bucket is full, and leaves it in debt
      const batch = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { Authorization: `Bearer ${toks['m-batch']}` }, body: JSON.stringify([{ topic: 'r/b', data: '1' }, { topic: 'r/b', data: '2' }, { topic: 'r/b', data: '3' }]) });
      assert.equal(batch.status, 200);
      const after = await pub(toks['m-batch'], 'r/b');
      assert.equal(after.status, 429);
      assert.ok(Number(after.headers.get('retry-after')) >= 15, 'a debt of one message and one to take, at 1 per 10 s');
      await legitimateIsServed(server, toks.alice, 'legit/rate-http');
    });

    it('answers a WebSocket over the rate with error frames, then closes it with 1008', async () => {
      const ws = opened.add(await openWs(server.http, { headers: { Authorization: `Bearer ${toks['m-ws']}` } }), (w: WsClient) => w.close());
      assert.equal((await ws.request({ type: 'publish', topic: 'r/ws', data: '1' })).type, 'ack');
      assert.equal((await ws.request({ type: 'publish', topic: 'r/ws', data: '2' })).type, 'ack');
      const e = await ws.request({ type: 'publish', topic: 'r/ws', data: '3' });
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'rate_limited');
      assert.ok(Number(e.retryAfter) >= 1);
      ws.send({ type: 'publish', topic: 'r/ws', data: '4' });
      ws.send({ type: 'publish', topic: 'r/ws', data: '5' });
      assert.equal((await within(ws.closed, 5000, 'close 1008')).code, 1008);
      opened.closeAll();
      await noLeak(server);
    });

    it('answers MQTT over the rate: v5 PUBACK 0x97 (QoS 1), DISCONNECT 0x96 (QoS 0); 3.1.1 is closed', async () => {
      const sub = opened.add(await mqttClient(server, { protocolVersion: 5, username: 'jwt', password: Buffer.from(toks.alice) }), (c) => c.end(true));
      await sub.subscribeAsync('r/mqtt');
      const q1 = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      assert.equal((await q1.connect({ clientId: 'm1', username: 'jwt', password: Buffer.from(toks['m-mqtt']) })).reasonCode, 0);
      for (let i = 1; i <= 3; i++) q1.send({ cmd: 'publish', topic: 'r/mqtt', payload: Buffer.from(`q1-${i}`), qos: 1, retain: false, dup: false, messageId: i });
      const acks: IPubackPacket[] = [];
      for (let i = 0; i < 3; i++) acks.push((await q1.next('puback')) as IPubackPacket);
      // the refusal is answered at once, the others once stored: compared by packet id
      acks.sort((a, b) => (a.messageId ?? 0) - (b.messageId ?? 0));
      assert.deepEqual(
        acks.map((a) => [a.messageId, a.reasonCode ?? 0]),
        [
          [1, 0],
          [2, 0],
          [3, 0x97],
        ],
      );
      assert.match(String(acks[2].properties?.reasonString), /publish\.perPrincipal/);
      await waitFor(() => sub.received.filter((m) => m.topic === 'r/mqtt').length === 2, 'the two publishes within the rate');

      const q0 = opened.add(await RawClient.open(server, 5), (c: RawClient) => c.close());
      assert.equal((await q0.connect({ clientId: 'm0', username: 'jwt', password: Buffer.from(toks['m-mqtt0']) })).reasonCode, 0);
      for (let i = 1; i <= 3; i++) q0.send({ cmd: 'publish', topic: 'r/mqtt', payload: Buffer.from('q0'), qos: 0, retain: false, dup: false });
      assert.equal(await q0.disconnectCode(), 0x96);
      await q0.waitClosed();

      const v4 = opened.add(await RawClient.open(server, 4), (c: RawClient) => c.close());
      assert.equal((await v4.connect({ clientId: 'm4', username: 'jwt', password: Buffer.from(toks['m-mqtt4']) })).returnCode, 0);
      for (let i = 1; i <= 3; i++) v4.send({ cmd: 'publish', topic: 'r/mqtt', payload: Buffer.from('v4'), qos: 1, retain: false, dup: false, messageId: i });
      await v4.waitClosed();
      // the third is never acknowledged (the first two may not be either: the close can overtake their storing)
      assert.ok(!v4.packets.some((p) => p.cmd === 'puback' && p.messageId === 3));

      // alice (the subscriber's principal) still publishes and receives
      await sub.publishAsync('r/mqtt', 'alice-here', { qos: 1 });
      await waitFor(() => sub.received.find((m) => m.payload === 'alice-here'), 'alice’s own message');
      opened.closeAll();
      await noLeak(server);
    });

    it('holds an address to its bytes/s whoever publishes from it; another address is served', async () => {
      const big = JSON.stringify({ topic: 'r/addr', data: 'y'.repeat(700) });
      const ok = await requestFrom(`${server.http}/v1/publish`, OTHER_HOST, big);
      assert.equal(ok.status, 200);
      const refused = await requestFrom(`${server.http}/v1/publish`, OTHER_HOST, big);
      assert.equal(refused.status, 429);
      assert.equal(refused.json?.error.code, 'rate_limited');
      assert.equal(refused.json?.error.limit, 'publish.perAddress');
      assert.ok(Number(refused.retryAfter) >= 5, 'the wait the bucket needs: (700 - 300) bytes at 50 B/s');
      // anonymous from 127.0.0.1: its own address bucket
      const here = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: big });
      assert.equal(here.status, 200);
    });
  });
});
