/** A publish rate: messages and bytes per second (0: no limit), with a burst of `burst` seconds' worth. */
export interface RateLimit {
  messagesPerSecond: number;
  bytesPerSecond: number;
  /** Seconds of full-rate traffic a quiet client may send at once. */
  burst: number;
}

/**
 * Two token buckets (messages, bytes) of one key, refilled lazily from the clock. A message larger
 * than the byte bucket's capacity passes when the bucket is full and leaves it in debt, so a big
 * message is slowed to the rate instead of refused for ever.
 */
export class TokenBucket {
  private msgs: number;
  private bytes: number;
  private at: number;

  constructor(
    private readonly rate: RateLimit,
    now: number,
  ) {
    this.msgs = rate.messagesPerSecond * rate.burst;
    this.bytes = rate.bytesPerSecond * rate.burst;
    this.at = now;
  }

  private refill(now: number): void {
    const dt = (now - this.at) / 1000;
    if (dt <= 0) return;
    this.at = now;
    const r = this.rate;
    if (r.messagesPerSecond > 0) this.msgs = Math.min(r.messagesPerSecond * r.burst, this.msgs + dt * r.messagesPerSecond);
    if (r.bytesPerSecond > 0) this.bytes = Math.min(r.bytesPerSecond * r.burst, this.bytes + dt * r.bytesPerSecond);
  }

  /**
   * Takes `count` messages of `size` bytes in all; 0 when they may go now, else the seconds to wait
   * until they could (nothing is taken then).
   */
  take(count: number, size: number, now: number): number {
    this.refill(now);
    const r = this.rate;
    let wait = 0;
    if (r.messagesPerSecond > 0) {
      const need = Math.min(count, r.messagesPerSecond * r.burst);
      if (this.msgs < need) wait = (need - this.msgs) / r.messagesPerSecond;
    }
    if (r.bytesPerSecond > 0) {
      const need = Math.min(size, r.bytesPerSecond * r.burst);
      if (this.bytes < need) wait = Math.max(wait, (need - this.bytes) / r.bytesPerSecond);
    }
    if (wait > 0) return wait;
    if (r.messagesPerSecond > 0) this.msgs -= count;
    if (r.bytesPerSecond > 0) this.bytes -= size;
    return 0;
  }

  /** Full again (and so indistinguishable from a new bucket): it may be dropped. */
  idle(now: number): boolean {
    this.refill(now);
    const r = this.rate;
    return (r.messagesPerSecond === 0 || this.msgs >= r.messagesPerSecond * r.burst) && (r.bytesPerSecond === 0 || this.bytes >= r.bytesPerSecond * r.burst);
  }
}

/** Buckets by key (a principal, an address), made on first use and dropped once idle. */
export class BucketMap {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(readonly rate: RateLimit) {}

  get size(): number {
    return this.buckets.size;
  }

  take(key: string, count: number, size: number, now: number): number {
    let b = this.buckets.get(key);
    if (!b) this.buckets.set(key, (b = new TokenBucket(this.rate, now)));
    return b.take(count, size, now);
  }

  /** Forgets the buckets that are full again: memory stays bounded by the keys active lately. */
  sweep(now: number): void {
    for (const [k, b] of this.buckets) if (b.idle(now)) this.buckets.delete(k);
  }
}
