import type { ConnectionInfo, ConnectionObserver } from '../core/connections.js';
import type { Webhooks } from './webhooks.js';

/**
 * Turns the connection registry's changes into `connect`, `disconnect`, `subscribe` and
 * `unsubscribe` events. Doors report a connection's filters as a whole, so the filters last seen
 * per connection are kept (only when subscribe events are wanted) to tell what was added or dropped.
 */
export class ConnectionEvents implements ConnectionObserver {
  private readonly seen = new Map<string, Set<string>>();
  private readonly trackFilters: boolean;

  constructor(
    private readonly hooks: Webhooks,
    private readonly nodeId: string,
  ) {
    this.trackFilters = hooks.wanted('subscribe') || hooks.wanted('unsubscribe');
  }

  private about(c: ConnectionInfo): Record<string, unknown> {
    return { connection: c.id, node: this.nodeId, door: c.door, principal: c.principal.id, address: c.address };
  }

  connected(c: ConnectionInfo): void {
    if (this.hooks.wanted('connect')) this.hooks.emit('connect', this.about(c));
    if (this.trackFilters) {
      this.seen.set(c.id, new Set());
      this.subscriptionsChanged(c);
    }
  }

  disconnected(c: ConnectionInfo, reason: string): void {
    if (this.trackFilters) {
      const had = this.seen.get(c.id);
      this.seen.delete(c.id);
      if (had && had.size && this.hooks.wanted('unsubscribe')) this.hooks.emit('unsubscribe', { ...this.about(c), filters: [...had], reason: 'disconnected' });
    }
    if (this.hooks.wanted('disconnect')) this.hooks.emit('disconnect', { ...this.about(c), reason });
  }

  subscriptionsChanged(c: ConnectionInfo): void {
    const had = this.seen.get(c.id);
    if (!had) return;
    const now = new Set(c.subscriptions());
    const added: string[] = [];
    const dropped: string[] = [];
    for (const f of now) if (!had.has(f)) added.push(f);
    for (const f of had) if (!now.has(f)) dropped.push(f);
    this.seen.set(c.id, now);
    if (added.length && this.hooks.wanted('subscribe')) this.hooks.emit('subscribe', { ...this.about(c), filters: added });
    if (dropped.length && this.hooks.wanted('unsubscribe')) this.hooks.emit('unsubscribe', { ...this.about(c), filters: dropped });
  }
}
