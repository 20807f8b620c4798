/** setTimeout's longest delay; a later deadline is reached in hops. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * A promise to act at a moment (a token's `exp`, the end of an authentication window), kept by its
 * own timer rather than by a periodic sweep, so it fires on time whatever the sweep's pace. One per
 * connection that has such a moment; it is armed on connect or re-auth, not on the delivery path.
 */
export class Deadline {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private at: number,
    private readonly fire: () => void,
  ) {
    this.arm();
  }

  /** ms since the epoch this deadline is set for. */
  get when(): number {
    return this.at;
  }

  /** Moves the deadline (credentials renewed). */
  reset(at: number): void {
    this.cancel();
    this.at = at;
    this.arm();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    const wait = this.at - Date.now();
    if (wait > MAX_DELAY) {
      this.timer = setTimeout(() => this.arm(), MAX_DELAY);
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.fire();
      }, Math.max(0, wait));
    }
    this.timer.unref();
  }
}

/** A deadline at the principal's credential expiry, or none when its credentials do not expire. */
export function expiryDeadline(expiresAt: number | undefined, fire: () => void): Deadline | undefined {
  return expiresAt === undefined ? undefined : new Deadline(expiresAt, fire);
}
