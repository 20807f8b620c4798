import { Deadline } from './deadline.js';

/** Why a socket lost its place before authenticating. */
export type PreAuthEnd = 'timeout' | 'evicted';

/**
 * One unauthenticated socket's place in the pool; leaving is idempotent. It is its own deadline:
 * every connection passes through here, and a place of two objects and a closure was garbage
 * each of them left behind.
 */
export class PreAuthPlace extends Deadline {
  private left = false;

  constructor(
    private readonly pool: PreAuthPool,
    readonly address: string,
    /** ms since the epoch it entered. */
    readonly since: number,
    ms: number,
    private readonly expire: (why: PreAuthEnd) => void,
  ) {
    super(since + ms);
  }

  /** Its time is up. */
  override fire(): void {
    this.end('timeout');
  }

  /** The socket authenticated, or went: its place is free. */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.cancel();
    this.pool.release(this);
  }

  /** Its time is up, or a newcomer needs the place: the door closes the socket. */
  end(why: PreAuthEnd): void {
    if (this.left) return;
    this.leave();
    this.expire(why);
  }
}

/**
 * Sockets that have not proved who they are yet — raw MQTT before CONNECT, a WebSocket waiting for
 * `auth`, an HTTP connection still sending its first head — wait here, apart from the connection
 * budget of authenticated clients, each with a short deadline.
 *
 * A source address past `perAddress` is refused at once — unless its oldest waiting socket arrived
 * less than `burstMs` ago: then it is a burst (the clients behind a NAT or a proxy connecting at
 * once, each gone from the pool within a round trip; an accept loop takes hundreds of them before the
 * first head is read), and the newcomer is let in under the pool's own cap. A holder of many sockets
 * is refused once its oldest has waited that long.
 *
 * When the pool is full, the newcomer gets the place of the oldest member, which has had the longest
 * to authenticate: a client that presents credentials within a round trip gets in even while a flood
 * holds the pool full, whereas refusing newcomers would hand the server to whoever filled it first.
 */
export class PreAuthPool {
  /** In order of arrival: the first is the oldest. */
  private readonly members = new Set<PreAuthPlace>();
  /** Members per source address, in order of arrival. */
  private readonly byAddress = new Map<string, Set<PreAuthPlace>>();
  /** Sockets refused because their address was full (since start). */
  refused = 0;
  /** Members closed to make room for a newcomer (since start). */
  evicted = 0;

  constructor(
    readonly max: number,
    readonly perAddress: number,
    /** ms the longest a socket may stay. */
    readonly timeoutMs: number,
    /** ms an address may go past `perAddress` after its oldest waiting socket arrived (a burst). */
    readonly burstMs = 0,
  ) {}

  get size(): number {
    return this.members.size;
  }

  countOf(address: string): number {
    return this.byAddress.get(address)?.size ?? 0;
  }

  /**
   * A place for a socket from `address` that has `ms` (at most the pool's timeout) to authenticate;
   * `expire` is called if it is still here then, or when it is evicted. Null when the address is full.
   */
  enter(address: string, ms: number, expire: (why: PreAuthEnd) => void): PreAuthPlace | null {
    const mine = this.byAddress.get(address);
    if (mine && mine.size >= this.perAddress) {
      const oldest = mine.values().next().value as PreAuthPlace;
      if (Date.now() - oldest.since >= this.burstMs) {
        this.refused++;
        return null;
      }
    }
    while (this.members.size >= this.max) {
      const oldest = this.members.values().next().value as PreAuthPlace;
      this.evicted++;
      oldest.end('evicted');
    }
    const place = new PreAuthPlace(this, address, Date.now(), Math.min(ms, this.timeoutMs), expire);
    this.members.add(place);
    let set = this.byAddress.get(address);
    if (!set) this.byAddress.set(address, (set = new Set()));
    set.add(place);
    return place;
  }

  /** Called by a place that leaves. */
  release(place: PreAuthPlace): void {
    if (!this.members.delete(place)) return;
    const set = this.byAddress.get(place.address);
    set?.delete(place);
    if (set?.size === 0) this.byAddress.delete(place.address);
  }
}
