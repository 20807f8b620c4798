import { isUtf8 } from 'node:buffer';

/** Close codes a reader ends a socket with (RFC 6455 §7.4.1). */
export const WS_PROTOCOL_ERROR = 1002;
export const WS_INVALID_DATA = 1007;
export const WS_TOO_BIG = 1009;

/** A frame whose payload spans reads: the bytes so far (unmasked once whole), in a buffer grown as they come. */
interface PartialFrame {
  b0: number;
  length: number;
  mask: Buffer;
  body: Buffer | null;
  got: number;
}

/** A fragmented data message being assembled. */
interface PartialMessage {
  opcode: number;
  body: Buffer | null;
  bytes: number;
}

/**
 * Reads the frames a client sends (RFC 6455 §5) from the socket's chunks, without a stream of its
 * own: between messages it holds four empty fields, where `ws`'s `Receiver` (a `Writable`) holds
 * ~0.5 KB per socket. It checks what `ws` checks with permessage-deflate off: masking (1002), RSV
 * bits (1002), opcodes and the fragmentation rules (1002), control frames (≤ 125 bytes, not
 * fragmented; a close frame's code and UTF-8 reason: 1002/1007), UTF-8 of text messages (1007) and
 * the message size bound (1009, checked from each frame's header, before its payload is read).
 * After a close frame or an error it reads nothing more.
 */
export abstract class WsFrameReader {
  /** Header bytes of a frame not yet whole (fewer than 14). */
  private carry: Buffer | null = null;
  private frame: PartialFrame | null = null;
  private message: PartialMessage | null = null;
  protected stopped = false;

  /** A whole data message; a text one is valid UTF-8. */
  protected abstract onMessage(data: Buffer, isBinary: boolean): void;
  protected abstract onPing(payload: Buffer): void;
  protected abstract onPong(): void;
  /** A close frame (`code` 1005 when it had none); nothing more is read. */
  protected abstract onClose(code: number, reason: Buffer): void;
  /** The client broke the protocol; nothing more is read. */
  protected abstract onProtocolError(code: number, message: string): void;
  /** Largest data message, in bytes, fragments together. */
  protected abstract readonly maxPayload: number;

  /** Reads one chunk of the socket (masked payloads are unmasked in place). */
  read(chunk: Buffer): void {
    if (this.stopped) return;
    let buf = chunk;
    let off = 0;
    const f = this.frame;
    if (f) {
      const take = Math.min(f.length - f.got, buf.length);
      f.body = append(f.body, f.got, take === buf.length ? buf : buf.subarray(0, take), f.length);
      f.got += take;
      off = take;
      if (f.got < f.length) return;
      this.frame = null;
      unmask(f.body, 0, f.length, f.mask, 0);
      this.frameDone(f.b0, f.body);
      if (this.stopped || off === buf.length) return;
    }
    if (this.carry) {
      buf = Buffer.concat([this.carry, off ? buf.subarray(off) : buf]);
      off = 0;
      this.carry = null;
    }
    while (off < buf.length) {
      const avail = buf.length - off;
      if (avail < 2) break;
      const b0 = buf[off];
      const b1 = buf[off + 1];
      const short = b1 & 0x7f;
      const problem = headerProblem(b0, b1, this.message !== null);
      if (problem) return this.fail(WS_PROTOCOL_ERROR, problem);
      const headLength = (short === 126 ? 4 : short === 127 ? 10 : 2) + 4;
      if (avail < headLength) break;
      let length = short;
      if (short === 126) length = buf.readUInt16BE(off + 2);
      else if (short === 127) {
        const high = buf.readUInt32BE(off + 2);
        if (high > 0x1fffff) return this.fail(WS_TOO_BIG, 'frame length over 2^53 - 1');
        length = high * 2 ** 32 + buf.readUInt32BE(off + 6);
      }
      if ((b0 & 0x08) === 0 && length > 0 && (this.message?.bytes ?? 0) + length > this.maxPayload) {
        return this.fail(WS_TOO_BIG, 'message over the size limit');
      }
      const maskAt = off + headLength - 4;
      off += headLength;
      if (buf.length - off >= length) {
        const payload = buf.subarray(off, off + length);
        unmask(payload, 0, length, buf, maskAt);
        off += length;
        this.frameDone(b0, payload);
        if (this.stopped) return;
        continue;
      }
      // the payload spans reads: no buffer of the announced size before its bytes are here
      const got = buf.length - off;
      this.frame = { b0, length, mask: Buffer.from(buf.subarray(maskAt, maskAt + 4)), body: got ? append(null, 0, buf.subarray(off), length) : null, got };
      return;
    }
    // a copy: the rest of a big chunk is not kept for a few header bytes
    if (off < buf.length) this.carry = Buffer.from(buf.subarray(off));
  }

  private frameDone(b0: number, payload: Buffer): void {
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (opcode >= 0x8) return this.control(opcode, payload);
    const m = this.message;
    if (m === null) {
      if (fin) return this.deliver(opcode, payload);
      // copied: a view would keep its whole read chunk until the message ends
      this.message = { opcode, body: payload.length ? append(null, 0, payload, this.maxPayload) : null, bytes: payload.length };
      return;
    }
    if (payload.length) {
      m.body = append(m.body, m.bytes, payload, this.maxPayload);
      m.bytes += payload.length;
    }
    if (!fin) return;
    this.message = null;
    this.deliver(m.opcode, m.body ? m.body.subarray(0, m.bytes) : payload);
  }

  private deliver(opcode: number, data: Buffer): void {
    if (opcode === 0x1 && !isUtf8(data)) return this.fail(WS_INVALID_DATA, 'text message is not valid UTF-8');
    this.onMessage(data, opcode === 0x2);
  }

  private control(opcode: number, payload: Buffer): void {
    if (opcode === 0x9) return this.onPing(payload);
    if (opcode === 0xa) return this.onPong();
    // close: no payload, or a code and a UTF-8 reason (a 1-byte payload was refused with the header)
    let code = 1005;
    let reason = payload.subarray(0, 0);
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!validCloseCode(code)) return this.fail(WS_PROTOCOL_ERROR, `invalid close code ${code}`);
      reason = payload.subarray(2);
      if (!isUtf8(reason)) return this.fail(WS_INVALID_DATA, 'close reason is not valid UTF-8');
    }
    this.halt();
    this.onClose(code, reason);
  }

  private fail(code: number, message: string): void {
    this.halt();
    this.onProtocolError(code, message);
  }

  /** Reads nothing more, and lets go of whatever was half read. */
  protected halt(): void {
    this.stopped = true;
    this.carry = null;
    this.frame = null;
    this.message = null;
  }
}

/** What is wrong with a client frame's first two bytes, if anything (`fragmented`: a message is open). */
function headerProblem(b0: number, b1: number, fragmented: boolean): string | null {
  // RSV1 would be permessage-deflate's, which these sockets do not negotiate
  if ((b0 & 0x70) !== 0) return 'reserved bits must be clear';
  const opcode = b0 & 0x0f;
  if (opcode === 0x0) {
    if (!fragmented) return 'continuation frame without a message to continue';
  } else if (opcode === 0x1 || opcode === 0x2) {
    if (fragmented) return 'new message before the fragmented one ended';
  } else if (opcode >= 0x8 && opcode <= 0xa) {
    if ((b0 & 0x80) === 0) return 'control frames must not be fragmented';
    const short = b1 & 0x7f;
    if (short > 125) return 'control frame payload over 125 bytes';
    if (opcode === 0x8 && short === 1) return 'close frame with a 1-byte payload';
  } else return `reserved opcode ${opcode}`;
  if ((b1 & 0x80) === 0) return 'frames from a client must be masked';
  return null;
}

/** Close codes a peer may send (RFC 6455 §7.4; 1004-1006 and 1015 are never on the wire). */
function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * `data` after the `used` bytes of `into`, in `into` when it has room, else in a buffer twice as
 * big (at most `limit`, the most that can come): bytes arriving in many small pieces are copied a
 * bounded number of times, and never more is held than twice what came.
 */
function append(into: Buffer | null, used: number, data: Buffer, limit: number): Buffer {
  const need = used + data.length;
  let out = into;
  if (out === null || out.length < need) {
    // not from the shared pool: a partial message may wait long, and would keep a pool slab alive
    out = Buffer.allocUnsafeSlow(Math.min(limit, Math.max(need, 2 * (into?.length ?? 0), 256)));
    if (into) into.copy(out, 0, 0, used);
  }
  data.copy(out, used);
  return out;
}

/** XORs `data[start, end)` with the 4-byte mask at `mask[at]` (the payload's first byte uses the mask's first). */
function unmask(data: Buffer, start: number, end: number, mask: Buffer, at: number): void {
  const m0 = mask[at];
  const m1 = mask[at + 1];
  const m2 = mask[at + 2];
  const m3 = mask[at + 3];
  let i = start;
  for (; i + 3 < end; i += 4) {
    data[i] ^= m0;
    data[i + 1] ^= m1;
    data[i + 2] ^= m2;
    data[i + 3] ^= m3;
  }
  for (let k = 0; i < end; i++, k++) data[i] ^= mask[at + k];
}
