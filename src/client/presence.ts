import { errorFromResponse, OmnipushClientError } from './errors.js';
import type { ClientOptions } from './types.js';

/** One member of a topic's presence (docs/presence.md). */
export interface PresenceMember {
  /** Stable identity: principal and client id (or connection, without one). */
  id: string;
  /** The principal (`sub` of its token). */
  sub: string;
  /** `<node>/<connection>` it joined with. */
  connection: string;
  door: 'sse' | 'websocket' | 'longpoll' | 'mqtt';
  /** ms since the epoch. */
  joinedAt: number;
  info?: Record<string, unknown>;
}

export interface PresenceStats {
  topic: string;
  position: number;
  /** Members: one per principal and client id. */
  connections: number;
  principals: number;
}

/** One page of a member list as the server sends it. */
export interface PresencePageWire {
  position: number;
  members: PresenceMember[];
  cursor?: string;
}

/** How a subscription reads presence: over the WebSocket when that is the transport, else HTTP. */
export interface PresenceReader {
  page(topic: string, cursor: string | undefined): Promise<PresencePageWire>;
  stats(topic: string): Promise<PresenceStats>;
}

/** A join or leave as the server sends it. */
export interface PresenceEventWire {
  topic: string;
  position: number;
  member: PresenceMember;
}

/**
 * The member list a subscription keeps: events are taken from the moment the subscription is
 * made, then the list is read (page by page, the first page's position marking what it already
 * reflects), then the events after that position are applied in order. A join or leave an app
 * hears is one that changed the list, never one the list already held.
 */
export class PresenceView {
  readonly members = new Map<string, PresenceMember>();
  private position = -1;
  private pending: Array<['join' | 'leave', PresenceEventWire]> | null = [];
  /** Bumped at each resync, so that an older read in flight is dropped. */
  private epoch = 0;
  private loading: Promise<void> | null = null;

  constructor(private readonly emit: (type: 'join' | 'leave', m: PresenceMember) => void) {}

  /** The (re)subscribed stream is live: events from now on are kept, and the list is read again. */
  resync(reader: PresenceReader, topic: string): Promise<void> {
    const epoch = ++this.epoch;
    this.pending = [];
    const load = (async () => {
      const fresh = new Map<string, PresenceMember>();
      let cursor: string | undefined;
      let position = -1;
      do {
        const page = await reader.page(topic, cursor);
        if (epoch !== this.epoch) return;
        if (position < 0) position = page.position;
        for (const m of page.members) fresh.set(m.id, m);
        cursor = page.cursor;
      } while (cursor);
      // what changed while the connection was away is told as joins and leaves
      for (const [id, m] of this.members) if (!fresh.has(id)) this.set('leave', m);
      for (const [id, m] of fresh) if (!this.members.has(id)) this.set('join', m);
      this.position = position;
      const later = this.pending ?? [];
      this.pending = null;
      for (const [type, e] of later) this.apply(type, e);
    })();
    this.loading = load;
    return load;
  }

  /** A join or leave frame of this subscription's topic. */
  event(type: 'join' | 'leave', e: PresenceEventWire): void {
    if (this.pending) this.pending.push([type, e]);
    else this.apply(type, e);
  }

  private apply(type: 'join' | 'leave', e: PresenceEventWire): void {
    if (e.position <= this.position) return;
    this.position = e.position;
    const had = this.members.has(e.member.id);
    if (type === 'join' && !had) this.set('join', e.member);
    else if (type === 'leave' && had) this.set('leave', this.members.get(e.member.id)!);
  }

  private set(type: 'join' | 'leave', m: PresenceMember): void {
    if (type === 'join') this.members.set(m.id, m);
    else this.members.delete(m.id);
    this.emit(type, m);
  }

  /** The list once the current read is done. */
  async list(): Promise<PresenceMember[]> {
    while (this.loading) {
      const l = this.loading;
      await l;
      if (l === this.loading) break;
    }
    return [...this.members.values()];
  }
}

/** Presence reads over HTTP (`GET /v1/presence`, `/v1/presence/stats`), for SSE and long-poll. */
export function httpPresenceReader(url: string, opts: ClientOptions): PresenceReader {
  const f = opts.fetch ?? globalThis.fetch;
  const get = async <T>(u: string): Promise<T> => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let r: Response;
    try {
      r = await f(u, { headers });
    } catch (e) {
      throw new OmnipushClientError(`cannot reach ${u}: ${(e as Error).message}`, { code: 'unreachable' });
    }
    if (r.status !== 200) throw await errorFromResponse(r);
    return (await r.json()) as T;
  };
  return {
    page: (topic, cursor) => get<PresencePageWire>(`${url}?topic=${encodeURIComponent(topic)}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`),
    stats: (topic) => get<PresenceStats>(`${url}/stats?topic=${encodeURIComponent(topic)}`),
  };
}
