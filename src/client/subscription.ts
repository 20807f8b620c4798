import { PresenceView, type PresenceEventWire, type PresenceMember, type PresenceReader, type PresenceStats } from './presence.js';
import type { Message, WireMessage } from './types.js';

/** What `client.subscribe` takes besides the filter. */
export interface SubscribeOptions {
  /** A cursor to resume after, `all`, or `now`. */
  since?: string;
  /** Keep this topic's member list and hear `join` / `leave` (a topic name; WebSocket and SSE carry the events). */
  presence?: boolean;
  /** What the member list shows about this client (WebSocket only; else the token's `info` claim). */
  info?: Record<string, unknown>;
}

type PresenceListener = (m: PresenceMember) => void;

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

  /** The member list it keeps, when it asked for presence. */
  readonly view: PresenceView | null;
  readonly info: Record<string, unknown> | undefined;
  private readonly listeners = { join: new Set<PresenceListener>(), leave: new Set<PresenceListener>() };

  constructor(
    readonly filter: string,
    private readonly onMessage: (m: Message) => void,
    opts: SubscribeOptions,
    private readonly onRemove: (s: ClientSubscription) => void,
    /** How presence is read now (the client's current transport). */
    private readonly reader: () => PresenceReader,
  ) {
    this.cursor = opts.since;
    this.info = opts.info;
    this.view = opts.presence ? new PresenceView((type, m) => this.listeners[type].forEach((cb) => cb(m))) : null;
  }

  /** Listens to members joining or leaving the topic (with `presence: true`); returns the way to stop. */
  on(event: 'join' | 'leave', cb: PresenceListener): () => void {
    this.listeners[event].add(cb);
    return () => this.listeners[event].delete(cb);
  }

  /** The topic's members: the kept list (with `presence: true`), else read from the server now. */
  async presence(): Promise<PresenceMember[]> {
    if (this.view && this.live) return this.view.list();
    const out: PresenceMember[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.reader().page(this.filter, cursor);
      out.push(...page.members);
      cursor = page.cursor;
    } while (cursor);
    return out;
  }

  /** Counts of the topic's members and distinct principals, from the server. */
  presenceStats(): Promise<PresenceStats> {
    return this.reader().stats(this.filter);
  }

  /** The transport carries this subscription's join/leave events from now on (set by the channel). */
  private live = false;

  /** The channel's subscription is in place (events flow): the list is read again. */
  presenceLive(reader: PresenceReader): void {
    if (!this.view || !this.active) return;
    this.live = true;
    this.view.resync(reader, this.filter).catch(() => {
      // read again at the next (re)subscription; the app sees the error through presence()
      this.live = false;
    });
  }

  /** A join/leave frame or event of this subscription's topic. */
  presenceEvent(type: 'join' | 'leave', e: PresenceEventWire): void {
    // over SSE a message published with the event name `join` or `leave` arrives the same way: it has no position
    if (this.active && e.topic === this.filter && typeof e.position === 'number' && e.member) this.view?.event(type, e);
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
