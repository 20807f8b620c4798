import type { Message, WireMessage } from './types.js';

/** Does `filter` match `topic`? (MQTT rules; `$` topics are not matched by a leading wildcard.) */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/**
 * Cursors look like `<epoch>_<seq base36>`: within one epoch the seq orders them. The client relies
 * on that to drop what it has already seen; a new epoch (another store) starts afresh.
 */
function cursorParts(c: string): [string, number] {
  const i = c.lastIndexOf('_');
  return [c.slice(0, i), parseInt(c.slice(i + 1), 36)];
}

function decode(m: WireMessage): Message {
  const out: Message = { topic: m.topic, cursor: m.cursor };
  if (m.data !== undefined) out.data = m.data;
  if (m.data_base64 !== undefined) {
    const bin = atob(m.data_base64);
    out.bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  }
  if (m.event) out.event = m.event;
  if (m.contentType) out.contentType = m.contentType;
  if (m.properties) out.properties = m.properties;
  if (m.retain) out.retain = true;
  return out;
}

/** One app subscription: where it is in the stream, and what it has already handed over. */
export class ClientSubscription {
  /** The last cursor handed to the app: where a reconnect resumes. */
  cursor: string | undefined;
  active = true;

  constructor(
    readonly filter: string,
    private readonly onMessage: (m: Message) => void,
    since: string | undefined,
    private readonly onRemove: (s: ClientSubscription) => void,
  ) {
    this.cursor = since;
  }

  /** Where to start on (re)connect: the last cursor seen, else what the app asked for. */
  get since(): string | undefined {
    return this.cursor;
  }

  /** Hands a message over unless it was already handed over (by cursor) or does not match. */
  offer(m: WireMessage): void {
    if (!this.active || !topicMatches(this.filter, m.topic)) return;
    if (this.cursor && this.cursor !== 'all' && this.cursor !== 'now') {
      const [e1, s1] = cursorParts(this.cursor);
      const [e2, s2] = cursorParts(m.cursor);
      if (e1 === e2 && s2 <= s1) return;
    }
    this.cursor = m.cursor;
    this.onMessage(decode(m));
  }

  /** Stops delivery and tells the client to drop it from the server. */
  unsubscribe(): void {
    if (!this.active) return;
    this.active = false;
    this.onRemove(this);
  }
}
