import { request, type IncomingMessage } from 'node:http';

export interface RawSse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The first megabyte received, as text. */
  text(): string;
  /** Events parsed from the stream so far (a deliberately small parser of the WHATWG rules). */
  events(): Array<{ id?: string; event: string; data: string }>;
  ended: Promise<void>;
  close(): void;
  /** Stop reading from the socket (to simulate a slow consumer). */
  pause(): void;
}

/**
 * Opens an SSE stream with node's own HTTP client so tests can see status, headers and raw bytes.
 * Resolves once the response head arrived.
 */
export function openRawSse(url: string, headers: Record<string, string> = {}): Promise<RawSse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      let buf = '';
      const parser = new SseParser();
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (buf.length < 1_000_000) buf += d;
        parser.push(d);
      });
      const ended = new Promise<void>((r) => {
        res.once('end', r);
        res.once('close', r);
        res.once('error', () => r());
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        text: () => buf,
        events: () => parser.events,
        ended,
        close: () => {
          req.destroy();
          res.destroy();
        },
        pause: () => {
          res.pause();
          res.socket.pause();
        },
      });
    });
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
