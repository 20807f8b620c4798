/**
 * Counts failed console logins per key (a client address, a username) in fixed windows. A key with
 * `max` failures in its window is refused until the window ends, so guessing costs time both from
 * one address against many users and from many addresses against one user. Bounded: past `cap`
 * keys the expired ones go, then the oldest, so a spray of addresses cannot grow memory.
 */
export class LoginThrottle {
  private readonly failures = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly cap = 10_000,
  ) {}

  /** Seconds until `key` may try again; 0 when it may now. */
  retryAfter(key: string, now = Date.now()): number {
    const f = this.failures.get(key);
    if (!f) return 0;
    if (f.resetAt <= now) {
      this.failures.delete(key);
      return 0;
    }
    return f.count >= this.max ? Math.ceil((f.resetAt - now) / 1000) : 0;
  }

  fail(key: string, now = Date.now()): void {
    const f = this.failures.get(key);
    if (f && f.resetAt > now) {
      f.count++;
      return;
    }
    this.failures.delete(key);
    if (this.failures.size >= this.cap) this.evict(now);
    this.failures.set(key, { count: 1, resetAt: now + this.windowMs });
  }

  reset(key: string): void {
    this.failures.delete(key);
  }

  private evict(now: number): void {
    for (const [k, f] of this.failures) if (f.resetAt <= now) this.failures.delete(k);
    // insertion order is age order: drop the oldest tenth
    let drop = this.failures.size >= this.cap ? Math.ceil(this.cap / 10) : 0;
    for (const k of this.failures.keys()) {
      if (drop-- <= 0) break;
      this.failures.delete(k);
    }
  }
}
