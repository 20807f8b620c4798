import type { Member, MemberView, PresenceBackend, PresenceEvent } from './presence.js';
import { filterMatches, isWildcardFilter } from './topic.js';

/**
 * Members of a lone node, in memory. Events are told synchronously with the change, so a list read
 * between two events reflects exactly the position it reports.
 */
export class LocalPresence implements PresenceBackend {
  private readonly byFilter = new Map<string, Map<string, Member>>();
  /** Filters with wildcards, matched against the topic at read time. */
  private readonly wildcards = new Set<string>();
  private position = 0;
  onEvent: (e: PresenceEvent) => void = () => undefined;

  add(filter: string, member: Member, maxMembers: number): void {
    let byId = this.byFilter.get(filter);
    if (!byId) {
      this.byFilter.set(filter, (byId = new Map()));
      if (isWildcardFilter(filter)) this.wildcards.add(filter);
    }
    if (byId.has(member.id) || byId.size >= maxMembers) return;
    byId.set(member.id, member);
    this.onEvent({ type: 'join', filter, position: ++this.position, member: member.toJSON() });
  }

  remove(filter: string, member: Member): void {
    const byId = this.byFilter.get(filter);
    if (!byId || byId.get(member.id) !== member) return;
    byId.delete(member.id);
    if (byId.size === 0) {
      this.byFilter.delete(filter);
      this.wildcards.delete(filter);
    }
    this.onEvent({ type: 'leave', filter, position: ++this.position, member: member.toJSON() });
  }

  members(topic: string): Promise<{ position: number; members: MemberView[] }> {
    const exact = this.byFilter.get(topic);
    const out: MemberView[] = exact ? [...exact.values()].map((m) => m.toJSON()) : [];
    if (this.wildcards.size > 0) {
      // one member subscribed through two matching filters is listed once
      const seen = new Set(out.map((m) => m.id));
      for (const f of this.wildcards) {
        if (!filterMatches(f, topic)) continue;
        for (const m of this.byFilter.get(f)!.values()) {
          if (seen.has(m.id)) continue;
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
