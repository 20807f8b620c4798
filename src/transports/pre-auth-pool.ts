import { Deadline } from './deadline.js';

/** Why a socket lost its place before authenticating. */
export type PreAuthEnd = 'timeout' | 'evicted';

/** One unauthenticated socket's place in the pool; leaving is idempotent. */
export class PreAuthPlace {
  private left = false;
  private readonly deadline: Deadline;

  constructor(
    private readonly pool: PreAuthPool,
    readonly address: string,
    ms: number,
    private readonly expire: (why: PreAuthEnd) => void,
  ) {
    this.deadline = new Deadline(Date.now() + ms, () => this.end('timeout'));
  }

  /** The socket authenticated, or went: its place is free. */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.deadline.cancel();
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
 * A source address past `perAddress` is refused at once. When the pool is full, the newcomer gets
 * the place of the oldest member, which has had the longest to authenticate: a client that presents
 * credentials within a round trip gets in even while a flood holds the pool full, whereas refusing
 * newcomers would hand the server to whoever filled the pool first.
 */
export class PreAuthPool {
  /** In order of arrival: the first is the oldest. */
  private readonly members = new Set<PreAuthPlace>();
  private readonly byAddress = new Map<string, number>();
  /** Sockets refused because their address was full (since start). */
  refused = 0;
  /** Members closed to make room for a newcomer (since start). */
  evicted = 0;

  constructor(
    readonly max: number,
    readonly perAddress: number,
    /** ms the longest a socket may stay. */
    readonly timeoutMs: number,
  ) {}

  get size(): number {
    return this.members.size;
  }

  countOf(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  /**
   * A place for a socket from `address` that has `ms` (at most the pool's timeout) to authenticate;
   * `expire` is called if it is still here then, or when it is evicted. Null when the address is full.
   */
  enter(address: string, ms: number, expire: (why: PreAuthEnd) => void): PreAuthPlace | null {
    const n = this.byAddress.get(address) ?? 0;
    if (n >= this.perAddress) {
      this.refused++;
      return null;
    }
    while (this.members.size >= this.max) {
      const oldest = this.members.values().next().value as PreAuthPlace;
      this.evicted++;
      oldest.end('evicted');
    }
    const place = new PreAuthPlace(this, address, Math.min(ms, this.timeoutMs), expire);
    this.members.add(place);
    this.byAddress.set(address, (this.byAddress.get(address) ?? 0) + 1);
    return place;
  }

  /** Called by a place that leaves. */
  release(place: PreAuthPlace): void {
    if (!this.members.delete(place)) return;
    const n = (this.byAddress.get(place.address) ?? 1) - 1;
    if (n > 0) this.byAddress.set(place.address, n);
    else this.byAddress.delete(place.address);
  }
}
