import type { PreAuthPlace } from '../pre-auth-pool.js';

/** State few sockets need: made at its first use, so an idle authenticated socket holds one empty field for it. */
export class WsRareState {
  clientId: string | undefined = undefined;
  presenceInfo: Record<string, unknown> | undefined = undefined;
  /** Topics whose join/leave events some subscription asked for, and how many did. */
  watched: Map<string, number> | null = null;
  authPlace: PreAuthPlace | null = null;
  /** Requests refused for a quota lately (see WsConnection's `refused`). */
  refusals = 0;
  refusalsSince = 0;
}

/** Bits of {@link WsConnectionState}'s `flags`: three booleans in one field (8 bytes each at 10k+ sockets). */
const ALIVE = 1;
const BUDGETED = 2;
const REGISTERED = 4;

/**
 * What a WebSocket connection remembers besides its subscriptions and queue, laid out for 10k+
 * idle sockets: three booleans share one field, and state few sockets need waits in
 * {@link WsRareState}, made at its first use.
 */
export abstract class WsConnectionState {
  /** Read on every delivery: a plain field rather than a bit of {@link flags}. */
  protected closed = false;
  private flags = ALIVE;
  protected rare: WsRareState | null = null;

  protected more(): WsRareState {
    return (this.rare ??= new WsRareState());
  }

  /** Answered the last ping (liveness sweep). */
  get alive(): boolean {
    return (this.flags & ALIVE) !== 0;
  }

  set alive(v: boolean) {
    this.flags = v ? this.flags | ALIVE : this.flags & ~ALIVE;
  }

  /** Holds a slot of the connection budget (taken once authenticated). */
  get budgeted(): boolean {
    return (this.flags & BUDGETED) !== 0;
  }

  set budgeted(v: boolean) {
    this.flags = v ? this.flags | BUDGETED : this.flags & ~BUDGETED;
  }

  /** In the connection registry (once it has a principal) under {@link id}. */
  protected get registered(): boolean {
    return (this.flags & REGISTERED) !== 0;
  }

  protected set registered(v: boolean) {
    this.flags = v ? this.flags | REGISTERED : this.flags & ~REGISTERED;
  }

  /** `client=` on the upgrade: presence counts a reconnect with it as the same member. */
  get clientId(): string | undefined {
    return this.rare?.clientId;
  }

  set clientId(v: string | undefined) {
    if (v !== undefined || this.rare) this.more().clientId = v;
  }

  /** The last subscribe frame's `info`: what presence lists about this client. */
  get presenceInfo(): Record<string, unknown> | undefined {
    return this.rare?.presenceInfo;
  }

  set presenceInfo(v: Record<string, unknown> | undefined) {
    if (v !== undefined || this.rare) this.more().presenceInfo = v;
  }

  /** Its place in the pre-auth pool while it must still send `auth` (no credentials on the upgrade). */
  get authPlace(): PreAuthPlace | null {
    return this.rare?.authPlace ?? null;
  }

  set authPlace(v: PreAuthPlace | null) {
    if (v !== null || this.rare) this.more().authPlace = v;
  }
}
