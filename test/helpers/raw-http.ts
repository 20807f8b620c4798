import { connect, type Socket } from 'node:net';
import { waitFor, within } from './server.js';

export interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
}

/**
 * One keep-alive connection that writes raw bytes and reads whole HTTP/1.1 responses
 * (Content-Length bodies) off it, in order: for tests of how requests arrive on the wire.
 */
export class RawHttpClient {
  readonly socket: Socket;
  /** Resolves once connected. */
  readonly ready: Promise<void>;
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;

  constructor(base: string) {
    const u = new URL(base);
    this.socket = connect(Number(u.port), u.hostname);
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.waiting?.();
    });
    this.socket.on('error', () => undefined);
  }

  send(text: string): void {
    this.socket.write(text);
  }

  get(path: string, extra = ''): void {
    this.send(`GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`);
  }

  /** The next whole response; rejects when the connection closes first, or after `ms`. */
  next(ms = 10_000): Promise<RawResponse> {
    return within(
      (async () => {
        for (;;) {
          const r = this.take();
          if (r) return r;
          if (this.ended) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf.toString())}`);
          await new Promise<void>((resolve) => (this.waiting = resolve));
          this.waiting = null;
        }
      })(),
      ms,
      'an HTTP response',
    );
  }

  /** The next `n` responses, in order. */
  async responses(n: number, ms = 10_000): Promise<RawResponse[]> {
    const out: RawResponse[] = [];
    while (out.length < n) out.push(await this.next(ms));
    return out;
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves when the server has closed the connection, with whatever it sent that was not read. */
  async closed(ms = 10_000): Promise<string> {
    await waitFor(() => this.ended, 'the connection to close', ms);
    return this.buf.toString();
  }

  private take(): RawResponse | undefined {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    const length = Number(headers['content-length'] ?? 0);
    if (this.buf.length < end + 4 + length) return undefined;
    const body = this.buf.subarray(end + 4, end + 4 + length).toString('utf8');
    this.buf = this.buf.subarray(end + 4 + length);
    return { status: Number(lines[0].split(' ')[1]), headers, body };
  }
}
