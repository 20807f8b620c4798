import { MqttProtocolError, RC } from './reason-codes.js';

/**
 * Cuts a byte stream into whole MQTT packets. It reads the fixed header itself so an oversize
 * packet is refused from its first bytes, before anything is buffered (mqtt-packet has no limit).
 * Holds at most one partial packet; nothing at all between packets, which keeps idle
 * connections small.
 */
export class PacketFramer {
  private partial: Buffer | null = null;

  constructor(public maxBytes: number) {}

  /** Calls `onPacket` with each complete packet (fixed header included). Throws MqttProtocolError. */
  push(chunk: Buffer, onPacket: (packet: Buffer) => void): void {
    const buf = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    this.partial = null;
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
      if (total > this.maxBytes) throw new MqttProtocolError(RC.packetTooLarge, `packet of ${total} bytes exceeds the maximum of ${this.maxBytes}`);
      if (buf.length - pos < total) break;
      onPacket(buf.subarray(pos, pos + total));
      pos += total;
    }
    if (pos < buf.length) {
      // copy: the caller's chunk may be a slice of a larger pooled buffer
      this.partial = Buffer.from(buf.subarray(pos));
    }
  }

  /** Offset of the variable header in a whole packet. */
  static bodyOffset(packet: Buffer): number {
    let i = 1;
    while (packet[i] & 0x80) i++;
    return i + 1;
  }
}
