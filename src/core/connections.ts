import type { OmnipushError } from './errors.js';
import type { Principal } from './grants.js';

/** The door a connection came through. */
export type Door = 'sse' | 'websocket' | 'longpoll' | 'mqtt';

/** What a door tells the registry about one live, authenticated connection. */
export interface ConnectionInfo {
  /** Unique on this node (`<door>-<n>` or similar); with the node id it is unique in a cluster. */
  readonly id: string;
  readonly door: Door;
  /** Source address (IP) of the client, as the socket saw it. */
  readonly address: string;
  /** ms since the epoch. */
  readonly since: number;
  principal: Principal;
  /** The filters this connection is subscribed to now (MQTT `$share/...` names as given). */
  subscriptions(): string[];
  /** How many {@link subscriptions} there are, without listing them (quotas ask it often). */
  subscriptionCount?(): number;
  /** A client-chosen stable id (MQTT client id, `client=` elsewhere): presence counts a reconnect as the same member. */
  readonly clientId?: string;
  /** What presence lists about this client when the door let it say (WebSocket subscribe `info`); else the principal's. */
  presenceInfo?: Record<string, unknown>;
  /** Presence's own record of this connection (doors declare the field so that it stays in the object). */
  presenceState?: unknown;
  /** Ends the connection with the door's close code for `reason` (e.g. `forbidden` → WS 1008, MQTT 0x87). */
  close(reason: OmnipushError): void;
  /**
   * Drops the connection's subscriptions matching `filter` exactly (as subscribed) and returns how
   * many went; doors that cannot do this return 0.
   */
  unsubscribe?(filter: string): number;
}

/**
 * Told of connections coming and going and of their subscriptions changing (webhooks). Never on
 * the fan-out path: only connects, disconnects, subscribes and unsubscribes reach it.
 */
export interface ConnectionObserver {
  connected(c: ConnectionInfo): void;
  /** `reason`: why it ended, as the door knows it (`closed` when it does not say). */
  disconnected(c: ConnectionInfo, reason: string): void;
  /** The connection's {@link ConnectionInfo.subscriptions} may have changed. */
  subscriptionsChanged(c: ConnectionInfo): void;
}

/** One observer telling several (webhooks and presence both hear the registry). */
export function observers(list: Array<ConnectionObserver | null | undefined>): ConnectionObserver | null {
  const all = list.filter((o): o is ConnectionObserver => !!o);
  if (all.length <= 1) return all[0] ?? null;
  return {
    connected: (c) => all.forEach((o) => o.connected(c)),
    disconnected: (c, reason) => all.forEach((o) => o.disconnected(c, reason)),
    subscriptionsChanged: (c) => all.forEach((o) => o.subscriptionsChanged(c)),
  };
}

/**
 * Every live authenticated connection of this node, by id, by principal and by address. Doors
 * register once authenticated and unregister when closed; quotas count from it, the server API lists
 * and acts on it. No I/O: cluster-wide views live behind the cluster control channel.
 */
export class ConnectionRegistry {
  private readonly byId = new Map<string, ConnectionInfo>();
  private readonly byPrincipal = new Map<string, Set<ConnectionInfo>>();
  /** Connections per address: only counted (a set per address cost a hash entry per connection, ~50 B at 10k). */
  private readonly byAddress = new Map<string, number>();
  private seq = 0;

  /** `node`: this node's id, which makes {@link connectionId} unique in a cluster. */
  constructor(readonly node = '') {}

  /**
   * The id a client is told for its connection (and may name in `exclude`, or as its publishes'
   * sender): its stable `clientId` when it gave one (`client=`), else the node's id and the local
   * id, unique in a cluster and across restarts.
   */
  connectionId(localId: string, clientId: string | undefined): string {
    return clientId ?? (this.node ? `${this.node}/${localId}` : localId);
  }

  /** Told the principal whose connections changed (cluster-wide quota counts publish it). */
  onPrincipalChange: ((principalId: string) => void) | null = null;
  observer: ConnectionObserver | null = null;

  get size(): number {
    return this.byId.size;
  }

  /** A fresh id for a connection of `door`, unique on this node. */
  nextId(door: Door): string {
    return `${door}-${++this.seq}`;
  }

  add(c: ConnectionInfo): void {
    if (this.byId.has(c.id)) return;
    this.byId.set(c.id, c);
    addTo(this.byPrincipal, c.principal.id, c);
    this.byAddress.set(c.address, (this.byAddress.get(c.address) ?? 0) + 1);
    this.onPrincipalChange?.(c.principal.id);
    this.observer?.connected(c);
  }

  remove(c: ConnectionInfo, reason = 'closed'): void {
    if (this.byId.get(c.id) !== c) return;
    this.byId.delete(c.id);
    removeFrom(this.byPrincipal, c.principal.id, c);
    const n = (this.byAddress.get(c.address) ?? 1) - 1;
    if (n > 0) this.byAddress.set(c.address, n);
    else this.byAddress.delete(c.address);
    this.onPrincipalChange?.(c.principal.id);
    this.observer?.disconnected(c, reason);
  }

  /** Doors whose connections subscribe after connecting call this after each (un)subscribe. */
  subscriptionsChanged(c: ConnectionInfo): void {
    if (this.observer && this.byId.get(c.id) === c) this.observer.subscriptionsChanged(c);
  }

  /** A connection's principal changed identity-preservingly (re-auth with new grants): same `id`, new object. */
  updatePrincipal(c: ConnectionInfo, p: Principal): void {
    if (p.id !== c.principal.id && this.byId.get(c.id) === c) {
      removeFrom(this.byPrincipal, c.principal.id, c);
      addTo(this.byPrincipal, p.id, c);
      this.onPrincipalChange?.(c.principal.id);
      this.onPrincipalChange?.(p.id);
    }
    c.principal = p;
  }

  get(id: string): ConnectionInfo | undefined {
    return this.byId.get(id);
  }

  ofPrincipal(principalId: string): ConnectionInfo[] {
    return [...(this.byPrincipal.get(principalId) ?? [])];
  }

  countOfPrincipal(principalId: string): number {
    return this.byPrincipal.get(principalId)?.size ?? 0;
  }

  /** Filters held by the connections of `principalId` on this node. */
  subscriptionCountOfPrincipal(principalId: string): number {
    let n = 0;
    const set = this.byPrincipal.get(principalId);
    if (set) for (const c of set) n += c.subscriptionCount ? c.subscriptionCount() : c.subscriptions().length;
    return n;
  }

  countOfAddress(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  all(): IterableIterator<ConnectionInfo> {
    return this.byId.values();
  }
}

/** What a connection id given by a client may look like: 1..128 printable ASCII characters. */
export function isConnectionId(v: string): boolean {
  return /^[\x21-\x7e]{1,128}$/.test(v);
}

/**
 * The address a quota counts: an IPv4 client seen through a dual-stack socket (`::ffff:1.2.3.4`)
 * is the same client as `1.2.3.4`.
 */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

function addTo(m: Map<string, Set<ConnectionInfo>>, key: string, c: ConnectionInfo): void {
  let s = m.get(key);
  if (!s) m.set(key, (s = new Set()));
  s.add(c);
}

function removeFrom(m: Map<string, Set<ConnectionInfo>>, key: string, c: ConnectionInfo): void {
  const s = m.get(key);
  if (!s) return;
  s.delete(c);
  if (s.size === 0) m.delete(key);
}
