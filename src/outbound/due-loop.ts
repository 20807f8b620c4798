import type { Logger } from 'pino';

/**
 * One timer for the next due item: runs `tick` (which answers the ms until its next look), never
 * two at once, and again at once when poked while running. `pollMs` caps every wait, so items
 * another node wrote are found too.
 */
export class DueLoop {
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private running = false;
  private again = false;
  private closed = false;

  constructor(
    private readonly tick: () => Promise<number>,
    private readonly pollMs: number,
    private readonly log: Logger,
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.kick();
  }

  /** Something falls due at `at` (ms): look then, unless a look comes sooner anyway. */
  dueAt(at: number): void {
    if (at < this.timerAt) this.arm(at - this.now());
  }

  /** Stops; resolves once a running tick has returned. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.running) await new Promise((r) => setTimeout(r, 5));
  }

  private arm(ms: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(ms, this.pollMs));
    this.timerAt = this.now() + wait;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.kick();
    }, wait);
    this.timer.unref();
  }

  private kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.tick()
      .catch((e: unknown) => {
        this.log.warn({ err: e }, `${this.what}: will retry`);
        return this.pollMs;
      })
      .then((next) => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        } else this.arm(next);
      });
  }
}

/**
 * Keys of things due at a time, in store records: the time zero-padded to 15 digits, so that keys
 * sort by time as strings, then the item's id.
 */
export function timeKey(ms: number, id: string): string {
  return `${String(ms).padStart(15, '0')} ${id}`;
}

/** The time (ms) at the head of a {@link timeKey}. */
export function timeOfKey(key: string): number {
  return Number(key.slice(0, 15));
}

/** The prefix of a principal's keys in an index by principal; the id is encoded so that a space in it cannot blur the prefix. */
export function principalPrefix(principalId: string): string {
  return `${encodeURIComponent(principalId)} `;
}
