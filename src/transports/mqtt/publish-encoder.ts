import type { WireFormat } from '../../core/encoded.js';
import type { Properties, StoredMessage } from '../../core/message.js';
import { bodyOffset } from './framer.js';

/**
 * The MQTT 5 user property that carries a message's cursor (docs/mqtt.md). A client asks for it
 * with this user property, value `1`, in its CONNECT; others get the publisher's properties only.
 */
export const CURSOR_PROPERTY = 'omnipush-cursor';

/** Whether a CONNECT's user properties (mqtt-packet's object form) ask for the cursor property. */
export function wantsCursor(users: Record<string, string | string[]> | undefined): boolean {
  const v = users?.[CURSOR_PROPERTY];
  return v === '1' || (Array.isArray(v) && v.includes('1'));
}

/** What goes into an outgoing PUBLISH besides the message itself. */
export interface PublishOptions {
  version: number;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup?: boolean;
  packetId?: number;
  /** MQTT 5: send this alias; with `aliasOnly` the topic name is left empty. */
  topicAlias?: number;
  aliasOnly?: boolean;
  subscriptionIds?: number[];
  /** MQTT 5: add our cursor property after the publisher's user properties. */
  cursor?: boolean;
  now: number;
}

const NO_PROPERTIES: Properties = [];

function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[pos++] = b;
  } while (n > 0);
  return pos;
}

/**
 * Encodes a PUBLISH ourselves rather than with mqtt-packet: its generator takes user properties as
 * an object and so cannot keep their order across names, which MQTT 5 requires when forwarding.
 * Returns null when the message has expired.
 */
export function encodePublish(m: StoredMessage, o: PublishOptions): Buffer | null {
  const v5 = o.version === 5;
  const topic = o.aliasOnly ? '' : m.topic;
  const topicLen = Buffer.byteLength(topic);
  const parts: Array<[number, Buffer | string | number]> = [];
  let propLen = 0;
  const strProp = (id: number, s: string) => {
    parts.push([id, s]);
    propLen += 1 + 2 + Buffer.byteLength(s);
  };
  let users: Properties = NO_PROPERTIES;
  if (v5) {
    if (m.payloadFormat !== undefined) {
      parts.push([1, m.payloadFormat]);
      propLen += 2;
    }
    if (m.expiresAt !== undefined) {
      const left = Math.ceil((m.expiresAt - o.now) / 1000);
      if (left <= 0) return null;
      parts.push([2, left]);
      propLen += 5;
    }
    if (m.contentType) strProp(3, m.contentType);
    if (m.responseTopic) strProp(8, m.responseTopic);
    if (m.correlationData) {
      parts.push([9, m.correlationData]);
      propLen += 3 + m.correlationData.length;
    }
    if (o.subscriptionIds) {
      for (const id of o.subscriptionIds) {
        parts.push([11, id]);
        propLen += 1 + varintLength(id);
      }
    }
    if (o.topicAlias) {
      parts.push([35, o.topicAlias]);
      propLen += 3;
    }
    if (o.cursor) users = m.properties ? [...m.properties, [CURSOR_PROPERTY, m.cursor]] : [[CURSOR_PROPERTY, m.cursor]];
    else if (m.properties) users = m.properties;
    for (const [k, v] of users) propLen += 5 + Buffer.byteLength(k) + Buffer.byteLength(v);
  } else if (m.expiresAt !== undefined && m.expiresAt <= o.now) return null;
  const body = 2 + topicLen + (o.qos > 0 ? 2 : 0) + (v5 ? varintLength(propLen) + propLen : 0) + m.payload.length;
  const buf = Buffer.allocUnsafe(1 + varintLength(body) + body);
  buf[0] = 0x30 | (o.dup ? 0x08 : 0) | (o.qos << 1) | (o.retain ? 1 : 0);
  let pos = writeVarint(buf, 1, body);
  buf.writeUInt16BE(topicLen, pos);
  pos += 2;
  pos += buf.write(topic, pos, 'utf8');
  if (o.qos > 0) {
    buf.writeUInt16BE(o.packetId ?? 0, pos);
    pos += 2;
  }
  if (v5) {
    pos = writeVarint(buf, pos, propLen);
    for (const [id, v] of parts) {
      buf[pos++] = id;
      if (id === 1) buf[pos++] = v as number;
      else if (id === 2) pos = buf.writeUInt32BE(v as number, pos);
      else if (id === 11) pos = writeVarint(buf, pos, v as number);
      else if (id === 35) pos = buf.writeUInt16BE(v as number, pos);
      else if (typeof v === 'string') {
        pos = buf.writeUInt16BE(Buffer.byteLength(v), pos);
        pos += buf.write(v, pos, 'utf8');
      } else {
        const b = v as Buffer;
        pos = buf.writeUInt16BE(b.length, pos);
        pos += b.copy(buf, pos);
      }
    }
    for (const [k, v] of users) {
      buf[pos++] = 38;
      pos = buf.writeUInt16BE(Buffer.byteLength(k), pos);
      pos += buf.write(k, pos, 'utf8');
      pos = buf.writeUInt16BE(Buffer.byteLength(v), pos);
      pos += buf.write(v, pos, 'utf8');
    }
  }
  m.payload.copy(buf, pos);
  return buf;
}

/** A copy of a QoS 1/2 template with its packet identifier (and DUP) filled in. */
export function withPacketId(template: Buffer, packetId: number, dup: boolean): Buffer {
  const b = Buffer.from(template);
  const at = bodyOffset(b);
  b.writeUInt16BE(packetId, at + 2 + b.readUInt16BE(at));
  if (dup) b[0] |= 0x08;
  return b;
}

function format(name: string, version: number, qos: 0 | 1 | 2, retain: boolean, cursor = false): WireFormat<Buffer | null> {
  return { name, encode: (m) => encodePublish(m, { version, qos, retain, cursor, now: Date.now() }) };
}

/**
 * Encode-once formats: one PUBLISH per message shared by every subscriber of a protocol family
 * that needs no per-connection field (alias, subscription identifier). QoS 1/2 ones are templates
 * whose packet identifier is patched in per subscriber.
 */
export const SHARED_FORMATS: Record<'v4' | 'v5' | 'v5c', Array<[WireFormat<Buffer | null>, WireFormat<Buffer | null>]>> = {
  v4: [0, 1, 2].map((q) => [format(`mqtt4-q${q}`, 4, q as 0 | 1 | 2, false), format(`mqtt4-q${q}-r`, 4, q as 0 | 1 | 2, true)]),
  v5: [0, 1, 2].map((q) => [format(`mqtt5-q${q}`, 5, q as 0 | 1 | 2, false), format(`mqtt5-q${q}-r`, 5, q as 0 | 1 | 2, true)]),
  // clients that asked for the cursor property share their own encodings
  v5c: [0, 1, 2].map((q) => [format(`mqtt5c-q${q}`, 5, q as 0 | 1 | 2, false, true), format(`mqtt5c-q${q}-r`, 5, q as 0 | 1 | 2, true, true)]),
};
