import { MqttProtocolError, RC } from './reason-codes.js';

/**
 * Where whole packets go, and the one partial packet kept between reads. The connection is its own
 * sink: no framer object and no callback per connection or per read.
 */
export interface PacketSink {
  partial: Buffer | null;
  onPacket(packet: Buffer): void;
}

/**
 * Cuts a byte stream into whole MQTT packets (fixed header included) and hands each to the sink.
 * It reads the fixed header itself so an oversize packet is refused from its first bytes, before
 * anything is buffered (mqtt-packet has no limit). Complete packets are cut straight from the chunk;
 * only a packet split across reads is copied, and nothing at all is kept between packets, which
 * keeps idle connections small. Throws MqttProtocolError.
 */
export function framePackets(sink: PacketSink, chunk: Buffer, maxBytes: number): void {
  const buf = sink.partial ? Buffer.concat([sink.partial, chunk]) : chunk;
  sink.partial = null;
  let pos = 0;
  while (pos < buf.length) {
    let len = 0;
    let mul = 1;
    let i = pos + 1;
    let complete = false;
    for (let n = 0; n < 4 && i < buf.length; n++, i++) {
      const b = buf[i];
      len += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        complete = true;
        i++;
        break;
      }
      if (n === 3) throw new MqttProtocolError(RC.malformed, 'remaining length takes more than four bytes');
    }
    if (!complete) break;
    const total = i - pos + len;
    if (total > maxBytes) throw new MqttProtocolError(RC.packetTooLarge, `packet of ${total} bytes exceeds the maximum of ${maxBytes}`);
    if (buf.length - pos < total) break;
    sink.onPacket(buf.subarray(pos, pos + total));
    pos += total;
  }
  if (pos < buf.length) {
    // copy: the caller's chunk may be a slice of a larger pooled buffer
    sink.partial = Buffer.from(buf.subarray(pos));
  }
}

/** Offset of the variable header in a whole packet. */
export function bodyOffset(packet: Buffer): number {
  let i = 1;
  while (packet[i] & 0x80) i++;
  return i + 1;
}
