import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import type { RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse, type RawSse } from './helpers/sse.js';
import type { Frame } from './helpers/ws.js';

const SECRET = 'presence-test-secret-0123456789';

/** A token for `sub` with subscribe/publish on room/#, presence on what `presence` lists, and `info` as the claim. */
function token(sub: string, o: { presence?: string[]; info?: unknown; subscribe?: string[]; publish?: string[] } = {}): Promise<string> {
  const claims: Record<string, unknown> = { omnipush: { subscribe: o.subscribe ?? ['room/#', '$presence/#'], publish: o.publish ?? ['room/#'], ...(o.presence ? { presence: o.presence } : {}) } };
  if (o.info !== undefined) claims.info = o.info;
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

interface Ws {
  ws: WebSocket;
  frames: Frame[];
  request(msg: Record<string, unknown>): Promise<Frame>;
  close(): void;
}

let ids = 1;
async function ws(server: RunningServer, tok: string, query = ''): Promise<Ws> {
  const sock = new WebSocket(`${server.http.replace(/^http/, 'ws')}/v1/ws?access_token=${tok}${query}`);
  const frames: Frame[] = [];
  // `at`: when it arrived, to check that a leave came when it should
  sock.on('message', (d: Buffer) => frames.push({ ...(JSON.parse(d.toString()) as Frame), at: Date.now() }));
  sock.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    sock.once('open', () => resolve());
    sock.once('error', reject);
  });
  return {
    ws: sock,
    frames,
    async request(msg) {
      const id = ids++;
      sock.send(JSON.stringify({ ...msg, id }));
      return waitFor(() => frames.find((f) => f.id === id), `reply to ${String(msg.type)}`);
    },
    close: () => sock.terminate(),
  };
}

interface Member {
  id: string;
  sub: string;
  connection: string;
  door: string;
  joinedAt: number;
  info?: Record<string, unknown>;
}

async function list(server: RunningServer, tok: string, topic: string, extra = ''): Promise<{ status: number; body: { position: number; members: Member[]; cursor?: string; error?: { code: string } } }> {
  const r = await fetch(`${server.http}/v1/presence?topic=${encodeURIComponent(topic)}${extra}`, { headers: { Authorization: `Bearer ${tok}` } });
  return { status: r.status, body: (await r.json()) as never };
}

describe('presence on every door', () => {
  let server: RunningServer;
  const open: Array<() => void> = [];
  before(async () => {
    server = await startTestServer({
      auth: { jwt: { secret: SECRET } },
      presence: { rules: [{ filter: 'room/+', joinLeave: true }, { filter: 'quiet/+' }], pollGrace: '1s', leaveGrace: '300ms', maxInfoBytes: 64 },
    });
  });
  afterEach(() => {
    for (const c of open.splice(0)) c();
  });
  after(() => server.close());

  it('lists an SSE tab, a WebSocket, an MQTT device and a long-poller together; each leaves once, when it should', async () => {
    const reader = await token('reader', { presence: ['room/#'] });
    const watcher = await ws(server, reader);
    open.push(() => watcher.close());
    const sub = await watcher.request({ type: 'subscribe', topics: ['room/a'], presence: true });
    assert.equal(sub.type, 'subscribed');
    // the watcher is a member too
    const events = () => watcher.frames.filter((f) => f.type === 'join' || f.type === 'leave');
    await waitFor(() => events().length === 1, 'the watcher\'s own join');

    const sse: RawSse = await openRawSse(`${server.http}/v1/sse?topic=room/a&client=tab-1`, { Authorization: `Bearer ${await token('alice', { info: { name: 'Alice' } })}` });
    open.push(() => sse.close());
    assert.equal(sse.status, 200);
    const bob = await ws(server, await token('bob'));
    open.push(() => bob.close());
    assert.equal((await bob.request({ type: 'subscribe', topics: ['room/a'], info: { name: 'Bob' } })).type, 'subscribed');
    const device = await RawClient.open(server, 5);
    open.push(() => device.close());
    assert.equal((await device.connect({ clientId: 'dev-1', keepalive: 1, username: 'x', password: Buffer.from(await token('carol')) })).returnCode ?? 0, 0);
    device.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/a', qos: 0 }] });
    assert.deepEqual(((await device.next('suback')) as { granted: number[] }).granted, [0]);
    // the device sends nothing more: no PINGREQ, so its keepalive runs out 1.5 s after this
    const deviceQuietSince = Date.now();
    const dave = await token('dave');
    const poll = await fetch(`${server.http}/v1/poll?topic=room/a&timeout=0&client=lp-1`, { headers: { Authorization: `Bearer ${dave}` } });
    assert.equal(poll.status, 200);
    await poll.arrayBuffer();
    const lastPollEnded = Date.now();

    const page = await waitFor(async () => {
      const l = await list(server, reader, 'room/a');
      return l.body.members?.length === 5 ? l : null;
    }, 'five members');
    assert.equal(page.status, 200);
    const bySub = new Map(page.body.members.map((m) => [m.sub, m]));
    assert.equal(bySub.get('alice')?.door, 'sse');
    assert.deepEqual(bySub.get('alice')?.info, { name: 'Alice' });
    assert.equal(bySub.get('bob')?.door, 'websocket');
    assert.deepEqual(bySub.get('bob')?.info, { name: 'Bob' });
    assert.equal(bySub.get('carol')?.door, 'mqtt');
    assert.equal(bySub.get('dave')?.door, 'longpoll');
    assert.equal(bySub.get('reader')?.door, 'websocket');
    assert.match(bySub.get('carol')!.id, /^carol\/dev-1$/);
    assert.equal(new Set(page.body.members.map((m) => m.connection)).size, 5);
    const stats = (await (await fetch(`${server.http}/v1/presence/stats?topic=room/a`, { headers: { Authorization: `Bearer ${reader}` } })).json()) as { connections: number; principals: number; position: number };
    assert.equal(stats.connections, 5);
    assert.equal(stats.principals, 5);
    assert.equal(stats.position, page.body.position);
    await waitFor(() => events().length === 5, 'five joins');

    const leaveOf = (s: string) => events().filter((f) => f.type === 'leave' && (f.member as Member).sub === s);
    // WebSocket without a client id: at once
    bob.close();
    await waitFor(() => leaveOf('bob').length === 1, 'bob leaves');
    // SSE with a client id: after leaveGrace
    const sseClosed = Date.now();
    sse.close();
    await waitFor(() => leaveOf('alice').length === 1, 'alice leaves');
    assert.ok(Date.now() - sseClosed >= 250, 'a member with a client id leaves after leaveGrace');
    // long-poll: pollGrace after its last poll
    await waitFor(() => leaveOf('dave').length === 1, 'dave leaves after the poll grace', 5000);
    const daveLeft = leaveOf('dave')[0].at as number;
    assert.ok(daveLeft - lastPollEnded >= 900, `a long-poller stays for pollGrace (1 s) after its poll; it left after ${daveLeft - lastPollEnded} ms`);
    // MQTT: when its keepalive (1 s, 1.5 s allowed) runs out, then leaveGrace
    await waitFor(() => leaveOf('carol').length === 1, 'carol leaves when her keepalive runs out', 6000);
    const carolLeft = leaveOf('carol')[0].at as number;
    assert.ok(carolLeft - deviceQuietSince >= 1500, `an MQTT member stays until its keepalive (1.5 s) runs out, plus leaveGrace; it left after ${carolLeft - deviceQuietSince} ms`);
    assert.ok(device.closed, 'the device was dropped for its keepalive');

    const all = events();
    for (const s of ['alice', 'bob', 'carol', 'dave']) {
      assert.equal(all.filter((f) => f.type === 'join' && (f.member as Member).sub === s).length, 1, `one join of ${s}`);
      assert.equal(leaveOf(s).length, 1, `one leave of ${s}`);
    }
    const positions = all.map((f) => f.position as number);
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b), 'positions grow');
    const left = await list(server, reader, 'room/a');
    assert.deepEqual(left.body.members.map((m) => m.sub), ['reader']);
  });

  it('pages a long list in id order with a cursor, and bounds the page size', async () => {
    const reader = await token('pager', { presence: ['room/#'] });
    const socks: Ws[] = [];
    for (let i = 0; i < 7; i++) {
      const s = await ws(server, await token(`p${i}`));
      open.push(() => s.close());
      await s.request({ type: 'subscribe', topics: ['room/paged'] });
      socks.push(s);
    }
    const seen: string[] = [];
    let cursor = '';
    let pages = 0;
    for (;;) {
      const l = await list(server, reader, 'room/paged', `&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(l.status, 200);
      assert.ok(l.body.members.length <= 3);
      seen.push(...l.body.members.map((m) => m.id));
      pages++;
      if (!l.body.cursor) break;
      cursor = l.body.cursor;
    }
    assert.equal(pages, 3);
    assert.equal(seen.length, 7);
    assert.deepEqual(seen, [...seen].sort());
    const big = await list(server, reader, 'room/paged', '&limit=100000');
    assert.equal(big.status, 400);
    assert.equal(big.body.error?.code, 'invalid_request');
  });

  it('a list read again after every change shows that change (the built list is reused only while nothing changed)', async () => {
    const reader = await token('rereader', { presence: ['room/#'] });
    const ids = async () => (await list(server, reader, 'room/reread')).body.members.map((m) => m.sub).sort();
    assert.deepEqual(await ids(), []);
    const a = await ws(server, await token('ra'));
    open.push(() => a.close());
    await a.request({ type: 'subscribe', topics: ['room/reread'] });
    assert.deepEqual(await ids(), ['ra']);
    assert.deepEqual(await ids(), ['ra'], 'read twice, same answer');
    // a wildcard member of another filter changes the list too
    const w = await ws(server, await token('rw'));
    open.push(() => w.close());
    await w.request({ type: 'subscribe', topics: ['room/+'] });
    assert.deepEqual(await ids(), ['ra', 'rw']);
    a.close();
    await waitFor(async () => (await ids()).join() === 'rw', 'ra gone from the list');
    w.close();
    await waitFor(async () => (await ids()).length === 0, 'the list empty');
    // the filter dropped and taken again: a new member, not the list built before
    const b = await ws(server, await token('rb'));
    open.push(() => b.close());
    await b.request({ type: 'subscribe', topics: ['room/reread'] });
    assert.deepEqual(await ids(), ['rb']);
  });

  it('refuses presence without the presence grant on every door; $presence/# is not matched by #', async () => {
    const none = await token('nogrant', { subscribe: ['#', '$presence/#'] });
    const l = await list(server, none, 'room/a');
    assert.equal(l.status, 403);
    assert.equal(l.body.error?.code, 'forbidden');
    const st = await fetch(`${server.http}/v1/presence/stats?topic=room/a`, { headers: { Authorization: `Bearer ${none}` } });
    assert.equal(st.status, 403);
    const sse = await openRawSse(`${server.http}/v1/sse?topic=room/a&presence=1`, { Authorization: `Bearer ${none}` });
    open.push(() => sse.close());
    assert.equal(sse.status, 403);
    assert.match(sse.text(), /"code":"forbidden"/);
    const w = await ws(server, none);
    open.push(() => w.close());
    for (const req of [{ type: 'presence', topic: 'room/a' }, { type: 'presence_stats', topic: 'room/a' }, { type: 'subscribe', topics: ['room/a'], presence: true }]) {
      const r = await w.request(req);
      assert.equal(r.type, 'error', JSON.stringify(req));
      assert.equal(r.code, 'forbidden');
    }
    const m = await RawClient.open(server, 5);
    open.push(() => m.close());
    await m.connect({ clientId: 'nogrant-1', username: 'x', password: Buffer.from(none) });
    m.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '$presence/room/a', qos: 0 }, { topic: '#', qos: 0 }] });
    assert.deepEqual(((await m.next('suback')) as { granted: number[] }).granted, [0x87, 0]);

    // with the grant, $presence/room/a carries events; `#` never does
    const yes = await token('granted', { presence: ['room/#'] });
    const g = await RawClient.open(server, 5);
    open.push(() => g.close());
    await g.connect({ clientId: 'granted-1', username: 'x', password: Buffer.from(yes) });
    g.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: '$presence/room/b', qos: 0 }] });
    assert.deepEqual(((await g.next('suback')) as { granted: number[] }).granted, [0]);
    const joiner = await ws(server, await token('joiner'));
    open.push(() => joiner.close());
    await joiner.request({ type: 'subscribe', topics: ['room/b'] });
    const ev = (await g.next('publish')) as { topic: string; payload: Buffer };
    assert.equal(ev.topic, '$presence/room/b');
    const body = JSON.parse(ev.payload.toString()) as { type: string; topic: string; member: Member; position: number };
    // a connection watches at most 64 topics: each is a watcher told of every join and leave
    const many = Array.from({ length: 70 }, (_, i) => ({ topic: `$presence/room/w${i}`, qos: 0 as const }));
    g.send({ cmd: 'subscribe', messageId: 4, subscriptions: many });
    const granted = ((await g.next('suback')) as { granted: number[] }).granted;
    assert.deepEqual(granted.slice(0, 63), Array(63).fill(0), 'room/b and 63 more are watched');
    assert.deepEqual(granted.slice(63), Array(7).fill(0x97), 'past 64: quota exceeded');
    assert.equal(body.type, 'join');
    assert.equal(body.member.sub, 'joiner');
    // m (subscribed to #) got the WebSocket's join on no topic at all
    await new Promise((r) => setImmediate(r));
    await waitFor(async () => (await list(server, yes, 'room/b')).body.members.some((x) => x.sub === 'joiner'), 'joiner listed');
    assert.equal(m.packets.filter((p) => p.cmd === 'publish').length, 0, '# matched no $presence message');
  });

  it('keeps topics without a rule free, and checks info and client ids', async () => {
    const reader = await token('r2', { presence: ['#'], subscribe: ['#'] });
    const nobody = await list(server, reader, 'other/x');
    assert.equal(nobody.status, 404);
    const sse = await openRawSse(`${server.http}/v1/sse?topic=quiet/x&presence=1`, { Authorization: `Bearer ${reader}` });
    open.push(() => sse.close());
    assert.equal(sse.status, 400, 'a rule without joinLeave sends no events');
    const w = await ws(server, reader);
    open.push(() => w.close());
    const big = await w.request({ type: 'subscribe', topics: ['room/c'], info: { blob: 'x'.repeat(100) } });
    assert.equal(big.type, 'error');
    assert.equal(big.code, 'invalid_request');
    const badClient = await fetch(`${server.http}/v1/poll?topic=room/c&timeout=0&client=${encodeURIComponent('a b')}`, { headers: { Authorization: `Bearer ${reader}` } });
    assert.equal(badClient.status, 400);
    const fatToken = await token('fat', { info: { blob: 'x'.repeat(100) } });
    const r = await fetch(`${server.http}/v1/poll?topic=room/c&timeout=0`, { headers: { Authorization: `Bearer ${fatToken}` } });
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /maxInfoBytes/);
  });
});

describe('presence limits', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, presence: { rules: [{ filter: 'small/+', joinLeave: true, maxMembers: 2 }], leaveGrace: 0 } });
  });
  after(() => server.close());

  it('lists at most maxMembers per filter; the one past it still gets its messages, and is neither joined nor left', async () => {
    const reader = await token('lim-reader', { presence: ['small/#'], subscribe: ['small/#'] });
    const socks: Ws[] = [];
    try {
      for (const s of ['first', 'second', 'third']) {
        const w = await ws(server, await token(s, { subscribe: ['small/#'] }));
        socks.push(w);
        assert.equal((await w.request({ type: 'subscribe', topics: ['small/x'] })).type, 'subscribed');
      }
      const l = await list(server, reader, 'small/x');
      assert.deepEqual(l.body.members.map((m) => m.sub).sort(), ['first', 'second']);
      const pub = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { Authorization: `Bearer ${await token('pub', { publish: ['small/#'] })}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'small/x', data: 'hi' }) });
      assert.equal(pub.status, 200);
      await waitFor(() => socks[2].frames.some((f) => f.type === 'message' && f.data === 'hi'), 'the unlisted subscriber gets the message');
      const stats = (await (await fetch(`${server.http}/v1/presence/stats?topic=small/x`, { headers: { Authorization: `Bearer ${reader}` } })).json()) as { connections: number };
      assert.equal(stats.connections, 2);
      const before = l.body.position;
      socks[2].close();
      // the unlisted member's close changes nothing: the first's leave is the next position
      socks[0].close();
      await waitFor(async () => (await list(server, reader, 'small/x')).body.members.length === 1, 'first leaves');
      const after1 = await list(server, reader, 'small/x');
      assert.equal(after1.body.position, before + 1);
      assert.deepEqual(after1.body.members.map((m) => m.sub), ['second']);
    } finally {
      for (const s of socks) s.close();
    }
  });
});

describe('presence and the server API', () => {
  const KEY = 'presence-admin-key-0123456789abcdef';
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } }, admin: { apiKeys: [KEY] }, presence: { rules: [{ filter: 'room/+' }], leaveGrace: 0 } });
  });
  after(() => server.close());

  it('an MQTT session unsubscribed by an operator leaves the member list', async () => {
    const reader = await token('api-reader', { presence: ['room/#'] });
    const device = await RawClient.open(server, 5);
    try {
      await device.connect({ clientId: 'api-dev', username: 'x', password: Buffer.from(await token('erin')) });
      device.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/api', qos: 0 }] });
      await device.next('suback');
      await waitFor(async () => (await list(server, reader, 'room/api')).body.members.some((m) => m.sub === 'erin'), 'erin listed');
      const r = await fetch(`${server.http}/v1/admin/unsubscribe`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ principal: 'erin', filter: 'room/api' }) });
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { removed: number }).removed, 1);
      assert.deepEqual((await list(server, reader, 'room/api')).body.members, []);
      assert.ok(!device.closed, 'the device stays connected');
    } finally {
      device.close();
    }
  });
});
