import type { Principal } from '../core/grants.js';

/** Turns presented credentials into a principal. One instance serves every door. */
export interface Authenticator {
  /** True when some credential check (JWT keys, users) is configured. */
  readonly configured: boolean;
  /**
   * `token` is the bearer token as presented (undefined: none). Resolves to the principal, or
   * rejects with OmnipushError `unauthorized` (missing when required, expired, badly signed,
   * malformed, wrong issuer/audience, bad grants claim).
   */
  authenticate(token: string | undefined): Promise<Principal>;
}
