/** `omnipush sub`: an SSE client that prints each message (topic and payload by default) and resumes on reconnect. */

interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/** Splits an event stream into events (WHATWG rules: CR, LF, CRLF line ends; data lines joined by LF). */
export class EventStreamReader {
  private rest = '';
  private data: string[] = [];
  private event = '';
  private hasData = false;
  lastId: string | undefined;

  constructor(private readonly onEvent: (e: SseEvent) => void) {}

  push(chunk: string): void {
    let text = this.rest + chunk;
    const cr = text.endsWith('\r') ? '\r' : '';
    if (cr) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    this.rest = lines.pop()! + cr;
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.hasData) this.onEvent({ id: this.lastId, event: this.event || 'message', data: this.data.join('\n') });
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
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
  }
}

/** A message as the server's SSE `format=json` envelope carries it. */
interface Envelope {
  topic: string;
  cursor: string;
  data?: string;
  data_base64?: string;
  event?: string;
  publishedAt?: number;
}

export interface SubOptions {
  url: string;
  token?: string;
  since?: string;
  /** A line template: `{topic}`, `{data}`, `{cursor}`, `{event}`, `{time}` (ISO), `{json}`. */
  format?: string;
  json?: boolean;
  /** Failed connection attempts in a row before giving up; default: never give up. */
  retries?: number;
}

const FIELDS = /\{(topic|data|cursor|event|time|json)\}/g;

/** One output line for a message: `topic data` by default (like `mosquitto_sub -v`), or the template, or JSON. */
export function formatMessage(m: Envelope, o: Pick<SubOptions, 'format' | 'json'>): string {
  if (o.json) return JSON.stringify(m);
  const data = m.data ?? m.data_base64 ?? '';
  if (!o.format) return `${m.topic} ${data}`;
  return o.format.replace(/\\n/g, '\n').replace(/\\t/g, '\t').replace(FIELDS, (_, f: string) => {
    if (f === 'topic') return m.topic;
    if (f === 'data') return data;
    if (f === 'cursor') return m.cursor;
    if (f === 'event') return m.event ?? 'message';
    if (f === 'time') return m.publishedAt !== undefined ? new Date(m.publishedAt).toISOString() : '';
    return JSON.stringify(m);
  });
}

/** `fetch failed` says nothing; its cause (ECONNREFUSED, ENOTFOUND ...) is what an operator needs. */
function reason(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message;
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)}s` : `${ms}ms`;
}

export async function subscribeCommand(filters: string[], o: SubOptions): Promise<void> {
  let lastId = o.since;
  let delay = 1000;
  let failures = 0;
  const stop = () => process.exit(0);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const base = new URL('/v1/sse', o.url);
  base.searchParams.set('format', 'json');
  for (const f of filters) base.searchParams.append('topic', f);
  for (;;) {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (lastId) headers['last-event-id'] = lastId;
    let why: string;
    let connected = false;
    try {
      const r = await fetch(base, { headers });
      if (r.status !== 200) {
        const text = await r.text();
        let msg = text;
        try {
          msg = (JSON.parse(text) as { error: { message: string } }).error.message;
        } catch {
          /* not JSON */
        }
        // client errors will not get better by retrying
        if (r.status >= 400 && r.status < 500) {
          process.stderr.write(`omnipush: ${r.status}: ${msg}\n`);
          process.exit(1);
        }
        throw Object.assign(new Error(`${r.status}: ${msg}`), { answered: true });
      }
      if (failures > 0) process.stderr.write(`omnipush: connected to ${o.url}\n`);
      delay = 1000;
      failures = 0;
      connected = true;
      const reader = new EventStreamReader((e) => {
        if (e.event === 'close') {
          // the server says why it ends the stream; we reconnect unless it was for good
          process.stderr.write(`omnipush: server closed the stream: ${e.data}\n`);
          return;
        }
        if (e.id) lastId = e.id;
        let m: Envelope;
        try {
          m = JSON.parse(e.data) as Envelope;
        } catch {
          return;
        }
        process.stdout.write(`${formatMessage(m, o)}\n`);
      });
      const decoder = new TextDecoder();
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) reader.push(decoder.decode(chunk, { stream: true }));
      why = 'the stream ended';
    } catch (e) {
      why = (e as { answered?: boolean }).answered ? (e as Error).message : reason(e);
    }
    if (connected) {
      process.stderr.write(`omnipush: stream from ${o.url} interrupted (${why}); reconnecting\n`);
      await new Promise((r) => setTimeout(r, 250 * (0.5 + Math.random())));
      continue;
    }
    failures++;
    if (o.retries !== undefined && failures > o.retries) {
      process.stderr.write(`omnipush: cannot reach ${o.url}: ${why}; giving up after ${failures} attempts\n`);
      process.exit(1);
    }
    // one line per attempt, with the wait growing so that a down server does not flood the terminal
    process.stderr.write(`omnipush: cannot reach ${o.url}: ${why}; retrying in ${seconds(delay)}\n`);
    await new Promise((r) => setTimeout(r, delay * (0.75 + Math.random() / 2)));
    delay = Math.min(delay * 2, 30_000);
  }
}
