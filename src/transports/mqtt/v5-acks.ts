import type { IConnackPacket, ISubackPacket } from 'mqtt-packet';

type Kind = 'byte' | 'bool' | 'u16' | 'u32' | 'str';

/** The MQTT 5 properties (§2.2.2.2) our CONNACK and SUBACK carry, by mqtt-packet's names. */
const PROPERTIES: Record<string, readonly [id: number, kind: Kind]> = {
  sessionExpiryInterval: [0x11, 'u32'],
  assignedClientIdentifier: [0x12, 'str'],
  serverKeepAlive: [0x13, 'u16'],
  reasonString: [0x1f, 'str'],
  receiveMaximum: [0x21, 'u16'],
  topicAliasMaximum: [0x22, 'u16'],
  maximumQoS: [0x24, 'byte'],
  retainAvailable: [0x25, 'bool'],
  maximumPacketSize: [0x27, 'u32'],
  wildcardSubscriptionAvailable: [0x28, 'bool'],
  subscriptionIdentifiersAvailable: [0x29, 'bool'],
  sharedSubscriptionAvailable: [0x2a, 'bool'],
};

function varIntLength(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}

function writeVarInt(b: Buffer, at: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    b[at++] = byte;
  } while (n > 0);
  return at;
}

/** Bytes the properties take (without their length), or -1 when one is not of those above. */
function propertiesLength(props: Record<string, unknown>): number {
  let n = 0;
  for (const name in props) {
    const v = props[name];
    if (v === undefined) continue;
    const p = PROPERTIES[name];
    if (!p) return -1;
    const kind = p[1];
    if (kind === 'str') {
      if (typeof v !== 'string') return -1;
      n += 3 + Buffer.byteLength(v);
    } else if (kind === 'bool') {
      if (typeof v !== 'boolean') return -1;
      n += 2;
    } else {
      if (typeof v !== 'number') return -1;
      n += kind === 'byte' ? 2 : kind === 'u16' ? 3 : 5;
    }
  }
  return n;
}

function writeProperties(b: Buffer, at: number, props: Record<string, unknown>, length: number): number {
  at = writeVarInt(b, at, length);
  for (const name in props) {
    const v = props[name];
    if (v === undefined) continue;
    const [id, kind] = PROPERTIES[name];
    b[at++] = id;
    if (kind === 'str') {
      const len = b.write(v as string, at + 2, 'utf8');
      b.writeUInt16BE(len, at);
      at += 2 + len;
    } else if (kind === 'bool') b[at++] = v ? 1 : 0;
    else if (kind === 'byte') b[at++] = v as number;
    else if (kind === 'u16') at = b.writeUInt16BE(v as number, at);
    else at = b.writeUInt32BE(v as number, at);
  }
  return at;
}

/**
 * MQTT 5 CONNACK (§3.2), which every v5 client gets: written here, it skips mqtt-packet's
 * generator and its many small allocations per connect. Null when a property is of a kind not
 * written here (mqtt-packet writes that packet).
 */
export function connack5(p: IConnackPacket): Buffer | null {
  const props = (p.properties ?? {}) as Record<string, unknown>;
  const plen = propertiesLength(props);
  if (plen < 0) return null;
  const rest = 2 + varIntLength(plen) + plen;
  const b = Buffer.allocUnsafe(1 + varIntLength(rest) + rest);
  b[0] = 0x20;
  let at = writeVarInt(b, 1, rest);
  b[at++] = p.sessionPresent ? 1 : 0;
  b[at++] = p.reasonCode ?? 0;
  writeProperties(b, at, props, plen);
  return b;
}

/** MQTT 5 SUBACK (§3.9), as {@link connack5}. */
export function suback5(p: ISubackPacket): Buffer | null {
  if (p.messageId === undefined || p.granted.some((g) => typeof g !== 'number')) return null;
  const props = (p.properties ?? {}) as Record<string, unknown>;
  const plen = propertiesLength(props);
  if (plen < 0) return null;
  const rest = 2 + varIntLength(plen) + plen + p.granted.length;
  const b = Buffer.allocUnsafe(1 + varIntLength(rest) + rest);
  b[0] = 0x90;
  let at = writeVarInt(b, 1, rest);
  at = b.writeUInt16BE(p.messageId, at);
  at = writeProperties(b, at, props, plen);
  for (const code of p.granted) b[at++] = code as number;
  return b;
}
