import mqttPacket, { type Packet } from 'mqtt-packet';
import { MqttProtocolError, RC } from './reason-codes.js';
import { connack5, suback5 } from './v5-acks.js';

/**
 * mqtt-packet's parser is stateful and heavy (a buffer list and an event emitter). The framer
 * hands it exactly one whole packet at a time, so one parser per protocol family serves every
 * connection and an idle connection holds none.
 */
const parsers = new Map<number, ReturnType<typeof mqttPacket.parser>>();
let decoded: Packet | null = null;
let failure: Error | null = null;

function parserFor(version: number): ReturnType<typeof mqttPacket.parser> {
  const key = version === 5 ? 5 : 4;
  let p = parsers.get(key);
  if (!p) {
    p = mqttPacket.parser({ protocolVersion: key });
    p.on('packet', (pk: Packet) => {
      decoded = pk;
    });
    p.on('error', (e: Error) => {
      failure = e;
    });
    parsers.set(key, p);
  }
  return p;
}

/** Decodes one whole, already checked packet. Throws MqttProtocolError (malformed). */
export function decode(packet: Buffer, version: number): Packet {
  const p = parserFor(version) as ReturnType<typeof mqttPacket.parser> & { settings: unknown; _list: { length: number } };
  // CONNECT makes the parser adopt the packet as its settings; every call starts from ours
  p.settings = { protocolVersion: version };
  decoded = null;
  failure = null;
  try {
    p.parse(packet);
  } catch (e) {
    failure = e as Error;
  }
  const out = decoded as Packet | null;
  const err = failure as Error | null;
  if (err || !out || p._list.length !== 0) {
    // The parser is shared by every connection, and after a failure (or a packet it did not read to
    // its end) its buffer and read position cannot be trusted: mqtt-packet's own reset leaves the
    // position where it was, and the next packet — any client's — would be read at that offset.
    // A fresh parser costs little and only bad input pays it.
    parsers.delete(version === 5 ? 5 : 4);
    throw new MqttProtocolError(RC.malformed, `malformed packet: ${err?.message ?? (out ? 'bytes left over after the packet' : 'incomplete')}`);
  }
  return out;
}

/** Encodes a packet other than an outgoing PUBLISH (see publish-encoder.ts). */
export function encode(packet: Packet, version: number): Buffer {
  // every 3.1.1 client gets these two at connect: written here, they skip mqtt-packet's
  // accumulator and its per-call allocations (~1.5 KB each connect, garbage that ages into the old space)
  if (version < 5) {
    if (packet.cmd === 'connack') return Buffer.from([0x20, 2, packet.sessionPresent ? 1 : 0, packet.returnCode ?? 0]);
    if (packet.cmd === 'suback' && packet.messageId !== undefined && packet.granted.length < 126) return suback3(packet.messageId, packet.granted as number[]);
  }
  if (version === 5) {
    const b = packet.cmd === 'connack' ? connack5(packet) : packet.cmd === 'suback' ? suback5(packet) : null;
    if (b) return b;
  }
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** SUBACK of MQTT 3.1.1 (§3.9) with fewer than 126 return codes (its remaining length fits one byte). */
function suback3(messageId: number, granted: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 + granted.length);
  b[0] = 0x90;
  b[1] = 2 + granted.length;
  b[2] = messageId >> 8;
  b[3] = messageId & 0xff;
  for (let i = 0; i < granted.length; i++) b[4 + i] = granted[i];
  return b;
}

/**
 * Takes the Reason String and User Properties out of a packet's properties, the parts the server
 * may always leave out (MQTT 5 §3.1.2.11.4, §3.1.2.11.7); true when there was one.
 */
export function dropOptional(packet: Packet): boolean {
  const props = (packet as { properties?: { reasonString?: string; userProperties?: unknown } }).properties;
  if (!props || (props.reasonString === undefined && props.userProperties === undefined)) return false;
  delete props.reasonString;
  delete props.userProperties;
  return true;
}

const ACK_FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 } as const;

/**
 * PUBACK, PUBREC, PUBREL or PUBCOMP with reason Success and no properties: the same four bytes in
 * every protocol version (MQTT 5 §3.4.2.1 lets the reason code be left out when it is Success).
 */
export function successAck(cmd: keyof typeof ACK_FIRST_BYTE, messageId: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = ACK_FIRST_BYTE[cmd];
  b[1] = 2;
  b[2] = messageId >> 8;
  b[3] = messageId & 0xff;
  return b;
}

/** CONNACK for a client whose protocol level we do not speak, in the form it most likely reads. */
export function unsupportedConnack(level: number): Buffer {
  // a level above 5 is a newer client: answer as v5 would (0x84); older or unknown ones get 3.1.1's 0x01
  return level > 5 ? Buffer.from([0x20, 0x03, 0x00, RC.unsupportedProtocolVersion, 0x00]) : Buffer.from([0x20, 0x02, 0x00, 0x01]);
}
