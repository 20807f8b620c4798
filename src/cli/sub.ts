/** `omnipush sub`: an SSE client that prints each message as a JSON line and resumes on reconnect. */

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

export async function subscribeCommand(filters: string[], o: { url: string; token?: string; since?: string }): Promise<void> {
  let lastId = o.since;
  let delay = 250;
  const stop = () => process.exit(0);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  for (;;) {
    const url = new URL('/v1/sse', o.url);
    for (const f of filters) url.searchParams.append('topic', f);
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (lastId) headers['last-event-id'] = lastId;
    try {
      const r = await fetch(url, { headers });
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
        throw new Error(`${r.status}: ${msg}`);
      }
      delay = 250;
      const reader = new EventStreamReader((e) => {
        if (e.event === 'close') {
          // the server says why it ends the stream; we reconnect unless it was for good
          process.stderr.write(`omnipush: server closed the stream: ${e.data}\n`);
          return;
        }
        if (e.id) lastId = e.id;
        process.stdout.write(`${JSON.stringify({ id: e.id, event: e.event, data: e.data })}\n`);
      });
      const decoder = new TextDecoder();
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) reader.push(decoder.decode(chunk, { stream: true }));
    } catch (e) {
      process.stderr.write(`omnipush: stream interrupted (${(e as Error).message}); reconnecting\n`);
    }
    await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
    delay = Math.min(delay * 2, 10_000);
  }
}
