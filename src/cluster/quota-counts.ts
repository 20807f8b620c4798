import type { Logger } from 'pino';
import type { ConnectionRegistry } from '../core/connections.js';
import type { ClusterQuotaCounts } from '../core/quota.js';
import type { ClusterControl } from './control.js';

/** How often a node publishes the counts that changed (ms): other nodes see them this late at most. */
const FLUSH_MS = 200;
/** How often every count is published again, changed or not (unsubscribes do not mark a principal). */
const REFRESH_MS = 10_000;

const mapOf = (principalId: string) => `quota:${principalId}`;
/** The principals whose maps hold a field of `nodeId`, so that they can be cleaned when it dies. */
const indexOf = (nodeId: string) => `quota-index:${nodeId}`;

/**
 * Connections and subscriptions per principal across the cluster, through the cluster control's
 * shared maps: one map per principal, one field per node holding "<connections> <subscriptions>".
 * A node publishes its own counts (those that changed, every {@link FLUSH_MS}) and reads the
 * others' when a quota asks. Fields of nodes that are not live are not counted, and are removed
 * when a node sees one die, so a crashed node's connections stop counting once it is declared dead.
 */
export class ControlQuotaCounts implements ClusterQuotaCounts {
  private readonly dirty = new Set<string>();
  /** Principals with a field of ours in Redis now. */
  private readonly published = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private lastRefresh = Date.now();
  private flushing: Promise<void> | null = null;
  private knownNodes: readonly string[];
  private closed = false;

  constructor(
    private readonly control: ClusterControl,
    private readonly registry: ConnectionRegistry,
    private readonly log: Logger,
  ) {
    this.knownNodes = control.nodes();
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    this.timer.unref();
    control.onTick((nodes, changed) => {
      if (!changed) return;
      const gone = this.knownNodes.filter((n) => !nodes.includes(n));
      this.knownNodes = nodes;
      for (const n of gone) void this.forgetNode(n);
    });
  }

  /** `principalId`'s counts on this node changed (or may have): published at the next flush. */
  touch(principalId: string): void {
    this.dirty.add(principalId);
  }

  async elsewhere(principalId: string): Promise<{ connections: number; subscriptions: number }> {
    let connections = 0;
    let subscriptions = 0;
    try {
      for (const [node, v] of await this.control.mapAll(mapOf(principalId))) {
        if (node === this.control.nodeId || !this.control.isLive(node)) continue;
        const sp = v.indexOf(' ');
        connections += Number(v.slice(0, sp)) || 0;
        subscriptions += Number(v.slice(sp + 1)) || 0;
      }
    } catch (e) {
      // the quota then holds per node only: refusing every connection while Redis is away would be worse
      this.log.warn({ err: e, principal: principalId }, 'cluster quota counts not read; counting this node only');
    }
    return { connections, subscriptions };
  }

  /** Publishes the counts that changed (all of them every {@link REFRESH_MS}). */
  flush(): Promise<void> {
    if (this.flushing || this.closed) return this.flushing ?? Promise.resolve();
    const now = Date.now();
    if (now - this.lastRefresh >= REFRESH_MS) {
      this.lastRefresh = now;
      for (const p of this.published) this.dirty.add(p);
    }
    if (this.dirty.size === 0) return Promise.resolve();
    const batch = [...this.dirty];
    this.dirty.clear();
    this.flushing = Promise.all(batch.map((p) => this.publish(p)))
      .then(() => undefined)
      .catch((e: unknown) => {
        // tried again at the next flush
        for (const p of batch) this.dirty.add(p);
        this.log.warn({ err: e }, 'cluster quota counts not published');
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }

  private async publish(principalId: string): Promise<void> {
    const { control } = this;
    const conns = this.registry.countOfPrincipal(principalId);
    if (conns === 0) {
      if (!this.published.has(principalId)) return;
      await control.mapTake(mapOf(principalId), control.nodeId);
      await control.mapTake(indexOf(control.nodeId), principalId);
      this.published.delete(principalId);
      return;
    }
    if (!this.published.has(principalId)) await control.mapSet(indexOf(control.nodeId), principalId, '1');
    await control.mapSet(mapOf(principalId), control.nodeId, `${conns} ${this.registry.subscriptionCountOfPrincipal(principalId)}`);
    this.published.add(principalId);
  }

  /** A node is no longer live: its fields go (every live node may do it; removing twice is harmless). */
  private async forgetNode(nodeId: string): Promise<void> {
    try {
      const principals = await this.control.mapAll(indexOf(nodeId));
      await Promise.all([...principals.keys()].map((p) => this.control.mapTake(mapOf(p), nodeId)));
      await Promise.all([...principals.keys()].map((p) => this.control.mapTake(indexOf(nodeId), p)));
    } catch (e) {
      this.log.warn({ err: e, node: nodeId }, 'quota counts of a dead node not removed (they are not counted anyway)');
    }
  }

  /** Takes this node's counts out of the cluster's (shutdown). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    this.closed = true;
    await this.forgetNode(this.control.nodeId);
    this.published.clear();
  }
}
