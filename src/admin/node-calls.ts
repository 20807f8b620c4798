import type { ClusterCalls } from '../cluster/cluster-calls.js';
import { OmnipushError } from '../core/errors.js';
import type { TransportContext } from '../transports/context.js';

/** One connection as the server API shows it. */
export interface ConnectionView {
  node: string;
  id: string;
  door: string;
  principal: string;
  address: string;
  since: number;
  subscriptions: string[];
}

/** What one node reports for the overview. */
export interface NodeStats {
  node: string;
  at: number;
  uptime: number;
  connections: Record<string, number>;
  subscribers: number;
  published: number;
  deliveries: Record<string, number>;
  memory: { rss: number; heapUsed: number; heapTotal: number };
  /** Why this node cannot take publishes (store or bus down), absent when healthy. */
  unhealthy?: string;
  draining: boolean;
}

/** A connection list shows at most this many subscriptions per connection. */
const MAX_SUBS_SHOWN = 100;

function str(args: Record<string, unknown>, name: string, fallback = ''): string {
  const v = args[name];
  return typeof v === 'string' ? v : fallback;
}

function num(args: Record<string, unknown>, name: string, fallback: number): number {
  const v = args[name];
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/**
 * What each node does for the server API's cluster-wide calls, on its own connections, hub and
 * figures. Every listing is sorted and cut at `limit` after `after`, so the caller can merge the
 * nodes' pages into one (see mergePages).
 */
export function registerNodeCalls(calls: ClusterCalls, ctx: TransportContext, nodeId: string): void {
  calls.handle('topics', async (a) => {
    const prefix = str(a, 'prefix');
    const after = str(a, 'after');
    const limit = num(a, 'limit', 100);
    const out: Array<{ filter: string; subscribers: number }> = [];
    ctx.hub.forEachFilter((filter, subscribers) => {
      if (filter.startsWith(prefix) && filter > after) out.push({ filter, subscribers });
    });
    out.sort((x, y) => (x.filter < y.filter ? -1 : 1));
    return out.slice(0, limit);
  });

  calls.handle('connections', async (a) => {
    const principal = str(a, 'principal');
    const after = str(a, 'after');
    const limit = num(a, 'limit', 100);
    const list = principal ? ctx.registry.ofPrincipal(principal) : [...ctx.registry.all()];
    const out: ConnectionView[] = [];
    for (const c of list) {
      const key = `${nodeId}/${c.id}`;
      if (key <= after) continue;
      out.push({ node: nodeId, id: c.id, door: c.door, principal: c.principal.id, address: c.address, since: c.since, subscriptions: c.subscriptions().slice(0, MAX_SUBS_SHOWN) });
    }
    out.sort((x, y) => (x.id < y.id ? -1 : 1));
    return out.slice(0, limit);
  });

  calls.handle('disconnect', async (a) => {
    const principal = str(a, 'principal');
    if (!principal) throw new OmnipushError('invalid_request', 'principal is required');
    const conns = ctx.registry.ofPrincipal(principal);
    const reason = new OmnipushError('disconnected', str(a, 'reason', 'disconnected by an operator') || 'disconnected by an operator');
    for (const c of conns) c.close(reason);
    return { disconnected: conns.length };
  });

  calls.handle('unsubscribe', async (a) => {
    const principal = str(a, 'principal');
    const filter = str(a, 'filter');
    let removed = 0;
    let unsupported = 0;
    for (const c of ctx.registry.ofPrincipal(principal)) {
      if (c.unsubscribe) removed += c.unsubscribe(filter);
      else if (c.subscriptions().includes(filter)) unsupported++;
    }
    return { removed, unsupported };
  });

  calls.handle('stats', async (): Promise<NodeStats> => {
    const connections: Record<string, number> = {};
    for (const v of (await ctx.metrics.connections.get()).values) connections[String(v.labels.transport)] = v.value;
    const published = (await ctx.metrics.published.get()).values[0]?.value ?? 0;
    const m = process.memoryUsage();
    const unhealthy = ctx.unready?.();
    return {
      node: nodeId,
      at: Date.now(),
      uptime: process.uptime(),
      connections,
      subscribers: ctx.hub.subscriberCount,
      published,
      deliveries: { ...ctx.metrics.deliveryCounts },
      memory: { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal },
      ...(unhealthy ? { unhealthy } : {}),
      draining: ctx.draining(),
    };
  });
}
