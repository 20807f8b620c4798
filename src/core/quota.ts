import type { ConnectionRegistry } from './connections.js';
import { OmnipushError } from './errors.js';
import type { Principal } from './grants.js';
import { BucketMap, type RateLimit } from './token-bucket.js';

/** The quotas of `quotas` in the config; 0 switches a limit off. */
export interface QuotaLimits {
  connectionsPerPrincipal: number;
  connectionsPerAddress: number;
  subscriptionsPerConnection: number;
  subscriptionsPerPrincipal: number;
  publish: { perPrincipal: RateLimit; perAddress: RateLimit };
}

/**
 * Counts of other nodes for the quotas that hold cluster-wide (connections and subscriptions per
 * principal). Alone, there are none.
 */
export interface ClusterQuotaCounts {
  /** Connections and subscriptions of `principalId` on the other live nodes, as last published. */
  elsewhere(principalId: string): Promise<{ connections: number; subscriptions: number }>;
  /** `principalId`'s subscriptions on this node may change now: publish them again soon. */
  touch(principalId: string): void;
}

function rateOn(r: RateLimit): boolean {
  return r.messagesPerSecond > 0 || r.bytesPerSecond > 0;
}

function full(limit: string, max: number, what: string): OmnipushError {
  return new OmnipushError('quota_exceeded', `quota ${limit} (${max}) reached: ${what}`, { limit, max });
}

/**
 * What a quota allows, asked by the doors: "may this principal, from this address, connect /
 * subscribe to n more filters / publish this now?". Counts come from the connection registry (this
 * node) and, for per-principal counts, from the other nodes; rates are token buckets on this node.
 *
 * Anonymous clients share one principal id, so a per-principal quota would let one of them shut
 * every other out: they are held by the per-address quotas only.
 */
export class QuotaGate {
  private readonly perPrincipal: BucketMap | null;
  private readonly perAddress: BucketMap | null;
  /** Any publish rate is on: when not, a publish check returns at once. */
  readonly ratesOn: boolean;
  private readonly sweeper: NodeJS.Timeout | null;
  /** Connections admitted but not registered yet (an MQTT CONNECT at work), by principal and by address. */
  private readonly pendingByPrincipal = new Map<string, number>();
  private readonly pendingByAddress = new Map<string, number>();

  constructor(
    readonly limits: QuotaLimits,
    private readonly registry: ConnectionRegistry,
    private readonly cluster: ClusterQuotaCounts | null = null,
    private readonly now: () => number = Date.now,
  ) {
    this.perPrincipal = rateOn(limits.publish.perPrincipal) ? new BucketMap(limits.publish.perPrincipal) : null;
    this.perAddress = rateOn(limits.publish.perAddress) ? new BucketMap(limits.publish.perAddress) : null;
    this.ratesOn = this.perPrincipal !== null || this.perAddress !== null;
    this.sweeper = this.ratesOn ? setInterval(() => this.sweep(), 10_000) : null;
    this.sweeper?.unref();
  }

  /** Publish buckets held now (idle ones are dropped by a sweep). */
  get bucketCount(): number {
    return (this.perPrincipal?.size ?? 0) + (this.perAddress?.size ?? 0);
  }

  sweep(): void {
    const now = this.now();
    this.perPrincipal?.sweep(now);
    this.perAddress?.sweep(now);
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /**
   * Connections of `principal` on the other nodes (0 alone, for anonymous, or with the quota off).
   * Asked before {@link checkConnection}, which must run in the same tick as the registration.
   */
  async connectionsElsewhere(principal: Principal): Promise<number> {
    if (!this.cluster || this.limits.connectionsPerPrincipal === 0 || principal.kind === 'anonymous') return 0;
    return (await this.cluster.elsewhere(principal.id)).connections;
  }

  /**
   * Throws `quota_exceeded` when one more connection of `principal` from `address` is over a
   * connection quota. `elsewhere`: from {@link connectionsElsewhere}; `replacing`: connections of
   * the principal that this one ends (an MQTT takeover), not counted.
   */
  checkConnection(principal: Principal, address: string, elsewhere = 0, replacing = 0): void {
    const perAddr = this.limits.connectionsPerAddress;
    if (perAddr > 0 && this.registry.countOfAddress(address) + (this.pendingByAddress.get(address) ?? 0) - replacing >= perAddr) {
      throw full('connectionsPerAddress', perAddr, `too many connections from ${address}`);
    }
    this.checkPrincipalConnections(principal, elsewhere, replacing);
  }

  /**
   * The per-principal half of {@link checkConnection}, for a connection already counted by its
   * address that changes principal (a WebSocket `auth` message).
   */
  checkPrincipalConnections(principal: Principal, elsewhere = 0, replacing = 0): void {
    const perPrin = this.limits.connectionsPerPrincipal;
    if (perPrin > 0 && principal.kind !== 'anonymous') {
      const n = this.registry.countOfPrincipal(principal.id) + (this.pendingByPrincipal.get(principal.id) ?? 0) + elsewhere - replacing;
      if (n >= perPrin) throw full('connectionsPerPrincipal', perPrin, `too many connections of ${principal.id}`);
    }
  }

  /**
   * Holds a place for a connection admitted by {@link checkConnection} that registers only after
   * more awaits (MQTT: at CONNACK), so that connections admitted meanwhile count it. Give it back
   * with {@link unreserve} once it is registered or refused.
   */
  reserve(principal: Principal, address: string): void {
    this.pendingByAddress.set(address, (this.pendingByAddress.get(address) ?? 0) + 1);
    if (principal.kind !== 'anonymous') this.pendingByPrincipal.set(principal.id, (this.pendingByPrincipal.get(principal.id) ?? 0) + 1);
  }

  unreserve(principal: Principal, address: string): void {
    drop(this.pendingByAddress, address);
    if (principal.kind !== 'anonymous') drop(this.pendingByPrincipal, principal.id);
  }

  /** Places held by {@link reserve} now (0 once every CONNECT is answered). */
  get reserved(): number {
    let n = 0;
    for (const v of this.pendingByAddress.values()) n += v;
    return n;
  }

  /**
   * `principal`'s subscriptions are counted across nodes: a subscribe must ask the other nodes
   * first. When not, a door subscribes without waiting (a publish right behind it must find it).
   */
  subscriptionsShared(principal: Principal): boolean {
    return this.cluster !== null && this.limits.subscriptionsPerPrincipal > 0 && principal.kind !== 'anonymous';
  }

  /**
   * Subscriptions of `principal` on the other nodes (0 alone, for anonymous, or with the quota off).
   * Asked before {@link subscriptionRoom} / {@link checkSubscriptions}.
   */
  async subscriptionsElsewhere(principal: Principal): Promise<number> {
    if (!this.cluster || this.limits.subscriptionsPerPrincipal === 0 || principal.kind === 'anonymous') return 0;
    return (await this.cluster.elsewhere(principal.id)).subscriptions;
  }

  /**
   * How many more filters a connection holding `held` may subscribe to, with `principal`'s other
   * subscriptions counted (Infinity when no limit applies). `registered`: the connection is in the
   * registry (its `held` are counted there already); `elsewhere`: from {@link subscriptionsElsewhere}.
   */
  subscriptionRoom(principal: Principal, held: number, registered: boolean, elsewhere = 0): number {
    const { subscriptionsPerConnection: perConn, subscriptionsPerPrincipal: perPrin } = this.limits;
    let room = perConn > 0 ? perConn - held : Infinity;
    if (perPrin > 0 && principal.kind !== 'anonymous') {
      this.cluster?.touch(principal.id);
      const mine = this.registry.subscriptionCountOfPrincipal(principal.id) + (registered ? 0 : held) + elsewhere;
      room = Math.min(room, perPrin - mine);
    }
    return Math.max(0, room);
  }

  /** Throws `quota_exceeded` (naming the limit) unless a connection holding `held` filters may take `adding` more. */
  checkSubscriptions(principal: Principal, held: number, adding: number, registered: boolean, elsewhere = 0): void {
    this.cluster?.touch(principal.id);
    const { subscriptionsPerConnection: perConn, subscriptionsPerPrincipal: perPrin } = this.limits;
    if (perConn > 0 && held + adding > perConn) throw full('subscriptionsPerConnection', perConn, `a connection may hold ${perConn} filters`);
    if (this.subscriptionRoom(principal, held, registered, elsewhere) < adding) {
      throw full('subscriptionsPerPrincipal', perPrin, `${principal.id} may hold ${perPrin} filters`);
    }
  }

  /**
   * `count` messages of `bytes` bytes in all from `principal` at `address`: null when they may go
   * now, else the `rate_limited` error saying when to retry. Nothing is taken from a bucket when
   * the other refuses. No work at all while no rate is configured.
   */
  checkPublish(principal: Principal, address: string, count: number, bytes: number): OmnipushError | null {
    if (!this.ratesOn) return null;
    const now = this.now();
    const byPrincipal = this.perPrincipal && principal.kind !== 'anonymous' ? this.perPrincipal : null;
    if (this.perAddress) {
      const wait = this.perAddress.take(address, count, bytes, now);
      if (wait > 0) return limited('publish.perAddress', wait);
    }
    if (byPrincipal) {
      const wait = byPrincipal.take(principal.id, count, bytes, now);
      if (wait > 0) {
        // give back what the address bucket took: the messages do not go
        this.perAddress?.take(address, -count, -bytes, now);
        return limited('publish.perPrincipal', wait);
      }
    }
    return null;
  }
}

function limited(limit: string, wait: number): OmnipushError {
  const retryAfter = Math.max(1, Math.ceil(wait));
  return new OmnipushError('rate_limited', `rate ${limit} exceeded; retry in ${retryAfter} s`, { limit, retryAfter });
}

/** Zero counts a map of {@link drop} keeps rather than deleting (see there). */
const KEEP_ZEROS = 64;

/**
 * One fewer for `key`. A small map keeps the key at 0: taking its last key out and putting it back
 * at the next connect made the map's table shrink and grow every time, and each new table of an
 * old map is allocated in the old space, garbage on every connect until the next full GC.
 */
function drop(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 0) - 1;
  if (n > 0) m.set(key, n);
  else if (m.size > KEEP_ZEROS) m.delete(key);
  else m.set(key, 0);
}
