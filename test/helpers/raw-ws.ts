import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { waitFor } from './server.js';

/** The key suffix of RFC 6455 §1.3 for Sec-WebSocket-Accept. */
export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface FrameOptions {
  fin?: boolean;
  mask?: boolean;
  rsv?: number;
}

export interface Frame {
  fin: boolean;
  rsv: number;
  opcode: number;
  payload: Buffer;
}

/** A raw RFC 6455 client: we write the frames (masked or not, as a test wants) and parse the server's. */
export class RawWs {
  frames: Frame[] = [];
  head = '';
  closed = false;
  /** The server ended its side of the TCP connection. */
  ended = false;
  private buf = Buffer.alloc(0);
  private upgraded = false;
  private constructor(readonly sock: Socket) {}

  static async open(base: string, path: string, key = randomBytes(16).toString('base64')): Promise<RawWs> {
    const u = new URL(base);
    const sock = connect(Number(u.port), u.hostname);
    const c = new RawWs(sock);
    sock.on('data', (d: Buffer) => c.onData(d));
    sock.on('close', () => (c.closed = true));
    sock.on('end', () => (c.ended = true));
    sock.on('error', () => undefined);
    sock.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`);
    await waitFor(() => c.upgraded || c.closed, 'handshake answer');
    return c;
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    if (!this.upgraded) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.head = this.buf.subarray(0, end).toString();
      this.buf = this.buf.subarray(end + 4);
      this.upgraded = true;
    }
    for (;;) {
      if (this.buf.length < 2) return;
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) return;
      const b0 = this.buf[0];
      this.frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, payload: this.buf.subarray(off, off + len) });
      this.buf = this.buf.subarray(off + len);
    }
  }

  /** Sends one frame; masked unless `mask` is false. */
  send(opcode: number, payload: Buffer | string, opts: FrameOptions = {}): void {
    this.sock.write(RawWs.frame(opcode, payload, opts));
  }

  /** The bytes of one client frame; masked unless `mask` is false. */
  static frame(opcode: number, payload: Buffer | string, opts: FrameOptions = {}): Buffer {
    const data = Buffer.from(payload);
    const b0 = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode;
    const masked = opts.mask ?? true;
    const n = data.length;
    const lenBytes = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 0xff] : [127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
    lenBytes[0] |= masked ? 0x80 : 0;
    const key = randomBytes(4);
    const body = Buffer.from(data);
    if (masked) for (let i = 0; i < n; i++) body[i] ^= key[i & 3];
    return Buffer.concat([Buffer.from([b0, ...lenBytes]), masked ? key : Buffer.alloc(0), body]);
  }

  closeCode(): number | undefined {
    const f = this.frames.find((x) => x.opcode === 8);
    return f && f.payload.length >= 2 ? f.payload.readUInt16BE(0) : f ? 1005 : undefined;
  }

  async expectClose(code: number, what: string): Promise<void> {
    await waitFor(() => this.closeCode() !== undefined || this.closed, `close for ${what}`);
    assert.equal(this.closeCode(), code, what);
    this.sock.destroy();
  }

  texts(): string[] {
    return this.frames.filter((f) => f.opcode === 1).map((f) => f.payload.toString());
  }
}

export const closePayload = (code: number, reason = '') => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);
