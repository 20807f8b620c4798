/**
 * A door's periodic sweep (pings, heartbeats) that runs only while the door has connections: a
 * door nobody uses does not wake the process. The door tells it how many connections it holds
 * whenever that changes; the timer starts at the first and stops at the last.
 */
export class BusySweep {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly sweep: () => void,
    private readonly everyMs: number,
  ) {}

  /** The door's connection count after it changed. */
  count(n: number): void {
    if (n > 0) {
      if (this.timer || this.closed) return;
      this.timer = setInterval(this.sweep, this.everyMs);
      this.timer.unref();
    } else this.stop();
  }

  /** Stops it for good (the door shuts down; its connections close after this). */
  close(): void {
    this.closed = true;
    this.stop();
  }

  private stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
