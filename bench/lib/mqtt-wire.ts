/**
 * A light MQTT 3.1.1 client on a raw node:net socket, for the load generator and the publisher of
 * the MQTT benchmarks. Thousands of these run in one process, so none of them holds a parser of its
 * own: frames are split by hand, PUBLISH and PUBACK (the hot path) are read in place, and the rare
 * control packets go through one shared mqtt-packet parser fed whole frames only.
 * Packets we send are built by mqtt-packet, except PUBACK (four fixed bytes, one per delivery).
 */
import { connect, type Socket } from 'node:net';
import { generate, parser, type IConnackPacket, type ISubackPacket, type Packet, type QoS } from 'mqtt-packet';
import { carry, EMPTY, sharedRead } from './shared-read.js';

export interface MqttAddress {
  host: string;
  port: number;
  /** A source address of the client's own (one address pair has only ~28k ephemeral ports). */
  localAddress?: string;
}

/** What a connection reports to its owner. The payload of a PUBLISH is `buf[start, end)`. */
export interface MqttEvents {
  publish?(buf: Buffer, start: number, end: number, qos: number): void;
  puback?(id: number): void;
  /** The socket closed (by either side). */
  close?(): void;
}

/** Every open connection, for the keepalive sweep. */
const open = new Set<MqttConn>();
const KEEPALIVE_S = 300;

// Keepalive is long (phases last seconds), but a run can outlive it on a slow machine: one sweep
// for all sockets rather than a timer per connection.
setInterval(() => {
  for (const c of open) c.sock.write(PINGREQ);
}, (KEEPALIVE_S / 3) * 1000).unref();

const PINGREQ = Buffer.from([0xc0, 0x00]);

// One parser for the whole process: it only ever receives complete frames, so it never carries
// state from one connection into the next; `target` says whose frame it is reading.
const control = parser({ protocolVersion: 4 });
let target: MqttConn | undefined;
control.on('packet', (p: Packet) => target?.onControl(p));
control.on('error', (e: Error) => target?.fail(e));

function parseControl(conn: MqttConn, frame: Buffer): void {
  target = conn;
  control.parse(frame);
  target = undefined;
}


export class MqttConn {
  readonly sock: Socket;
  private buf: Buffer = EMPTY;
  private readonly waiters = new Map<string, { resolve: (p: Packet) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;

  private constructor(
    addr: MqttAddress,
    private readonly events: MqttEvents,
  ) {
    this.sock = connect({ port: addr.port, host: addr.host, localAddress: addr.localAddress, onread: sharedRead((d) => this.onData(d)) });
    this.sock.setNoDelay(true);
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => {
      this.closed = true;
      open.delete(this);
      this.fail(new Error('connection closed'));
      this.events.close?.();
    });
  }

  /** Connects with a clean session and waits for an accepting CONNACK (rejects after `timeoutMs`). */
  static async open(addr: MqttAddress, clientId: string, events: MqttEvents = {}, timeoutMs = 30_000): Promise<MqttConn> {
    const c = new MqttConn(addr, events);
    open.add(c);
    c.sock.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: KEEPALIVE_S }));
    try {
      const ack = (await c.expect('connack', timeoutMs)) as IConnackPacket;
      if (ack.returnCode !== 0) throw new Error(`CONNACK return code ${ack.returnCode}`);
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  /** Subscribes to one filter and resolves with the granted QoS (rejects on 0x80). */
  async subscribe(topic: string, qos: QoS, timeoutMs = 30_000): Promise<number> {
    const id = this.packetId();
    this.sock.write(generate({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic, qos }] }));
    const ack = (await this.expect(`suback:${id}`, timeoutMs)) as ISubackPacket;
    const granted = ack.granted[0] as number;
    if (granted === 0x80) throw new Error(`subscription to ${topic} refused`);
    return granted;
  }

  /** Writes one PUBLISH; returns its packet id (0 at QoS 0). */
  publish(topic: string, payload: string | Buffer, qos: QoS): number {
    const messageId = qos > 0 ? this.packetId() : 0;
    this.sock.write(generate({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, messageId }));
    return messageId;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  destroy(): void {
    this.sock.destroy();
  }

  private packetId(): number {
    const id = this.nextId;
    this.nextId = id === 0xffff ? 1 : id + 1;
    return id;
  }

  private expect(key: string, timeoutMs: number): Promise<Packet> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(key);
        reject(new Error(`no ${key.split(':')[0]} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(key, {
        resolve: (p) => {
          clearTimeout(t);
          resolve(p);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  }

  /** @internal called by the shared parser */
  onControl(p: Packet): void {
    const key = p.cmd === 'suback' ? `suback:${p.messageId}` : p.cmd;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w.resolve(p);
    }
  }

  /** @internal */
  fail(e: Error): void {
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
  }

  private onData(chunk: Buffer): void {
    const buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    let acks: number[] | undefined;
    while (off < buf.length) {
      // fixed header: one type byte, then the remaining length in 1..4 bytes of 7 bits each
      let len = 0;
      let mul = 1;
      let p = off + 1;
      let complete = false;
      while (p < buf.length && p - off <= 4) {
        const b = buf[p++];
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (p - off > 4) return void this.sock.destroy(new Error('malformed remaining length from the broker'));
        break;
      }
      const end = p + len;
      if (end > buf.length) break;
      const b0 = buf[off];
      const type = b0 >> 4;
      if (type === 3) {
        const qos = (b0 >> 1) & 3;
        let q = p + 2 + buf.readUInt16BE(p);
        if (qos > 0) {
          (acks ??= []).push(buf.readUInt16BE(q));
          q += 2;
        }
        this.events.publish?.(buf, q, end, qos);
      } else if (type === 4) {
        this.events.puback?.(buf.readUInt16BE(p));
      } else if (type !== 13) {
        parseControl(this, buf.subarray(off, end));
      }
      off = end;
    }
    this.buf = carry(buf, off);
    if (acks) {
      // one write for every acknowledgement this chunk owes
      const out = Buffer.allocUnsafe(acks.length * 4);
      for (let i = 0; i < acks.length; i++) {
        out[i * 4] = 0x40;
        out[i * 4 + 1] = 2;
        out.writeUInt16BE(acks[i], i * 4 + 2);
      }
      this.sock.write(out);
    }
  }
}
