import type { Member, MemberView, PresenceBackend, PresenceEvent } from './presence.js';
import { filterMatches, isWildcardFilter } from './topic.js';

/**
 * Members of a lone node: the presence registry's own per-node members are the list (no copy),
 * those marked `listed` (a filter's first `maxMembers`). Events are told synchronously with the
 * change, so a list read between two events reflects exactly the position it reports.
 */
export class LocalPresence implements PresenceBackend {
  private held: ReadonlyMap<string, ReadonlyMap<unknown, Member>> = new Map();
  /** Listed members per filter. */
  private readonly counts = new Map<string, number>();
  /** Filters with wildcards, matched against the topic at read time. */
  private readonly wildcards = new Set<string>();
  private position = 0;
  onEvent: (e: PresenceEvent) => void = () => undefined;

  bind(held: ReadonlyMap<string, ReadonlyMap<unknown, Member>>): void {
    this.held = held;
  }

  add(filter: string, member: Member, maxMembers: number): void {
    const n = this.counts.get(filter) ?? 0;
    if (member.listed || n >= maxMembers) return;
    member.listed = true;
    this.counts.set(filter, n + 1);
    if (n === 0 && isWildcardFilter(filter)) this.wildcards.add(filter);
    this.onEvent({ type: 'join', filter, position: ++this.position, member: member.toJSON() });
  }

  remove(filter: string, member: Member): void {
    if (!member.listed) return;
    member.listed = false;
    const n = (this.counts.get(filter) ?? 1) - 1;
    if (n > 0) this.counts.set(filter, n);
    else {
      this.counts.delete(filter);
      this.wildcards.delete(filter);
    }
    this.onEvent({ type: 'leave', filter, position: ++this.position, member: member.toJSON() });
  }

  members(topic: string): Promise<{ position: number; members: MemberView[] }> {
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
    return Promise.resolve({ position: this.position, members: out });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
