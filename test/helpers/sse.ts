import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface RawSse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The first megabyte received, as text. */
  text(): string;
  /** Events parsed from the stream so far (a deliberately small parser of the WHATWG rules). */
  events(): Array<{ id?: string; event: string; data: string }>;
  ended: Promise<void>;
  /** Whether {@link ended} has settled. */
  done(): boolean;
  close(): void;
  /** Stop reading from the socket (to simulate a slow consumer). */
  pause(): void;
  /** Read again after {@link pause}. */
  resume(): void;
  /** The client's port of the stream's connection. */
  localPort: number;
}

/**
 * Opens an SSE stream with node's own HTTP client so tests can see status, headers and raw bytes.
 * Resolves once the response head arrived. An `https:` URL is trusted with `ca`.
 */
export function openRawSse(url: string, headers: Record<string, string> = {}, ca?: string): Promise<RawSse> {
  return new Promise((resolve, reject) => {
    const opts = { headers: { Accept: 'text/event-stream', ...headers } };
    const onResponse = (res: IncomingMessage) => {
      let buf = '';
      const parser = new SseParser();
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (buf.length < 1_000_000) buf += d;
        parser.push(d);
      });
      let done = false;
      const ended = new Promise<void>((r) => {
        const end = () => {
          done = true;
          r();
        };
        res.once('end', end);
        res.once('close', end);
        res.once('error', end);
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        text: () => buf,
        events: () => parser.events,
        ended,
        done: () => done,
        close: () => {
          req.destroy();
          res.destroy();
        },
        pause: () => {
          res.pause();
          res.socket.pause();
        },
        resume: () => {
          res.socket.resume();
          res.resume();
        },
        localPort: res.socket.localPort!,
      });
    };
    const req = url.startsWith('https:') ? httpsRequest(url, { ...opts, ca }, onResponse) : request(url, opts, onResponse);
    req.on('error', reject);
    req.end();
  });
}

/**
 * Incremental parser of the WHATWG event-stream rules (lines split on CRLF, CR, LF; data lines
 * joined by LF; `id` kept across events), small enough to read at a glance.
 */
export class SseParser {
  readonly events: Array<{ id?: string; event: string; data: string }> = [];
  private rest = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private hasData = false;

  push(chunk: string): void {
    let text = this.rest + chunk;
    // a CR at the very end may be the first half of a CRLF: keep it for the next chunk
    const cr = text.endsWith('\r') ? '\r' : '';
    if (cr) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    this.rest = lines.pop()! + cr;
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.hasData) this.events.push({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
      this.data = [];
      this.event = '';
      this.hasData = false;
      return;
    }
    if (line.startsWith(':')) return;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') {
      this.data.push(value);
      this.hasData = true;
    } else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}
