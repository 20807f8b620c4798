import { isUtf8 } from 'node:buffer';
import type { IConnectPacket, IPublishPacket, Packet } from 'mqtt-packet';
import type { Properties } from '../../core/message.js';
import { bodyOffset } from './framer.js';
import { MqttProtocolError, RC } from './reason-codes.js';

/**
 * The validation layer over mqtt-packet, which frames and decodes but does not check. Walks each
 * inbound packet's raw bytes before it is decoded: well-formed UTF-8 without U+0000 in every
 * string, reserved bits, properties known, allowed for the packet type and not repeated (only
 * User Property may repeat), property values in range, and nothing left over. It also reads the
 * User Properties in wire order, which mqtt-packet's object form loses across names.
 *
 * The packets of the message flow (PUBLISH, its acknowledgements, PINGREQ) are decoded here in the
 * same pass, without mqtt-packet: its parser allocated several times the packet's size in
 * short-lived objects per PUBLISH, and collecting them was the largest cost of QoS 1 traffic.
 */

type PropType = 'byte' | 'int16' | 'int32' | 'varint' | 'string' | 'binary' | 'pair';

const TYPES: Record<number, PropType> = {
  1: 'byte', 2: 'int32', 3: 'string', 8: 'string', 9: 'binary', 11: 'varint', 17: 'int32', 18: 'string', 19: 'int16',
  21: 'string', 22: 'binary', 23: 'byte', 24: 'int32', 25: 'byte', 26: 'string', 28: 'string', 31: 'string', 33: 'int16',
  34: 'int16', 35: 'int16', 36: 'byte', 37: 'byte', 38: 'pair', 39: 'int32', 40: 'byte', 41: 'byte', 42: 'byte',
};

/** Properties a client may send, per packet (MQTT 5 §2.2.2.2); Subscription Identifier only in SUBSCRIBE. */
const ALLOWED = {
  connect: new Set([17, 21, 22, 23, 25, 33, 34, 38, 39]),
  will: new Set([1, 2, 3, 8, 9, 24, 38]),
  publish: new Set([1, 2, 3, 8, 9, 35, 38]),
  ack: new Set([31, 38]),
  subscribe: new Set([11, 38]),
  unsubscribe: new Set([38]),
  disconnect: new Set([17, 31, 38]),
  auth: new Set([21, 22, 31, 38]),
};

type Block = keyof typeof ALLOWED;

const malformed = (why: string) => new MqttProtocolError(RC.malformed, why);
const protocol = (why: string) => new MqttProtocolError(RC.protocolError, why);

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    public end: number,
  ) {}

  get left(): number {
    return this.end - this.pos;
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.end) throw malformed(`packet too short for ${what}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++];
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  varint(what: string): number {
    let v = 0;
    let mul = 1;
    for (let n = 0; n < 4; n++) {
      const b = this.u8(what);
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
    }
    throw malformed(`${what}: variable byte integer longer than four bytes`);
  }

  binary(what: string): Buffer {
    const n = this.u16(what);
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** A UTF-8 string (§1.5.4): well-formed, no U+0000. */
  string(what: string): string {
    const b = this.binary(what);
    if (b.includes(0)) throw malformed(`${what} contains U+0000`);
    if (!isUtf8(b)) throw malformed(`${what} is not well-formed UTF-8`);
    return b.toString('utf8');
  }
}

/** The MQTT 5 tail of acknowledgements, DISCONNECT and AUTH: an optional reason code (0 when left out), then optional properties. */
function reasonAndProperties(r: Reader, block: Block, what: string): number {
  const rc = r.left > 0 ? r.u8('reason code') : 0;
  if (r.left > 0) properties(r, block);
  if (r.left !== 0) throw malformed(`bytes after the end of ${what}`);
  return rc;
}

/**
 * Reads one property block; returns the User Properties in order (undefined when none). With
 * `into`, the PUBLISH properties the broker uses are stored there under mqtt-packet's names.
 */
function properties(r: Reader, block: Block, into?: PublishProperties): Properties | undefined {
  const len = r.varint('property length');
  r.need(len, 'properties');
  const end = r.pos + len;
  const outer = r.end;
  r.end = end;
  const allowed = ALLOWED[block];
  // property identifiers are below 64: two 32-bit masks record which ones were seen
  let seenLo = 0;
  let seenHi = 0;
  let users: Properties | undefined;
  while (r.left > 0) {
    const id = r.varint('property identifier');
    const type = TYPES[id];
    if (!type) throw malformed(`unknown property 0x${id.toString(16)}`);
    if (!allowed.has(id)) throw protocol(`property 0x${id.toString(16)} is not allowed in ${block}`);
    if (id !== 38) {
      const bit = 1 << (id & 31);
      if ((id < 32 ? seenLo : seenHi) & bit) throw protocol(`property 0x${id.toString(16)} appears more than once`);
      if (id < 32) seenLo |= bit;
      else seenHi |= bit;
    }
    let value = 0;
    switch (type) {
      case 'byte':
        value = r.u8('property');
        break;
      case 'int16':
        value = r.u16('property');
        break;
      case 'int32':
        value = r.u32('property');
        break;
      case 'varint':
        value = r.varint('property');
        break;
      case 'string': {
        const v = r.string('property');
        if (into && id === 3) into.contentType = v;
        else if (into && id === 8) into.responseTopic = v;
        break;
      }
      case 'binary': {
        const v = r.binary('property');
        // kept with the message: a copy, not a view of the read buffer
        if (into && id === 9) into.correlationData = Buffer.from(v);
        break;
      }
      case 'pair': {
        const k = r.string('user property name');
        const v = r.string('user property value');
        (users ??= []).push([k, v]);
        break;
      }
    }
    if ((id === 1 || id === 23 || id === 25) && value > 1) throw protocol(`property 0x${id.toString(16)} must be 0 or 1`);
    if ((id === 33 || id === 39 || id === 11) && value === 0) throw protocol(`property 0x${id.toString(16)} must not be 0`);
    if (into) {
      if (id === 1) into.payloadFormatIndicator = value === 1;
      else if (id === 2) into.messageExpiryInterval = value;
      else if (id === 35) into.topicAlias = value;
    }
  }
  r.end = outer;
  return users;
}

type PublishProperties = NonNullable<IPublishPacket['properties']>;

/** A PUBLISH as the broker reads it: mqtt-packet's shape, plus the User Properties in wire order. */
export interface InboundPublish extends IPublishPacket {
  users?: Properties;
}

export interface ConnectCheck {
  version: 3 | 4 | 5;
  /**
   * A 3.1 / 3.1.1 CONNECT, decoded here: mqtt-packet's parser costs ~3 KB of garbage per CONNECT,
   * most of it aged into the old space by the time a burst of connects is done. MQTT 5 ones are left to it.
   */
  packet?: IConnectPacket;
  userProperties?: Properties;
  willUserProperties?: Properties;
}

/** Unsupported protocol name or level: answered with CONNACK 0x01 (3.1.1 form) or 0x84 (v5 form). */
export class UnsupportedProtocol extends Error {
  constructor(readonly level: number) {
    super(`unsupported protocol level ${level}`);
  }
}

/** Checks a CONNECT packet; throws UnsupportedProtocol or MqttProtocolError. */
export function checkConnect(packet: Buffer): ConnectCheck {
  const r = new Reader(packet, bodyOffset(packet), packet.length);
  if ((packet[0] & 0x0f) !== 0) throw malformed('CONNECT flags must be 0');
  const name = r.binary('protocol name').toString('latin1');
  const level = r.u8('protocol level') & 0x7f;
  if (!((name === 'MQTT' && (level === 4 || level === 5)) || (name === 'MQIsdp' && level === 3))) throw new UnsupportedProtocol(level);
  const version = level as 3 | 4 | 5;
  const flags = r.u8('connect flags');
  if (flags & 1) throw malformed('reserved connect flag is set');
  const will = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  if (willQos === 3) throw malformed('will QoS 3');
  if (!will && (willQos !== 0 || flags & 0x20)) throw malformed('will QoS or retain set without a will');
  if (version !== 5 && flags & 0x40 && !(flags & 0x80)) throw protocol('password flag without username flag');
  const keepalive = r.u16('keep alive');
  const out: ConnectCheck = { version };
  if (version === 5) out.userProperties = properties(r, 'connect');
  const clientId = r.string('client identifier');
  let willTopic = '';
  let willPayload: Buffer | undefined;
  if (will) {
    if (version === 5) out.willUserProperties = properties(r, 'will');
    willTopic = r.string('will topic');
    willPayload = r.binary('will payload');
  }
  const username = flags & 0x80 ? r.string('user name') : undefined;
  const password = flags & 0x40 ? r.binary('password') : undefined;
  if (r.left !== 0) throw malformed('bytes after the end of CONNECT');
  if (version !== 5) {
    const p: IConnectPacket = { cmd: 'connect', protocolId: name as 'MQTT' | 'MQIsdp', protocolVersion: version, clean: (flags & 0x02) !== 0, keepalive, clientId };
    // the will's payload is kept (published later): a copy, not a view of the read buffer
    if (willPayload) p.will = { topic: willTopic, payload: Buffer.from(willPayload), qos: willQos as 0 | 1 | 2, retain: (flags & 0x20) !== 0 };
    if (username !== undefined) p.username = username;
    if (password !== undefined) p.password = password;
    out.packet = p;
  }
  return out;
}

const ACK_CMDS = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;
/** Reason codes of PUBACK and PUBREC (MQTT 5 §3.4.2.1, §3.5.2.1), and of PUBREL and PUBCOMP (§3.6.2.1, §3.7.2.1). */
const PUBACK_CODES = new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
const PUBREL_CODES = new Set([0x00, 0x92]);

/**
 * Checks any other packet a client may send. PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ and a
 * 3.1.1 SUBSCRIBE come back decoded; for the rest (UNSUBSCRIBE, DISCONNECT, AUTH) it returns undefined
 * and mqtt-packet decodes the checked bytes.
 */
export function checkPacket(packet: Buffer, version: number): InboundPublish | Packet | undefined {
  const type = packet[0] >> 4;
  const flags = packet[0] & 0x0f;
  const r = new Reader(packet, bodyOffset(packet), packet.length);
  const v5 = version === 5;
  switch (type) {
    case 1:
      throw protocol('a second CONNECT');
    case 3: {
      const qos = (flags >> 1) & 3;
      if (qos === 3) throw malformed('PUBLISH with QoS 3');
      if (qos === 0 && flags & 0x08) throw malformed('DUP set on a QoS 0 PUBLISH');
      const topic = r.string('topic name');
      let messageId: number | undefined;
      if (qos > 0 && (messageId = r.u16('packet identifier')) === 0) throw malformed('packet identifier 0');
      const p: InboundPublish = { cmd: 'publish', topic, payload: EMPTY, qos: qos as 0 | 1 | 2, dup: (flags & 0x08) !== 0, retain: (flags & 0x01) !== 0 };
      if (messageId !== undefined) p.messageId = messageId;
      if (v5) {
        const props: PublishProperties = {};
        const users = properties(r, 'publish', props);
        p.properties = props;
        if (users) p.users = users;
      }
      // kept with the message (history, queues): a copy, not a view of the read buffer
      if (r.left > 0) {
        p.payload = Buffer.allocUnsafe(r.left);
        packet.copy(p.payload, 0, r.pos, r.end);
      }
      return p;
    }
    case 4:
    case 5:
    case 6:
    case 7: {
      if (flags !== (type === 6 ? 2 : 0)) throw malformed('reserved flags of an acknowledgement');
      const messageId = r.u16('packet identifier');
      // no PUBLISH or PUBREL ever has identifier 0 (MQTT-2.2.1-3), so this acknowledges nothing
      if (messageId === 0) throw protocol(`${ACK_CMDS[type - 4].toUpperCase()} with packet identifier 0`);
      const p = { cmd: ACK_CMDS[type - 4], messageId } as Packet & { reasonCode?: number };
      if (v5) {
        const rc = reasonAndProperties(r, 'ack', 'an acknowledgement');
        if (!(type < 6 ? PUBACK_CODES : PUBREL_CODES).has(rc)) throw malformed(`reason code 0x${rc.toString(16)} is not one ${p.cmd.toUpperCase()} can carry`);
        p.reasonCode = rc;
      } else if (r.left !== 0) throw malformed('acknowledgement longer than 2 bytes');
      return p;
    }
    case 8:
    case 10: {
      if (flags !== 2) throw malformed('reserved flags of SUBSCRIBE/UNSUBSCRIBE');
      const messageId = r.u16('packet identifier');
      if (messageId === 0) throw malformed('packet identifier 0');
      if (v5) properties(r, type === 8 ? 'subscribe' : 'unsubscribe');
      if (r.left === 0) throw protocol(`${type === 8 ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} without a topic filter`);
      // a 3.1.1 SUBSCRIBE (every such client sends one at connect) comes back decoded: mqtt-packet's
      // parser costs ~2 KB of garbage per packet; the others are decoded by it from the checked bytes
      const subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }> | undefined = type === 8 && !v5 ? [] : undefined;
      while (r.left > 0) {
        // parsed, but not a topic filter: every filter is at least one character long (MQTT-4.7.3-1)
        const topic = r.string('topic filter');
        if (topic.length === 0) throw protocol('zero-length topic filter');
        if (type === 8) {
          const o = r.u8('subscription options');
          if ((o & 3) === 3) throw malformed('subscription QoS 3');
          if (v5 ? (o & 0xc0) !== 0 || ((o >> 4) & 3) === 3 : (o & 0xfc) !== 0) throw malformed('reserved subscription option bits');
          subscriptions?.push({ topic, qos: (o & 3) as 0 | 1 | 2 });
        }
      }
      return subscriptions ? { cmd: 'subscribe', messageId, subscriptions } : undefined;
    }
    case 12:
      if (flags !== 0 || r.left !== 0) throw malformed('PINGREQ with flags or a body');
      return PINGREQ;
    case 14: {
      if (flags !== 0) throw malformed('reserved flags of DISCONNECT');
      if (!v5) {
        if (r.left !== 0) throw malformed('DISCONNECT with a body');
        return undefined;
      }
      reasonAndProperties(r, 'disconnect', 'DISCONNECT');
      return undefined;
    }
    case 15: {
      if (!v5) throw protocol('AUTH before MQTT 5');
      if (flags !== 0) throw malformed('reserved flags of AUTH');
      reasonAndProperties(r, 'auth', 'AUTH');
      return undefined;
    }
    default:
      throw protocol(`packet type ${type} is not sent by clients`);
  }
}

const EMPTY = Buffer.alloc(0);
const PINGREQ: Packet = { cmd: 'pingreq' };
