import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import { WebSocket } from 'ws';
import type { RunningServer } from '../src/server.js';
import type mqttPacket from 'mqtt-packet';
import { RawClient } from './helpers/mqtt.js';
import { MqttWs, OP } from './helpers/mqtt-ws.js';
import { RawWs } from './helpers/raw-ws.js';
import { spawnServer, startTestServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';
import { openRawSse, type RawSse } from './helpers/sse.js';
import { opensslMissing, selfSignedCert, type SelfSigned } from './helpers/tls-cert.js';

// A block the server writes goes to the kernel with a write(2) of its own when the socket's stream
// holds nothing (src/wire/socket-writer.ts). These tests look for what a mistake there shows a
// client: bytes out of order, bytes lost or doubled, plaintext on a TLS socket, bytes for a closed
// socket landing on the connection that got its fd next.

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** A payload of `size` bytes that names its index and whose body differs from every other's. */
function payload(tag: string, i: number, size = 2048): string {
  const head = `${tag}:${i}:`;
  const body = new Array<string>(size - head.length);
  for (let j = 0; j < body.length; j++) body[j] = ALPHABET[(i * 31 + j * 7) % ALPHABET.length];
  return head + body.join('');
}

/** Publishes `datas` on `topic` in one batch; returns the cursors in order. */
async function publishBatch(base: string, topic: string, datas: string[], dispatcher?: Agent): Promise<string[]> {
  const r = await fetch(`${base}/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: datas.map((data) => ({ topic, data })) }),
    dispatcher,
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return (JSON.parse(text) as { cursors: string[] }).cursors;
}

/** One message alone in its publish (the writer's `now` path). */
async function publishOne(base: string, topic: string, data: string, dispatcher?: Agent): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }), dispatcher });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return (JSON.parse(text) as { cursor: string }).cursor;
}

interface Sent {
  data: string[];
  cursors: string[];
}

/** Publishes messages `from`..`from + count - 1` of `tag` in batches of 100. */
async function publishRange(base: string, topic: string, tag: string, from: number, count: number, sent: Sent, dispatcher?: Agent): Promise<void> {
  for (let i = from; i < from + count; i += 100) {
    const datas = Array.from({ length: Math.min(100, from + count - i) }, (_, j) => payload(tag, i + j));
    sent.cursors.push(...(await publishBatch(base, topic, datas, dispatcher)));
    sent.data.push(...datas);
  }
}

/**
 * While the reader drains what piled up: batches and single publishes, each written while the
 * socket's stream may still hold bytes and the kernel already has room again.
 */
async function publishWhileDraining(base: string, topic: string, tag: string, from: number, sent: Sent): Promise<number> {
  let i = from;
  for (let round = 0; round < 10; round++) {
    await publishRange(base, topic, tag, i, 100, sent);
    i += 100;
    for (let k = 0; k < 5; k++, i++) {
      const data = payload(tag, i);
      sent.cursors.push(await publishOne(base, topic, data));
      sent.data.push(data);
    }
  }
  return i - from;
}

/** The marker every stream resumes after: no message can fall between subscribing and publishing. */
async function marker(base: string, topic: string, dispatcher?: Agent): Promise<string> {
  return publishOne(base, topic, 'marker', dispatcher);
}

/** The server's frames but its pings (the ping sweep may reach a socket at any time). */
function dataFrames(c: RawWs): RawWs['frames'] {
  return c.frames.filter((f) => !(f.opcode === 9 && f.fin && f.rsv === 0 && f.payload.length === 0));
}

/** Every frame but pings is a whole, final, unextended text frame; returns the parsed JSON of each. */
function wsTexts(c: RawWs): Array<Record<string, unknown>> {
  return dataFrames(c).map((f, n) => {
    assert.equal(f.opcode, 1, `frame ${n} is text (opcode ${f.opcode})`);
    assert.ok(f.fin, `frame ${n} is final`);
    assert.equal(f.rsv, 0, `frame ${n} has no reserved bits`);
    const text = f.payload.toString('utf8');
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return assert.fail(`frame ${n} is not JSON: ${text.slice(0, 60)}…`);
    }
  });
}

function messagesOf(c: RawWs): Array<Record<string, unknown>> {
  return wsTexts(c).filter((j) => j.type === 'message');
}

/** Where two payloads part, for a failure message. */
function differ(got: unknown, sent: string): string {
  const g = String(got);
  let k = 0;
  while (k < g.length && k < sent.length && g[k] === sent[k]) k++;
  return `${g.slice(0, 24)}… (${g.length} chars, differs from what was sent (${sent.length} chars) at char ${k}: ${JSON.stringify(g.slice(k, k + 16))})`;
}

/** `what` received exactly what was sent, once each and in order. */
function assertExactly(what: string, got: Array<{ cursor?: unknown; data?: unknown }>, sent: Sent): void {
  // what did arrive first: a broken stream shows where it broke before it shows a short count
  for (let i = 0; i < Math.min(got.length, sent.data.length); i++) {
    if (got[i].cursor !== sent.cursors[i] || got[i].data !== sent.data[i]) {
      assert.fail(`${what}: message ${i} has cursor ${String(got[i].cursor)} (sent ${sent.cursors[i]}) and data ${differ(got[i].data, sent.data[i])}`);
    }
  }
  assert.equal(got.length, sent.data.length, `${what}: message count`);
}

/**
 * Waits until `count()` reaches `n` or `stopped()`; gives up when the count stands still for 8 s
 * (a stream whose bytes no longer parse) or after 30 s. The caller's checks then say what is wrong.
 */
async function waitForCount(count: () => number, n: number, stopped: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = -1;
  let movedAt = Date.now();
  while (!stopped() && Date.now() < deadline) {
    const c = count();
    if (c >= n) return;
    if (c !== last) {
      last = c;
      movedAt = Date.now();
    } else if (Date.now() - movedAt > 8000) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An SSE stream over http or https (trusting `ca`), pausable; it must be answered 200. */
async function openSse(url: string, ca?: string): Promise<RawSse> {
  const s = await openRawSse(url, {}, ca);
  assert.equal(s.status, 200, `SSE answered ${s.status}`);
  return s;
}

/** Opens a raw WebSocket and subscribes it to `topic` after `since`; returns once `subscribed` came. */
async function rawSubscriber(base: string, topic: string, since: string): Promise<RawWs> {
  const c = await RawWs.open(base, '/v1/ws');
  assert.match(c.head, /^HTTP\/1\.1 101/);
  c.send(1, JSON.stringify({ type: 'subscribe', id: 'sub', topics: [topic], since }));
  await waitFor(() => c.texts().some((t) => (JSON.parse(t) as { type: string }).type === 'subscribed'), 'subscribed reply');
  return c;
}

describe('direct socket writes: a reader that stops and resumes', () => {
  let server: RunningServer;
  // 5000 × 2 KB piles up ~11 MB while the reader is stopped, under the queue bound: the kernel took
  // ~4 MB of it here (send buffer at most tcp_wmem's 4 MB, the stopped reader's receive buffer does
  // not grow), so a partial write and several MB in the socket's stream come before the reader resumes
  const PAUSED = 5000;
  before(async () => {
    server = await startTestServer({ limits: { maxQueueBytes: 64 * 1024 * 1024 } });
  });
  after(() => server.close());

  it('WebSocket: every frame whole, every message once and in order', async () => {
    const topic = 'direct/ws';
    const c = await rawSubscriber(server.http, topic, await marker(server.http, topic));
    try {
      c.sock.pause();
      const sent: Sent = { data: [], cursors: [] };
      await publishRange(server.http, topic, 'ws', 0, PAUSED, sent);
      c.sock.resume();
      await publishWhileDraining(server.http, topic, 'ws', PAUSED, sent);
      await waitForCount(() => dataFrames(c).length, sent.data.length + 1, () => c.closed);
      assertExactly('websocket', messagesOf(c), sent);
      assert.ok(!c.closed, 'the socket stayed open');
      assert.equal(dataFrames(c).length, sent.data.length + 1, 'nothing but the subscribed reply and the messages');
    } finally {
      c.sock.destroy();
    }
  });

  it('SSE: every event whole, once and in order', async () => {
    const topic = 'direct/sse';
    const s = await openSse(`${server.http}/v1/sse?topic=${encodeURIComponent(topic)}&since=${await marker(server.http, topic)}`);
    try {
      s.pause();
      const sent: Sent = { data: [], cursors: [] };
      await publishRange(server.http, topic, 'sse', 0, PAUSED, sent);
      s.resume();
      await publishWhileDraining(server.http, topic, 'sse', PAUSED, sent);
      await waitForCount(() => s.events().length, sent.data.length, () => s.done());
      assertExactly(
        'sse',
        s.events().map((e) => ({ cursor: e.id, data: e.data })),
        sent,
      );
      assert.deepEqual([...new Set(s.events().map((e) => e.event))], ['message']);
      assert.ok(!s.done(), 'the stream stayed open');
    } finally {
      s.close();
    }
  });

  it('MQTT over TCP, QoS 0: every PUBLISH whole, once and in order', async () => {
    const topic = 'direct/mqtt';
    const c = await RawClient.open(server, 4);
    try {
      assert.equal((await c.connect({ clientId: 'direct-reader' })).returnCode, 0);
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] });
      await c.next('suback');
      c.socket.pause();
      const sent: Sent = { data: [], cursors: [] };
      await publishRange(server.http, topic, 'mqtt', 0, PAUSED, sent);
      c.socket.resume();
      await publishWhileDraining(server.http, topic, 'mqtt', PAUSED, sent);
      await waitForCount(() => c.packets.length, sent.data.length, () => c.closed);
      const got = c.packets.map((p, n) => {
        assert.equal(p.cmd, 'publish', `packet ${n} is a PUBLISH, not ${p.cmd}`);
        const pub = p as { topic: string; payload: Buffer | string; qos: number };
        assert.equal(pub.topic, topic, `packet ${n} topic`);
        assert.equal(pub.qos, 0, `packet ${n} QoS`);
        return pub.payload.toString();
      });
      for (let i = 0; i < Math.min(got.length, sent.data.length); i++) if (got[i] !== sent.data[i]) assert.fail(`PUBLISH ${i} carries ${differ(got[i], sent.data[i])}`);
      assert.equal(got.length, sent.data.length, 'PUBLISH count');
      assert.ok(!c.closed, 'the connection stayed open');
    } finally {
      c.close();
    }
  });

  it('MQTT over WebSocket, QoS 0: every frame whole, every PUBLISH once and in order', async () => {
    const topic = 'direct/mqtt-ws';
    const c = await MqttWs.open(server, 4);
    try {
      await c.connect('direct-ws-reader');
      c.ws.send(OP.binary, c.bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
      await c.packet('suback');
      c.ws.sock.pause();
      const sent: Sent = { data: [], cursors: [] };
      await publishRange(server.http, topic, 'mqttws', 0, PAUSED, sent);
      c.ws.sock.resume();
      await publishWhileDraining(server.http, topic, 'mqttws', PAUSED, sent);
      const publishes = (): mqttPacket.IPublishPacket[] => c.packets().filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
      await waitForCount(() => publishes().length, sent.data.length, () => c.ws.closed);
      const got = publishes().map((p, n) => {
        assert.equal(p.topic, topic, `packet ${n} topic`);
        return p.payload.toString();
      });
      for (let i = 0; i < Math.min(got.length, sent.data.length); i++) if (got[i] !== sent.data[i]) assert.fail(`PUBLISH ${i} carries ${differ(got[i], sent.data[i])}`);
      assert.equal(got.length, sent.data.length, 'PUBLISH count');
      assert.deepEqual(c.packets().map((p) => p.cmd).slice(0, 2), ['connack', 'suback']);
      for (const f of c.ws.frames) assert.ok(f.fin && f.rsv === 0 && f.opcode === OP.binary, `a final binary frame, not opcode ${f.opcode}`);
      assert.ok(!c.ws.closed, 'the socket stayed open');
    } finally {
      c.ws.sock.destroy();
    }
  });
});

describe('direct socket writes: TLS sockets', { skip: opensslMissing || undefined }, () => {
  const dir = tempDir('omnipush-direct-tls-');
  let cert: SelfSigned;
  let server: RunningServer;
  let agent: Agent;
  before(async () => {
    cert = selfSignedCert(dir.path);
    server = await startTestServer({ http: { tls: { cert: cert.certFile, key: cert.keyFile } } });
    agent = new Agent({ connect: { ca: cert.cert } });
  });
  after(async () => {
    await agent?.close();
    await server?.close();
    dir.remove();
  });

  it('a wss:// subscriber and an SSE-over-https subscriber get 200 messages intact and in order', async () => {
    const topic = 'direct/tls';
    const since = await marker(server.http, topic, agent);
    const ws = new WebSocket(`${server.http.replace(/^https/, 'wss')}/v1/ws`, { ca: cert.cert });
    const frames: Array<Record<string, unknown>> = [];
    const errors: string[] = [];
    let wsClosed = false;
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (isBinary) errors.push('binary frame');
      else frames.push(JSON.parse(d.toString()) as Record<string, unknown>);
    });
    ws.on('error', (e) => errors.push(String(e)));
    ws.on('close', () => (wsClosed = true));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const sse = await openSse(`${server.http}/v1/sse?topic=${encodeURIComponent(topic)}&since=${since}`, cert.cert);
    try {
      ws.send(JSON.stringify({ type: 'subscribe', id: 'sub', topics: [topic], since }));
      await waitFor(() => wsClosed || errors.length > 0 || frames.some((f) => f.type === 'subscribed'), 'subscribed over wss');
      assert.deepEqual(errors, [], 'wss subscriber errors');
      assert.ok(!wsClosed, 'the wss socket stayed open');
      const sent: Sent = { data: [], cursors: [] };
      // batches (a block per tick) and singles (written at once) alike
      await publishRange(server.http, topic, 'tls', 0, 150, sent, agent);
      for (let i = 150; i < 200; i++) {
        const data = payload('tls', i);
        sent.cursors.push(await publishOne(server.http, topic, data, agent));
        sent.data.push(data);
      }
      const wsMessages = () => frames.filter((f) => f.type === 'message');
      await waitFor(() => wsClosed || sse.done() || (wsMessages().length >= 200 && sse.events().length >= 200), '200 messages on both', 15_000);
      assert.deepEqual(errors, [], 'wss subscriber errors');
      assert.ok(!wsClosed, 'the wss socket stayed open');
      assert.ok(!sse.done(), 'the https stream stayed open');
      assertExactly('wss', wsMessages(), sent);
      assert.equal(frames.length, 201, 'nothing but the subscribed reply and the messages over wss');
      assertExactly(
        'sse over https',
        sse.events().map((e) => ({ cursor: e.id, data: e.data })),
        sent,
      );
    } finally {
      ws.terminate();
      sse.close();
    }
  });
});

/** The fd the server process `pid` holds for its side of the TCP connection from local port `clientPort`, or undefined. */
function serverFd(pid: number, clientPort: number): number | undefined {
  const inodes = new Set<string>();
  for (const file of ['tcp', 'tcp6']) {
    let table: string;
    try {
      table = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const remotePort = parseInt(f[2].split(':')[1], 16);
      if (remotePort === clientPort) inodes.add(f[9]);
    }
  }
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1])) return Number(name);
  }
  return undefined;
}

describe('direct socket writes: a socket the server closed is never written again, even when its fd is reused', { skip: process.platform !== 'linux' ? 'reads /proc to see which fd the server gave a connection' : undefined }, () => {
  const dir = tempDir('omnipush-direct-fd-');
  // its own process: only the server's sockets take fds there, so the next accept gets the freed one
  let child: ChildServer;
  before(async () => {
    const file = join(dir.path, 'config.json');
    writeFileSync(file, JSON.stringify({ http: { host: '127.0.0.1' }, store: { kind: 'memory' }, limits: { maxQueueBytes: 256 * 1024 }, log: { level: 'warn' } }));
    child = await spawnServer(['--config', file]);
  });
  after(async () => {
    await child?.stop();
    dir.remove();
  });

  const slowCloses = async (transport: string) => {
    const text = await (await fetch(`${child.http}/metrics`)).text();
    return Number(new RegExp(`omnipush_queue_closes_total\\{transport="${transport}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  };

  /**
   * Publishes 2 KB messages in batches until the server has closed one more `transport` subscriber
   * as slow; returns what it published.
   */
  const overflow = async (topic: string, transport: string): Promise<Sent> => {
    const before = await slowCloses(transport);
    const sent: Sent = { data: [], cursors: [] };
    while ((await slowCloses(transport)) === before) {
      assert.ok(sent.data.length < 20_000, `no slow-consumer close of ${transport} after ${sent.data.length} messages`);
      await publishRange(child.http, topic, 'old', sent.data.length, 100, sent);
    }
    return sent;
  };

  /** What a cut subscriber got is whole and in order: the first `got.length` of what was sent. */
  const assertPrefix = (what: string, got: unknown[], sent: Sent) => {
    assert.ok(got.length < sent.data.length, `${what}: cut before the end (${got.length} of ${sent.data.length})`);
    for (let i = 0; i < got.length; i++) if (got[i] !== sent.data[i]) assert.fail(`${what}: message ${i} carries ${differ(got[i], sent.data[i])}`);
  };

  /** `fd` in the server no longer holds the connection `clientPort` had. */
  const freed = (fd: number, clientPort: number) => waitFor(() => serverFd(child.proc.pid!, clientPort) !== fd, `the server to close fd ${fd}`);

  /** The fresh subscriber on the reused fd gets its own subscription's messages, whole and once, and nothing else. */
  const checkFresh = async (fresh: RawWs, topic: string) => {
    const sent: Sent = { data: [], cursors: [] };
    await publishRange(child.http, topic, 'new', 0, 200, sent);
    for (let i = 200; i < 250; i++) {
      const data = payload('new', i);
      sent.cursors.push(await publishOne(child.http, topic, data));
      sent.data.push(data);
    }
    // a ping's pong comes after everything queued before it: nothing more is on its way
    fresh.send(1, JSON.stringify({ type: 'ping', id: 'last' }));
    await waitFor(() => fresh.closed || fresh.texts().some((t) => t.includes('"last"')), 'the pong', 15_000);
    assert.ok(!fresh.closed, 'the fresh socket stayed open');
    const all = wsTexts(fresh);
    assert.deepEqual(
      all.filter((j) => j.type !== 'message').map((j) => j.type),
      ['subscribed', 'pong'],
    );
    assertExactly('fresh subscriber', messagesOf(fresh), sent);
  };

  it('WebSocket closed as a slow consumer (4008): the next socket on its fd gets only its own frames', async () => {
    const topic = 'reuse/ws';
    const pid = child.proc.pid!;
    const slow = await rawSubscriber(child.http, topic, await publishOne(child.http, topic, 'marker'));
    const slowPort = slow.sock.localPort!;
    slow.sock.pause();
    const oldFd = serverFd(pid, slowPort);
    assert.ok(oldFd !== undefined, 'the server side of the slow socket is found');
    const old = await overflow(topic, 'websocket');
    // reading again: a whole prefix, then the close frame; our side closes and so does the server's
    slow.sock.resume();
    await slow.expectClose(4008, 'the slow socket');
    const frames = dataFrames(slow);
    assert.equal(frames.at(-1)!.opcode, 8, 'the close frame comes last');
    assertPrefix(
      'slow socket',
      frames.slice(0, -1).map((f, n) => {
        assert.equal(f.opcode, 1, `slow socket frame ${n} is text`);
        return (JSON.parse(f.payload.toString()) as { data?: string }).data;
      }).slice(1),
      old,
    );
    await freed(oldFd, slowPort);
    const fresh = await rawSubscriber(child.http, topic, old.cursors.at(-1)!);
    try {
      assert.equal(serverFd(pid, fresh.sock.localPort!), oldFd, "the fresh socket has the closed one's fd");
      await checkFresh(fresh, topic);
    } finally {
      fresh.sock.destroy();
    }
  });

  it('SSE stream cut as a slow consumer: the next socket on its fd gets only its own frames', async () => {
    const topic = 'reuse/sse';
    const pid = child.proc.pid!;
    const slow = await openSse(`${child.http}/v1/sse?topic=${encodeURIComponent(topic)}&since=${await publishOne(child.http, topic, 'marker')}`);
    slow.pause();
    const slowPort = slow.localPort;
    const oldFd = serverFd(pid, slowPort);
    assert.ok(oldFd !== undefined, 'the server side of the stream is found');
    // the server drops the stream itself at the bound: its fd is free at once
    const old = await overflow(topic, 'sse');
    await freed(oldFd, slowPort);
    const fresh = await rawSubscriber(child.http, topic, old.cursors.at(-1)!);
    try {
      assert.equal(serverFd(pid, fresh.sock.localPort!), oldFd, "the fresh socket has the closed stream's fd");
      await checkFresh(fresh, topic);
      // what reached the cut stream's kernel buffers before the cut: whole events, in order, then the end
      slow.resume();
      await waitFor(() => slow.done(), 'the cut stream to end');
      assertPrefix(
        'cut stream',
        slow.events().map((e) => e.data),
        old,
      );
    } finally {
      fresh.sock.destroy();
      slow.close();
    }
  });
});
