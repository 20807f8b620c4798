/**
 * Malformed and mutated MQTT input over raw TCP against the real server, for a bounded time.
 *
 * Every case is one connection. Its bytes come from a PRNG seeded with the run's seed and the
 * case's index, so a failing case is replayed with OMNIPUSH_PROPERTY_SEED and reported with its
 * bytes. What the broker must do depends on the bytes:
 * - targeted violations (wildcards or bad UTF-8 in a topic, duplicated properties, an unsupported
 *   protocol level, packets before CONNECT, a second CONNECT, reserved bits, ...) are ones the
 *   standard says end the connection: the broker closes it and answers none of what follows;
 * - random mutations (bit flips, bytes set or inserted, truncation, rewritten remaining lengths)
 *   may happen to be valid, so a PINGREQ is appended as a probe: the broker answers it or closes;
 * - a packet whose header declares more than the maximum packet size, or a remaining length of
 *   five bytes, is closed on at once, without waiting for a body that will never be accepted;
 * - a stream that stops inside a packet gets a FIN from us, and the broker then closes.
 * Meanwhile an MQTT.js client publishes and receives its own messages, the server's memory stays
 * bounded, and at the end no fuzz connection is left open on the server.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { connectAsync, type MqttClient } from 'mqtt';
import { generate, type Packet } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { prng } from './helpers/prng.js';
import { startTestServer, waitFor } from './helpers/server.js';

const SEED = Number(process.env.OMNIPUSH_PROPERTY_SEED ?? Date.now() % 1e9);
/** How long new cases keep starting; the whole test stays near 10 s. */
const FUZZ_MS = 7000;
const MAX_CASES = 4000;
const PARALLEL = 16;
/** Time the broker has to answer the probe or close, per case. */
const ANSWER_MS = 4000;
const MAX_PACKET = 64 * 1024;
/** The standard's largest remaining length (four bytes of seven bits). */
const MAX_REMAINING = 268_435_455;
const HEAP_BOUND = 64 * 1024 * 1024;

type Rnd = () => number;
type Version = 4 | 5;

const int = (r: Rnd, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rnd, xs: readonly T[]): T => xs[int(r, xs.length)];

// ---------------------------------------------------------------- packet bytes

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function frame(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(body.length), body]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A length-prefixed string, from raw bytes (so it can be ill-formed on purpose). */
function str(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return Buffer.concat([u16(b.length), b]);
}

/** v5 property block: its varint length, then the given raw properties. */
function props(...p: Buffer[]): Buffer {
  const body = Buffer.concat(p);
  return Buffer.concat([varint(body.length), body]);
}

function gen(p: Packet, v: Version): Buffer {
  return generate(p, { protocolVersion: v });
}

const PINGREQ = Buffer.from([0xc0, 0x00]);

function validConnect(v: Version, clientId: string): Buffer {
  return gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId, clean: true, keepalive: 60 }, v);
}

/** CONNECT built by hand: any protocol name and level, raw v5 properties. */
function rawConnect(opts: { name?: string; level: number; clientId: Buffer | string; v5props?: Buffer }): Buffer {
  const head = Buffer.concat([str(opts.name ?? 'MQTT'), Buffer.from([opts.level, 0x02]), u16(60)]);
  return frame(0x10, Buffer.concat([head, opts.v5props ?? Buffer.alloc(0), str(opts.clientId)]));
}

/** PUBLISH built by hand: any topic bytes, flags and raw v5 properties. */
function rawPublish(opts: { v: Version; topic: Buffer | string; qos?: number; id?: number; v5props?: Buffer; payload?: Buffer }): Buffer {
  const qos = opts.qos ?? 0;
  const parts = [str(opts.topic)];
  if (qos > 0) parts.push(u16(opts.id ?? 1));
  if (opts.v === 5) parts.push(opts.v5props ?? props());
  parts.push(opts.payload ?? Buffer.from('x'));
  return frame(0x30 | (qos << 1), Buffer.concat(parts));
}

/** A few valid packets a connected client might send. */
function validPacket(r: Rnd, v: Version, i: number): Buffer {
  const topic = `fz/${i}/${int(r, 4)}`;
  const id = 1 + int(r, 0xfffe);
  const payload = Buffer.from(Array.from({ length: int(r, 120) }, () => int(r, 256)));
  switch (int(r, 8)) {
    case 0:
    case 1: {
      const qos = int(r, 3) as 0 | 1 | 2;
      const properties = v === 5 && r() < 0.6 ? { payloadFormatIndicator: false, messageExpiryInterval: 1 + int(r, 3600), contentType: 'application/octet-stream', userProperties: { a: 'b', c: ['d', 'e'] } } : undefined;
      return gen({ cmd: 'publish', topic, payload, qos, retain: r() < 0.1, dup: false, messageId: qos > 0 ? id : undefined, properties }, v);
    }
    case 2:
      return gen({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic: pick(r, [`${topic}/#`, 'fz/+/x', topic]), qos: int(r, 3) as 0 | 1 | 2 }], properties: v === 5 && r() < 0.5 ? { subscriptionIdentifier: 1 + int(r, 1000) } : undefined }, v);
    case 3:
      return gen({ cmd: 'unsubscribe', messageId: id, unsubscriptions: [topic] }, v);
    case 4:
      return PINGREQ;
    case 5:
      return gen({ cmd: pick(r, ['puback', 'pubrec', 'pubcomp'] as const), messageId: id }, v);
    case 6:
      return gen({ cmd: 'pubrel', messageId: id }, v);
    default:
      return gen({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, v);
  }
}

// ---------------------------------------------------------------- cases

type Expect =
  /** the broker must close; nothing after the bad packet may be answered */
  | 'close'
  /** the probe (a PINGREQ at the end) gets a PINGRESP, or the broker closes */
  | 'answer-or-close'
  /** the bytes stop inside a packet: we send FIN and the broker must close */
  | 'close-after-fin';

/**
 * What CONNACKs may come: `accepted` at most one, accepting (a valid CONNECT came first);
 * `refused` none that accepts; `unsupported` exactly one, with 0x01 (3.1.1) or 0x84 (5.0), as an
 * unsupported protocol level requires; `none` none at all (no CONNECT was sent).
 */
type Connack = 'accepted' | 'refused' | 'unsupported' | 'none';

interface FuzzCase {
  index: number;
  name: string;
  bytes: Buffer;
  expect: Expect;
  connack?: Connack;
  /**
   * PINGREQs ahead of the end (`answer-or-close`: the broker answers them all or closes) or ahead of
   * the violation (`close`: it answers no more than these)
   */
  pings: number;
  /** where the written bytes are split (exercises the broker's framer across reads) */
  splits: number[];
}

/**
 * How the broker must read a byte stream, judging the framing alone: a five-byte remaining length
 * or one above the maximum packet size must be closed on at once; a stream ending inside a packet
 * is waiting for its end; anything else is whole packets.
 */
function framing(b: Buffer): { kind: 'bad' | 'partial' | 'whole'; pings: number } {
  let off = 0;
  let pings = 0;
  while (off < b.length) {
    let len = 0;
    let mul = 1;
    let p = off + 1;
    for (;;) {
      if (p >= b.length) return { kind: 'partial', pings };
      if (p - off > 4) return { kind: 'bad', pings };
      const x = b[p++];
      len += (x & 0x7f) * mul;
      mul *= 128;
      if ((x & 0x80) === 0) break;
    }
    if (len > MAX_PACKET) return { kind: 'bad', pings };
    if (p + len > b.length) return { kind: 'partial', pings };
    // a PINGREQ is owed its answer; one with a body is malformed and may end the connection instead
    if (b[off] >> 4 === 12) pings++;
    off = p + len;
  }
  return { kind: 'whole', pings };
}

/**
 * Targeted violations: each one the standard says ends the connection. `probe: false` where the
 * CONNECT itself is refused: bytes left unread when the broker closes would turn its FIN into a
 * reset, which can destroy the CONNACK before we read it.
 */
function targeted(r: Rnd, v: Version, i: number): { name: string; bytes: Buffer[]; connack: Connack; probe?: false } {
  const id = `fz${i}`;
  const kinds = [
    'wildcard topic',
    'ill-formed UTF-8 topic',
    'NUL in topic',
    'ill-formed UTF-8 client id',
    'ill-formed UTF-8 filter',
    'bad protocol level',
    'bad protocol name',
    'packet before CONNECT',
    'second CONNECT',
    'QoS 3 publish',
    'reserved SUBSCRIBE flags',
    'SUBSCRIBE without filters',
    'QoS 1 publish with packet id 0',
    'five-byte remaining length',
    'remaining length above the maximum packet size',
    ...(v === 5 ? ['duplicate CONNECT property', 'duplicate PUBLISH property', 'topic alias 0', 'subscription identifier 0'] : []),
  ];
  const kind = pick(r, kinds);
  const badUtf8 = pick(r, [Buffer.from([0xc3, 0x28]), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0x80]), Buffer.from([0xe2, 0x82])]);
  const conn = validConnect(v, id);
  const ok = (bad: Buffer) => ({ name: kind, bytes: [conn, bad], connack: 'accepted' as const });
  switch (kind) {
    case 'wildcard topic':
      return ok(rawPublish({ v, topic: pick(r, ['fz/+', '#', 'fz/#/x', '+', 'fz/a+', 'fz/#']) }));
    case 'ill-formed UTF-8 topic':
      return ok(rawPublish({ v, topic: Buffer.concat([Buffer.from('fz/'), badUtf8]) }));
    case 'NUL in topic':
      return ok(rawPublish({ v, topic: Buffer.from('fz/\u0000/x') }));
    case 'ill-formed UTF-8 client id':
      return { name: kind, bytes: [rawConnect({ level: v, clientId: Buffer.concat([Buffer.from('fz'), badUtf8]), v5props: v === 5 ? props() : undefined })], connack: 'refused', probe: false };
    case 'ill-formed UTF-8 filter':
      return ok(frame(0x82, Buffer.concat([u16(7), v === 5 ? props() : Buffer.alloc(0), str(Buffer.concat([Buffer.from('fz/'), badUtf8])), Buffer.from([0])])));
    case 'bad protocol level': {
      // 0x80 is the bridge bit of a Mosquitto extension, which brokers mask off: 0x84 would be level 4
      const level = pick(r, [0, 1, 2, 6, 7, 0x86, 0xff]);
      return { name: `${kind} ${level}`, bytes: [rawConnect({ level, clientId: id })], connack: 'unsupported', probe: false };
    }
    case 'bad protocol name':
      return { name: kind, bytes: [rawConnect({ name: pick(r, ['MQTX', 'mqtt', 'MQIsdp', '']), level: 4, clientId: id })], connack: 'refused', probe: false };
    case 'packet before CONNECT':
      return { name: kind, bytes: [pick(r, [rawPublish({ v: 4, topic: 'fz/x' }), PINGREQ, gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fz/#', qos: 0 }] }, 4), gen({ cmd: 'puback', messageId: 3 }, 4)])], connack: 'none' };
    case 'second CONNECT':
      return ok(validConnect(v, pick(r, [id, `${id}b`])));
    case 'QoS 3 publish':
      return ok(Buffer.concat([Buffer.from([0x36]), rawPublish({ v, topic: 'fz/q', qos: 1 }).subarray(1)]));
    case 'reserved SUBSCRIBE flags':
      return ok(Buffer.concat([Buffer.from([0x80]), gen({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'fz/#', qos: 0 }] }, v).subarray(1)]));
    case 'SUBSCRIBE without filters':
      return ok(frame(0x82, Buffer.concat([u16(9), v === 5 ? props() : Buffer.alloc(0)])));
    case 'QoS 1 publish with packet id 0':
      return ok(rawPublish({ v, topic: 'fz/id', qos: 1, id: 0 }));
    case 'five-byte remaining length':
      return ok(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1, 0x61]));
    case 'remaining length above the maximum packet size':
      return ok(Buffer.concat([Buffer.from([pick(r, [0x30, 0x32, 0x82, 0xc0])]), varint(MAX_PACKET + 1 + int(r, MAX_REMAINING - MAX_PACKET)), Buffer.from([0, 1, 0x61])]));
    case 'duplicate CONNECT property': {
      const sessionExpiry = Buffer.from([0x11, 0, 0, 0, 10]);
      return { name: kind, bytes: [rawConnect({ level: 5, clientId: id, v5props: props(sessionExpiry, sessionExpiry) })], connack: 'refused', probe: false };
    }
    case 'duplicate PUBLISH property':
      return ok(rawPublish({ v, topic: 'fz/dup', v5props: pick(r, [props(Buffer.from([0x01, 0x01, 0x01, 0x00])), props(Buffer.from([0x02, 0, 0, 0, 5, 0x02, 0, 0, 0, 6])), props(Buffer.from([0x23, 0, 1, 0x23, 0, 2]))]) }));
    case 'topic alias 0':
      return ok(rawPublish({ v, topic: 'fz/alias', v5props: props(Buffer.from([0x23, 0, 0])) }));
    default:
      // subscription identifier 0 is a protocol error
      return ok(frame(0x82, Buffer.concat([u16(4), props(Buffer.from([0x0b, 0x00])), str('fz/#'), Buffer.from([0])])));
  }
}

const MUTATIONS = ['bit flips', 'bytes set', 'bytes inserted', 'truncated', 'remaining length rewritten', 'random packet', 'huge remaining length'] as const;

function mutate(r: Rnd, b: Buffer): { name: string; bytes: Buffer } {
  const m = pick(r, MUTATIONS);
  const out = Buffer.from(b);
  switch (m) {
    case 'bit flips':
      for (let k = 1 + int(r, 4); k > 0; k--) out[int(r, out.length)] ^= 1 << int(r, 8);
      return { name: m, bytes: out };
    case 'bytes set':
      for (let k = 1 + int(r, 3); k > 0; k--) out[int(r, out.length)] = pick(r, [0x00, 0xff, 0x7f, 0x80, 0x2b, 0x23, 0xc0, 0xed, int(r, 256)]);
      return { name: m, bytes: out };
    case 'bytes inserted': {
      const at = int(r, out.length + 1);
      const extra = Buffer.from(Array.from({ length: 1 + int(r, 8) }, () => int(r, 256)));
      return { name: m, bytes: Buffer.concat([out.subarray(0, at), extra, out.subarray(at)]) };
    }
    case 'truncated':
      return { name: m, bytes: out.subarray(0, 1 + int(r, Math.max(1, out.length - 1))) };
    case 'remaining length rewritten': {
      // the first packet keeps its body but claims another length: shorter ones desynchronise the stream
      let p = 1;
      while (p < out.length && out[p] & 0x80) p++;
      const len = pick(r, [0, 1, int(r, 300), int(r, MAX_PACKET), MAX_PACKET + 1 + int(r, 1000)]);
      return { name: `${m} to ${len}`, bytes: Buffer.concat([out.subarray(0, 1), varint(len), out.subarray(p + 1)]) };
    }
    case 'random packet': {
      const body = Buffer.from(Array.from({ length: int(r, 64) }, () => int(r, 256)));
      return { name: m, bytes: Buffer.concat([out, frame(int(r, 256), body)]) };
    }
    default:
      return { name: m, bytes: Buffer.concat([out, Buffer.from([pick(r, [0x30, 0x82, 0xa2, 0xf0])]), varint(MAX_PACKET + 1 + int(r, MAX_REMAINING - MAX_PACKET))]) };
  }
}

function makeCase(index: number): FuzzCase {
  const r = prng((SEED + Math.imul(index, 0x9e3779b1)) >>> 0);
  const v: Version = r() < 0.5 ? 4 : 5;
  let name: string;
  let bytes: Buffer;
  let expect: Expect;
  let connack: FuzzCase['connack'];
  let pings = 0;
  if (r() < 0.4) {
    const t = targeted(r, v, index);
    name = `v${v} ${t.name}`;
    bytes = Buffer.concat(t.probe === false ? t.bytes : [...t.bytes, PINGREQ]);
    expect = 'close';
    connack = t.connack;
  } else {
    const conn = validConnect(v, `fz${index}`);
    const rest = Buffer.concat(Array.from({ length: 1 + int(r, 4) }, () => validPacket(r, v, index)));
    // mostly the packets after CONNECT, sometimes the CONNECT itself
    const inConnect = r() < 0.25;
    const m = mutate(r, inConnect ? conn : rest);
    name = `v${v} ${m.name}${inConnect ? ' (CONNECT)' : ''}`;
    bytes = inConnect ? Buffer.concat([m.bytes, rest]) : Buffer.concat([conn, m.bytes]);
    const f = framing(bytes);
    pings = f.pings;
    if (f.kind === 'whole') {
      bytes = Buffer.concat([bytes, PINGREQ]);
      pings++;
      expect = 'answer-or-close';
    } else expect = f.kind === 'bad' ? 'close' : 'close-after-fin';
  }
  const splits = Array.from({ length: int(r, 3) }, () => 1 + int(r, bytes.length - 1)).sort((a, b) => a - b);
  return { index, name, bytes, expect, connack, pings, splits };
}

// ---------------------------------------------------------------- running a case

interface Outcome {
  /** packet types the broker sent, in order (high nibble of each frame's first byte) */
  types: number[];
  /** return/reason code of each CONNACK */
  connackCodes: number[];
  closed: boolean;
}

/** Splits the broker's output into frames, recording types and CONNACK codes. */
function readReplies(sock: Socket, out: Outcome): void {
  let buf = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      let len = 0;
      let mul = 1;
      let p = 1;
      let whole = false;
      while (p < buf.length && p <= 4) {
        const x = buf[p++];
        len += (x & 0x7f) * mul;
        mul *= 128;
        if ((x & 0x80) === 0) {
          whole = true;
          break;
        }
      }
      if (!whole || p + len > buf.length) return;
      const type = buf[0] >> 4;
      out.types.push(type);
      if (type === 2 && len >= 2) out.connackCodes.push(buf[p + 1]);
      buf = buf.subarray(p + len);
    }
  });
}

async function runCase(addr: { host: string; port: number }, c: FuzzCase): Promise<string | null> {
  const out: Outcome = { types: [], connackCodes: [], closed: false };
  const sock = connect(addr.port, addr.host);
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  readReplies(sock, out);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  void closed.then(() => (out.closed = true));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('close', () => reject(new Error('refused')));
  }).catch(() => undefined);
  let from = 0;
  for (const at of [...c.splits, c.bytes.length]) {
    if (sock.destroyed || out.closed) break;
    sock.write(c.bytes.subarray(from, at));
    from = at;
    // let the broker read this piece on its own
    await new Promise((r) => setImmediate(r));
  }
  if (c.expect === 'close-after-fin' && !sock.destroyed) sock.end();
  const PINGRESP = 13;
  const pingresps = () => out.types.filter((x) => x === PINGRESP).length;
  try {
    const answered = c.expect === 'answer-or-close' ? c.pings : Infinity;
    await waitFor(() => out.closed || pingresps() >= answered, 'answer or close', ANSWER_MS);
  } catch {
    sock.destroy();
    return `neither ${c.expect === 'answer-or-close' ? 'answered the probe nor ' : ''}closed within ${ANSWER_MS} ms (replies: ${out.types.join(',') || 'none'})`;
  }
  const codes = out.connackCodes;
  let problem: string | null = null;
  if (c.expect === 'close' && pingresps() > c.pings) problem = `answered a PINGREQ sent after the violation (replies: ${out.types.join(',')})`;
  else if (c.connack === 'none' && codes.length > 0) problem = `sent a CONNACK (code ${codes[0]}) to a client that sent no CONNECT`;
  else if (c.connack === 'refused' && codes.includes(0)) problem = 'accepted the CONNECT (CONNACK 0)';
  else if (c.connack === 'unsupported' && (codes.length !== 1 || (codes[0] !== 0x01 && codes[0] !== 0x84))) problem = `answered an unsupported protocol level with CONNACK codes [${codes.join(',')}], not one 0x01 or 0x84`;
  else if (c.connack === 'accepted' && (codes.length > 1 || codes.some((x) => x !== 0))) problem = `sent CONNACK codes [${codes.join(',')}] for one valid CONNECT`;
  sock.destroy();
  await closed;
  return problem;
}

// ---------------------------------------------------------------- the test

/** Live MQTT connections the server reports on /metrics. */
async function mqttConnections(http: string): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const m = /^omnipush_connections\{transport="mqtt"\} (\d+)/m.exec(text);
  assert.ok(m, 'the server reports its MQTT connections on /metrics');
  return Number(m[1]);
}

function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function settledHeap(gc: () => void): Promise<{ heap: number; buffers: number }> {
  for (let k = 0; k < 3; k++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

/** An MQTT.js client that keeps publishing to itself and notes every message that is late or lost. */
class HealthClient {
  sent = 0;
  received = 0;
  problems: string[] = [];
  private pending = new Map<number, number>();
  private timer?: NodeJS.Timeout;
  private constructor(readonly client: MqttClient) {}

  static async start(url: string): Promise<HealthClient> {
    const client = await connectAsync(url, { protocolVersion: 5, clientId: `health-${SEED}`, reconnectPeriod: 0, connectTimeout: 5000 });
    const h = new HealthClient(client);
    const topic = `health/${SEED}`;
    client.on('message', (_t, payload) => {
      const n = Number(payload.toString());
      if (h.pending.delete(n)) h.received++;
    });
    let why = 'the connection closed';
    client.on('disconnect', (p) => (why = `DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)} ${p.properties?.reasonString ?? ''}`));
    client.on('error', (e) => (why = `error: ${e.message}`));
    client.on('close', () => h.problems.push(`the well-behaved client was disconnected after ${h.received} messages (${why})`));
    await client.subscribeAsync(topic, { qos: 1 });
    // a steady trickle, the load an ordinary client adds while the fuzzing goes on
    h.timer = setInterval(() => {
      const now = Date.now();
      for (const [n, at] of h.pending) {
        if (now - at <= ANSWER_MS) continue;
        h.problems.push(`message ${n} did not come back within ${ANSWER_MS} ms`);
        h.pending.delete(n);
      }
      const n = h.sent++;
      h.pending.set(n, now);
      client.publishAsync(topic, String(n), { qos: 1 }).catch((e: Error) => h.problems.push(`publish ${n} failed: ${e.message}`));
    }, 20);
    return h;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  get outstanding(): number {
    return this.pending.size;
  }
}

describe('MQTT malformed input', () => {
  let server: RunningServer;
  let mqttUrl: string;

  before(async () => {
    server = await startTestServer({ mqtt: { port: 0, maxPacketBytes: MAX_PACKET } });
    mqttUrl = server.mqtt!;
    assert.ok(mqttUrl, 'the server reports its MQTT address');
  });
  after(() => server?.close());

  it(`answers or disconnects every fuzzed connection and keeps serving (seed ${SEED})`, async (t) => {
    const replay = `seed ${SEED} (replay: OMNIPUSH_PROPERTY_SEED=${SEED} npm test -- mqtt-fuzz)`;
    let health: HealthClient | undefined;
    try {
      const u = new URL(mqttUrl);
      const addr = { host: u.hostname, port: Number(u.port) };
      const gc = collectGarbage();
      health = await HealthClient.start(mqttUrl);
      const h = health;
      await waitFor(() => h.received > 0, 'the well-behaved client receiving its first message');
      const base = await settledHeap(gc);
      assert.equal(await mqttConnections(server.http), 1, 'only the well-behaved client is connected before fuzzing');

      const failures: string[] = [];
      const seen = new Map<string, number>();
      const end = Date.now() + FUZZ_MS;
      let next = 0;
      const worker = async () => {
        while (Date.now() < end && next < MAX_CASES) {
          const c = makeCase(next++);
          const kind = c.name.replace(/ to \d+/, '');
          seen.set(kind, (seen.get(kind) ?? 0) + 1);
          const problem = await runCase(addr, c);
          if (problem) failures.push(`case ${c.index} [${c.name}] ${problem}; bytes ${c.bytes.toString('hex').slice(0, 400)}`);
        }
      };
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      health.stop();
      t.diagnostic(`${next} cases: ${[...seen].map(([k, n]) => `${k} ×${n}`).join(', ')}`);

      const failedKinds = [...new Set(failures.map((f) => /\[(.*?)\]/.exec(f)?.[1].replace(/ to \d+/, '')))].join('; ');
      assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${next} cases misbehaved (${failedKinds})`);
      await waitFor(() => h.outstanding === 0, 'the well-behaved client receiving its last messages', ANSWER_MS).catch(() => undefined);
      assert.deepEqual(health.problems, [], 'the well-behaved client was served throughout');
      assert.ok(health.received > FUZZ_MS / 20 / 4, `the well-behaved client got ${health.received} of ${health.sent} messages back`);
      assert.equal(health.outstanding, 0, 'every message of the well-behaved client came back');

      // only the well-behaved client may still be connected (if the assertions above let us get here)
      const wellBehaved = health.client.connected ? 1 : 0;
      let open = NaN;
      await waitFor(async () => (open = await mqttConnections(server.http)) === wellBehaved, 'the server to drop every fuzz connection', 5000).catch(() => undefined);
      assert.equal(open, wellBehaved, `no fuzz connection is left open on the server (${open} MQTT connections, ${wellBehaved} expected)`);

      const now = await settledHeap(gc);
      assert.ok(now.heap - base.heap < HEAP_BOUND, `heap grew by ${((now.heap - base.heap) / 1048576).toFixed(1)} MB`);
      assert.ok(now.buffers - base.buffers < HEAP_BOUND, `buffers grew by ${((now.buffers - base.buffers) / 1048576).toFixed(1)} MB`);
    } catch (e) {
      if (e instanceof Error) e.message = `${replay}: ${e.message}`;
      throw e;
    } finally {
      health?.stop();
      // forced: a client the broker already dropped would wait for an answer that never comes
      health?.client.end(true);
    }
  });
});
