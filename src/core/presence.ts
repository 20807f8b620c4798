import type { ConnectionInfo, ConnectionObserver, Door } from './connections.js';
import { OmnipushError } from './errors.js';
import { canReadPresence, type Principal } from './grants.js';
import { filterMatches, filtersIntersect, isWildcardFilter } from './topic.js';

/** `presence.rules[]`: topics under `filter` keep a member list; `joinLeave` also sends join/leave events. */
export interface PresenceRule {
  filter: string;
  joinLeave: boolean;
  maxMembers: number;
}

/** One member as lists and events show it. */
export interface MemberView {
  /** Stable identity: principal and client id (or, without one, the connection). */
  id: string;
  sub: string;
  /** `<node>/<connection>`: unique in a cluster. */
  connection: string;
  door: Door;
  joinedAt: number;
  info?: Record<string, unknown>;
}

/**
 * What a connection holds presence under, kept on the connection (no map entry per connection):
 * its filters — a string for the common single one — with its key when that is a string (a stable
 * client id), which a later principal would change.
 */
type PresenceState = string | string[] | { key: string; f: string | string[] };

/** `joinedAt` is kept as ms since this process started: a small integer, not a boxed number per member. */
const BASE = Date.now();

/**
 * A member held by this node under one filter. One object per member and filter, which the local
 * backend lists too; its strings are the connection's own (principal id, connection id, node id),
 * and `id` and `connection` are made when read, so a member costs little beyond its connection.
 */
export class Member {
  /** Connections of this node holding it under the filter. */
  count = 1;
  timer: NodeJS.Timeout | null = null;
  /** In the local backend's list (false past `maxMembers`). */
  listed = false;
  private readonly at = Date.now() - BASE;

  constructor(
    /** Its key on this node: `<sub>/<client>` with a stable client id, else the connection itself. */
    readonly key: string | ConnectionInfo,
    readonly sub: string,
    private readonly node: string,
    private readonly conn: string,
    readonly door: Door,
    readonly info: Record<string, unknown> | undefined,
  ) {}

  get id(): string {
    return typeof this.key === 'string' ? this.key : `${encodeURIComponent(this.sub)}/${encodeURIComponent(`${this.node}/${this.conn}`)}`;
  }

  get joinedAt(): number {
    return BASE + this.at;
  }

  toJSON(): MemberView {
    const v: MemberView = { id: this.id, sub: this.sub, connection: `${this.node}/${this.conn}`, door: this.door, joinedAt: this.joinedAt };
    if (this.info) v.info = this.info;
    return v;
  }
}

export interface PresenceEvent {
  type: 'join' | 'leave';
  /** The filter the member holds (a wildcard one is a member of every ruled topic it matches). */
  filter: string;
  /** Position in the presence event sequence (per node alone, cluster-wide with Redis). */
  position: number;
  member: MemberView;
}

/** Where members are kept: this process alone, or Redis for a cluster. */
export interface PresenceBackend {
  /** `member` is now held on this node under `filter`; a filter already holding `maxMembers` does not list it. */
  add(filter: string, member: Member, maxMembers: number): void;
  /** This node no longer holds `member` under `filter`. */
  remove(filter: string, member: Member): void;
  /** Every member of the topic name `topic`, and the event position the list reflects. */
  /** The members of `topic`, sorted by id (callers do not modify the array). */
  members(topic: string): Promise<{ position: number; members: MemberView[] }>;
  /** Told of every join and leave, in position order. */
  onEvent: (e: PresenceEvent) => void;
  /** A lone node's backend lists this node's own members (filter → key → member) instead of a copy. */
  bind?(held: ReadonlyMap<string, ReadonlyMap<unknown, Member>>): void;
  close(): Promise<void>;
}

/** A connection that asked for the join/leave events of a topic. */
export interface PresenceWatcher {
  /** `json` is shared by every watcher of the topic: `{"topic","position","member"}`. */
  presenceEvent(topic: string, type: 'join' | 'leave', json: string): void;
}

export interface PresencePage {
  topic: string;
  position: number;
  members: MemberView[];
  /** Pass as `cursor` for the next page; absent on the last. */
  cursor?: string;
}

export interface PresenceStats {
  topic: string;
  position: number;
  /** Members (a principal with one client id counts once, however many connections it has). */
  connections: number;
  principals: number;
}

export interface PresenceOptions {
  nodeId: string;
  pollGraceMs: number;
  leaveGraceMs: number;
  maxPageSize: number;
}

/**
 * Who is subscribed to presence-ruled topics, on every door. It hears the connection registry
 * (connects, subscription changes, disconnects), never the fan-out: a topic no rule covers costs
 * one rule check per subscription change and nothing per message.
 *
 * Membership is counted per node (member id + filter → connections holding it), so the backend
 * hears one add when the first connection holds a member and one remove when the last let go —
 * after a grace: `pollGrace` for long-poll (between polls nothing is held), `leaveGrace` for a
 * client with a stable id (a reconnect is the same member and cancels the leave).
 */
export class Presence implements ConnectionObserver {
  private readonly held = new Map<string, Map<string | ConnectionInfo, Member>>();
  private readonly watchers = new Map<string, Set<PresenceWatcher>>();

  constructor(
    readonly rules: readonly PresenceRule[],
    private readonly backend: PresenceBackend,
    private readonly opts: PresenceOptions,
  ) {
    backend.onEvent = (e) => this.dispatch(e);
    backend.bind?.(this.held);
  }

  /** The rule of the topic name `topic` (first match), if any. */
  ruleOf(topic: string): PresenceRule | undefined {
    for (const r of this.rules) if (filterMatches(r.filter, topic)) return r;
    return undefined;
  }

  /** The rule a subscription `filter` is a member under (first that overlaps it), if any. */
  private ruleFor(filter: string): PresenceRule | undefined {
    for (const r of this.rules) if (filtersIntersect(r.filter, filter)) return r;
    return undefined;
  }

  connected(c: ConnectionInfo): void {
    this.sync(c, c.subscriptions());
  }

  subscriptionsChanged(c: ConnectionInfo): void {
    this.sync(c, c.subscriptions());
  }

  disconnected(c: ConnectionInfo): void {
    if (c.presenceState !== undefined) this.sync(c, []);
  }

  /** Brings `c`'s memberships in line with its subscriptions `subs` (MQTT `$share/...` counts as its filter). */
  private sync(c: ConnectionInfo, subs: string[]): void {
    let want: string[] | null = null;
    for (let f of subs) {
      if (f.startsWith('$share/')) f = f.slice(f.indexOf('/', 7) + 1);
      if (!this.ruleFor(f)) continue;
      if (!want) want = [f];
      else if (!want.includes(f)) want.push(f);
    }
    const had = c.presenceState as PresenceState | undefined;
    if (had === undefined && !want) return;
    let oldKey: string | ConnectionInfo | undefined;
    let before: string[] = [];
    if (had !== undefined) {
      const f = typeof had === 'string' || Array.isArray(had) ? had : had.f;
      oldKey = typeof had === 'string' || Array.isArray(had) ? c : had.key;
      before = typeof f === 'string' ? [f] : f;
    }
    const key = want ? this.memberKey(c) : undefined;
    // a socket that authenticated after subscribing is another member now: the old one leaves
    let same = had !== undefined && key === oldKey;
    if (same && typeof key === 'object') same = this.held.get(before[0])?.get(key)?.sub === c.principal.id;
    if (oldKey !== undefined) for (const f of before) if (!same || !want?.includes(f)) this.exit(c, oldKey, f);
    if (want && key !== undefined) for (const f of want) if (!same || !before.includes(f)) this.enter(c, key, f);
    if (!want || key === undefined) return void (c.presenceState = undefined);
    const f = want.length === 1 ? want[0] : want;
    c.presenceState = typeof key === 'string' ? { key, f } : f;
  }

  /** A stable client id (or a long-poller's address) makes a string key; else the connection is its own member. */
  private memberKey(c: ConnectionInfo): string | ConnectionInfo {
    if (c.clientId === undefined && c.door !== 'longpoll') return c;
    const client = c.clientId ?? `longpoll@${c.address}`;
    return `${encodeURIComponent(c.principal.id)}/${encodeURIComponent(client)}`;
  }

  private enter(c: ConnectionInfo, key: string | ConnectionInfo, filter: string): void {
    let byKey = this.held.get(filter);
    if (!byKey) this.held.set(filter, (byKey = new Map()));
    const m = byKey.get(key);
    if (m) {
      m.count++;
      if (m.timer) {
        clearTimeout(m.timer);
        m.timer = null;
      }
      return;
    }
    const member = new Member(key, c.principal.id, this.opts.nodeId, c.id, c.door, c.presenceInfo ?? c.principal.presenceInfo);
    byKey.set(key, member);
    this.backend.add(filter, member, this.ruleFor(filter)!.maxMembers);
  }

  private exit(c: ConnectionInfo, key: string | ConnectionInfo, filter: string): void {
    const byKey = this.held.get(filter);
    const m = byKey?.get(key);
    if (!byKey || !m || --m.count > 0) return;
    const grace = c.door === 'longpoll' ? this.opts.pollGraceMs : c.clientId !== undefined ? this.opts.leaveGraceMs : 0;
    if (grace <= 0) return this.drop(filter, byKey, m);
    m.timer = setTimeout(() => {
      m.timer = null;
      if (m.count === 0) this.drop(filter, byKey, m);
    }, grace);
    m.timer.unref();
  }

  private drop(filter: string, byKey: Map<string | ConnectionInfo, Member>, m: Member): void {
    byKey.delete(m.key);
    if (byKey.size === 0 && this.held.get(filter) === byKey) this.held.delete(filter);
    this.backend.remove(filter, m);
  }

  /** Why `p` may not read the presence of `topic`, or may not follow its events (`events`); throws. */
  check(p: Principal, topic: string, events: boolean): PresenceRule {
    if (isWildcardFilter(topic)) throw new OmnipushError('invalid_topic', `presence is read per topic name, not a filter: ${JSON.stringify(topic)}`);
    if (!canReadPresence(p, topic)) throw new OmnipushError('forbidden', `no presence grant for ${JSON.stringify(topic)}`);
    const rule = this.ruleOf(topic);
    if (!rule) throw new OmnipushError('not_found', `no presence rule covers ${JSON.stringify(topic)}`);
    if (events && !rule.joinLeave) throw new OmnipushError('invalid_request', `the presence rule of ${JSON.stringify(topic)} has no join/leave events`);
    return rule;
  }

  /** One page of `topic`'s members, ordered by id; `cursor` is the previous page's. */
  async page(p: Principal, topic: string, cursor: string | undefined, limit: number | undefined): Promise<PresencePage> {
    this.check(p, topic, false);
    const max = this.opts.maxPageSize;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > max)) throw new OmnipushError('invalid_request', `limit must be an integer from 1 to ${max} (presence.maxPageSize)`);
    let after: string | undefined;
    if (cursor !== undefined && cursor !== '') {
      after = Buffer.from(cursor, 'base64url').toString('utf8');
      if (after === '') throw new OmnipushError('invalid_cursor', 'not a presence cursor');
    }
    const { position, members } = await this.backend.members(topic);
    let start = 0;
    if (after !== undefined) {
      // binary search: the first member after the cursor
      let hi = members.length;
      while (start < hi) {
        const mid = (start + hi) >>> 1;
        if (members[mid].id <= after) start = mid + 1;
        else hi = mid;
      }
    }
    const n = limit ?? max;
    const out = members.slice(start, start + n);
    const page: PresencePage = { topic, position, members: out };
    if (start + n < members.length) page.cursor = Buffer.from(out[out.length - 1].id).toString('base64url');
    return page;
  }

  async stats(p: Principal, topic: string): Promise<PresenceStats> {
    this.check(p, topic, false);
    const { position, members } = await this.backend.members(topic);
    const principals = new Set<string>();
    for (const m of members) principals.add(m.sub);
    return { topic, position, connections: members.length, principals: principals.size };
  }

  /**
   * The topic names among a subscription's `filters` whose join/leave events `p` may have, each
   * checked as a presence read with events; wildcard filters name no topic and are left out.
   */
  eventTopics(p: Principal, filters: string[]): string[] {
    const topics = filters.filter((f) => !isWildcardFilter(f));
    if (topics.length === 0) throw new OmnipushError('invalid_request', 'presence events need at least one topic name (not a wildcard filter)');
    for (const t of topics) this.check(p, t, true);
    return topics;
  }

  /** `w` gets the join/leave events of `topic` (checked with {@link check} first). */
  watch(topic: string, w: PresenceWatcher): void {
    let set = this.watchers.get(topic);
    if (!set) this.watchers.set(topic, (set = new Set()));
    set.add(w);
  }

  unwatch(topic: string, w: PresenceWatcher): void {
    const set = this.watchers.get(topic);
    if (!set?.delete(w)) return;
    if (set.size === 0) this.watchers.delete(topic);
  }

  /** To the watchers of every topic the member's filter matches; the JSON is made once per topic. */
  private dispatch(e: PresenceEvent): void {
    if (this.watchers.size === 0) return;
    if (!isWildcardFilter(e.filter)) {
      const set = this.watchers.get(e.filter);
      if (set) this.send(set, e.filter, e);
      return;
    }
    for (const [topic, set] of this.watchers) if (filterMatches(e.filter, topic)) this.send(set, topic, e);
  }

  // every watcher was checked for a joinLeave rule of its topic before it was added (see watch)
  private send(set: Set<PresenceWatcher>, topic: string, e: PresenceEvent): void {
    const json = JSON.stringify({ topic, position: e.position, member: e.member });
    for (const w of set) w.presenceEvent(topic, e.type, json);
  }

  /** Members held on this node (all filters), for figures. */
  get heldCount(): number {
    let n = 0;
    for (const m of this.held.values()) n += m.size;
    return n;
  }

  async close(): Promise<void> {
    for (const byKey of this.held.values()) for (const m of byKey.values()) if (m.timer) clearTimeout(m.timer);
    await this.backend.close();
  }
}
