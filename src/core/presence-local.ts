import type { Member, MemberView, PresenceBackend, PresenceEvent } from './presence.js';
import { filterMatches, isWildcardFilter } from './topic.js';

/**
 * Members of a lone node: the presence registry's own per-node members are the list (no copy),
 * those marked `listed` (a filter's first `maxMembers`). Events are told synchronously with the
 * change, so a list read between two events reflects exactly the position it reports.
 */
/** Read topics whose built list is kept. */
const BUILT_TOPICS = 64;

export class LocalPresence implements PresenceBackend {
  private held: ReadonlyMap<string, ReadonlyMap<unknown, Member>> = new Map();
  /** Listed members per filter. */
  private readonly counts = new Map<string, number>();
  /** Filters with wildcards, matched against the topic at read time. */
  private readonly wildcards = new Set<string>();
  private position = 0;
  /** The last change of each held filter, and of any wildcard filter: what a built list is checked against. */
  private readonly changes = new Map<string, number>();
  private wildcardChanges = 0;
  private stamps = 0;
  /**
   * The lists last built for read topics. A list read builds and sorts every member (10k members:
   * milliseconds of the loop); many readers of one room between two changes of it pay that once.
   */
  private readonly built = new Map<string, { changes: number; wildcardChanges: number; members: MemberView[] }>();
  onEvent: (e: PresenceEvent) => void = () => undefined;

  bind(held: ReadonlyMap<string, ReadonlyMap<unknown, Member>>): void {
    this.held = held;
  }

  add(filter: string, member: Member, maxMembers: number): void {
    const n = this.counts.get(filter) ?? 0;
    if (member.listed || n >= maxMembers) return;
    member.listed = true;
    this.counts.set(filter, n + 1);
    this.changed(filter);
    if (n === 0 && isWildcardFilter(filter)) this.wildcards.add(filter);
    this.onEvent({ type: 'join', filter, position: ++this.position, member: member.toJSON() });
  }

  remove(filter: string, member: Member): void {
    if (!member.listed) {
      if (!this.held.get(filter)?.size) this.changes.delete(filter);
      return;
    }
    member.listed = false;
    this.changed(filter);
    const n = (this.counts.get(filter) ?? 1) - 1;
    if (n > 0) this.counts.set(filter, n);
    else {
      this.counts.delete(filter);
      this.wildcards.delete(filter);
    }
    this.onEvent({ type: 'leave', filter, position: ++this.position, member: member.toJSON() });
  }

  private changed(filter: string): void {
    // stamps from one counter never repeat, so a filter dropped and taken again never matches an old list
    const stamp = ++this.stamps;
    if (isWildcardFilter(filter)) this.wildcardChanges = stamp;
    // a filter nobody holds any more keeps no stamp: its members are none, whatever was built before
    if (this.held.get(filter)?.size) this.changes.set(filter, stamp);
    else this.changes.delete(filter);
  }

  /** The members of `topic`, sorted by id; the same array until the topic's members change (callers do not modify it). */
  members(topic: string): Promise<{ position: number; members: MemberView[] }> {
    const changes = this.changes.get(topic) ?? 0;
    const hit = this.built.get(topic);
    if (hit && hit.changes === changes && hit.wildcardChanges === this.wildcardChanges) return Promise.resolve({ position: this.position, members: hit.members });
    const out = this.build(topic);
    out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (this.built.size >= BUILT_TOPICS) this.built.delete(this.built.keys().next().value as string);
    this.built.set(topic, { changes, wildcardChanges: this.wildcardChanges, members: out });
    return Promise.resolve({ position: this.position, members: out });
  }

  private build(topic: string): MemberView[] {
    const out: MemberView[] = [];
    const exact = this.held.get(topic);
    if (exact) for (const m of exact.values()) if (m.listed) out.push(m.toJSON());
    if (this.wildcards.size > 0) {
      // one member subscribed through two matching filters is listed once
      const seen = new Set(out.map((m) => m.id));
      for (const f of this.wildcards) {
        if (!filterMatches(f, topic)) continue;
        for (const m of this.held.get(f)?.values() ?? []) {
          if (!m.listed || seen.has(m.id)) continue;
          seen.add(m.id);
          out.push(m.toJSON());
        }
      }
    }
    return out;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
