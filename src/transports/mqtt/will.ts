import type { Hub, PublishRequest } from '../../core/hub.js';
import type { Principal } from '../../core/grants.js';
import type { AppendInput } from '../../core/store.js';
import type { Logger } from 'pino';
import type { ClusterControl } from '../../cluster/control.js';

/** A will as CONNECT gave it, checked against the connecting principal's grants when published. */
export interface WillSpec {
  principal: Principal;
  request: PublishRequest;
  extras: Pick<AppendInput, 'payloadFormat' | 'responseTopic' | 'correlationData' | 'origin'>;
  /** seconds */
  delay: number;
}

/** Heartbeats between two looks for wills of dead nodes when no node change was seen. */
const SWEEP_TICKS = 10;

/** Cluster map of wills: client id → {@link StoredWill}. */
export const WILLS_MAP = 'mqtt-wills';

/**
 * A will as the cluster keeps it while its connection is open or its delay runs: `node` is the
 * node that publishes it; `due` (ms) is set once the connection is gone.
 */
interface StoredWill {
  node: string;
  delayMs: number;
  due?: number;
  will: WillSpec;
}

function encodeWill(w: StoredWill): string {
  return JSON.stringify(w);
}

function decodeWill(raw: string): StoredWill | null {
  try {
    // Buffers went through JSON as {type: 'Buffer', data}; everything else is plain
    return JSON.parse(raw, (_k, v: unknown) => {
      const b = v as { type?: unknown; data?: unknown } | null;
      return b && typeof b === 'object' && b.type === 'Buffer' && Array.isArray(b.data) ? Buffer.from(b.data as number[]) : v;
    }) as StoredWill;
  } catch {
    return null;
  }
}

/**
 * Wills waiting for their delay (MQTT 5 §3.1.3.2.2). One timer per waiting will: they are rare
 * (only connections that ended without a clean DISCONNECT), and a resumed session cancels its own.
 *
 * In a cluster every will is also kept in a cluster map from CONNECT on, and a will is published
 * only by the node whose removal of it from that map succeeded: so it goes out once even when its
 * own node and another (a session taken over, a dead node's wills adopted) race for it.
 */
export class WillScheduler {
  private readonly waiting = new Map<string, { timer: NodeJS.Timeout | undefined; will: WillSpec }>();
  /** Map writes per client in the order they were made (ioredis keeps one connection's order). */
  private readonly writes = new Map<string, Promise<unknown>>();

  constructor(
    private readonly hub: Hub,
    private readonly log: Logger,
    private readonly cluster?: ClusterControl,
  ) {
    const c = cluster;
    if (c?.clustered) {
      // The first live node looks after the wills of dead nodes: when the node list changes, and
      // every SWEEP_TICKS heartbeats in case a change went unseen (the map holds a will per
      // connection that has one, so it is not read at every heartbeat).
      let ticks = 0;
      c.onTick((nodes, changed) => {
        ticks++;
        if (nodes[0] !== c.nodeId || (!changed && ticks % SWEEP_TICKS !== 1)) return;
        void this.adoptOrphans().catch((e: unknown) => this.log.warn({ err: e }, 'mqtt wills of dead nodes not checked'));
      });
    }
  }

  private get clustered(): boolean {
    return this.cluster?.clustered === true;
  }

  private write<T>(clientId: string, p: Promise<T>): Promise<T> {
    const done = p.catch((e: unknown) => this.log.warn({ err: e, client: clientId }, 'mqtt will not recorded in the cluster'));
    this.writes.set(clientId, done);
    void done.finally(() => {
      if (this.writes.get(clientId) === done) this.writes.delete(clientId);
    });
    return p;
  }

  /** Cluster: the connection of `clientId` has a will; if this node dies, another publishes it. */
  arm(clientId: string, will: WillSpec, delayMs: number): void {
    if (!this.clustered) return;
    void this.write(clientId, this.cluster!.mapSet(WILLS_MAP, clientId, encodeWill({ node: this.cluster!.nodeId, delayMs, will })));
  }

  /** Cluster: the connection ended cleanly; its will is void. */
  disarm(clientId: string): void {
    if (this.clustered) void this.write(clientId, this.cluster!.mapTake(WILLS_MAP, clientId));
  }

  /** Publishes after `delayMs` (at once when 0) unless cancelled for `clientId` first. */
  schedule(clientId: string, will: WillSpec, delayMs: number): void {
    this.cancelTimer(clientId);
    if (delayMs <= 0) return this.take(clientId, will);
    if (this.clustered) {
      const due = Date.now() + delayMs;
      void this.write(clientId, this.cluster!.mapSet(WILLS_MAP, clientId, encodeWill({ node: this.cluster!.nodeId, delayMs, due, will })));
    }
    this.wait(clientId, will, delayMs);
  }

  private wait(clientId: string, will: WillSpec, delayMs: number): void {
    const timer = setTimeout(() => {
      this.waiting.delete(clientId);
      this.take(clientId, will);
    }, delayMs);
    timer.unref();
    this.waiting.set(clientId, { timer, will });
  }

  /** Publishes the will if this node wins it (always, alone). */
  private take(clientId: string, will: WillSpec): void {
    if (!this.clustered) return this.publish(will);
    void this.write(clientId, this.cluster!.mapTake(WILLS_MAP, clientId)).then((won) => {
      if (won) this.publish(will);
    });
  }

  private cancelTimer(clientId: string): boolean {
    const w = this.waiting.get(clientId);
    if (!w) return false;
    clearTimeout(w.timer);
    this.waiting.delete(clientId);
    return true;
  }

  /** The client came back (or its session ended first and published it): no (second) will. */
  cancel(clientId: string): boolean {
    const had = this.cancelTimer(clientId);
    this.disarm(clientId);
    return had;
  }

  /** Session expiry came before the will delay: publish now. */
  fire(clientId: string): void {
    const w = this.waiting.get(clientId);
    if (!w) return;
    this.cancelTimer(clientId);
    this.take(clientId, w.will);
  }

  /** Resolves once every cluster write made so far is done (shutdown: wills won just before go out). */
  async drain(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes.values()]);
  }

  /** Resolves once this node's cluster writes for `clientId` are done (before handing a session over). */
  async settled(clientId: string): Promise<void> {
    for (let p = this.writes.get(clientId); p; p = this.writes.get(clientId)) await p;
  }

  /**
   * Wills whose node is no longer live: this node adopts them (compare and set, so one adopter
   * wins) and publishes them when due — a connection that was open when its node died counts
   * as gone from the moment its node is found dead.
   */
  private async adoptOrphans(): Promise<void> {
    const c = this.cluster!;
    for (const [clientId, raw] of await c.mapAll(WILLS_MAP)) {
      const w = decodeWill(raw);
      if (!w || c.isLive(w.node) || this.waiting.has(clientId)) continue;
      const due = w.due ?? Date.now() + w.delayMs;
      if (!(await c.mapReplace(WILLS_MAP, clientId, raw, encodeWill({ ...w, node: c.nodeId, due })))) continue;
      this.log.info({ client: clientId, from: w.node }, 'mqtt will of a dead node adopted');
      this.wait(clientId, w.will, Math.max(0, due - Date.now()));
    }
  }

  private publish(will: WillSpec): void {
    try {
      const input = { ...this.hub.checkPublish(will.principal, will.request), ...will.extras };
      this.hub.enqueue(input).catch((e: unknown) => this.log.warn({ err: e }, 'mqtt will not published'));
    } catch (e) {
      this.log.warn({ err: e, topic: will.request.topic, principal: will.principal.id }, 'mqtt will refused');
    }
  }

  close(): void {
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
  }
}
