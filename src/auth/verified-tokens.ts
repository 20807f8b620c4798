import type { Principal } from '../core/grants.js';

/** Longest token remembered; longer ones are verified every time (bounds the cache's memory). */
const MAX_TOKEN_CHARS = 4096;

/**
 * Tokens verified lately, with the principal each one gave: a publisher that sends the same bearer
 * token with every request pays for one signature check (an HS256 verify cost ~0.1 ms, several
 * times the rest of a publish), not one per request. Only successful verifications are kept, keyed
 * by the whole token; an entry ends at the token's `exp` or after `ttlMs` (a key removed from a
 * JWKS stops its tokens within that time), whichever comes first. The oldest entry makes room.
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
  ) {}

  /** The principal of `token` if it was verified and is still good at `now`. */
  get(token: string, now: number): Principal | undefined {
    const e = this.entries.get(token);
    if (e === undefined) return undefined;
    if (now < e.until) return e.principal;
    this.entries.delete(token);
    return undefined;
  }

  put(token: string, principal: Principal, now: number): void {
    if (this.max === 0 || token.length > MAX_TOKEN_CHARS) return;
    const until = Math.min(principal.expiresAt ?? Infinity, now + this.ttlMs);
    if (until <= now) return;
    if (this.entries.size >= this.max && !this.entries.has(token)) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { principal, until });
  }
}
