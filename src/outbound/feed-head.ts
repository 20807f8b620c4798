import type { Hub } from '../core/hub.js';
import { parseCursor, type StoredMessage } from '../core/message.js';
import type { RecordChange } from '../core/store.js';

/**
 * How far a sender's message feed (Web Push, webhooks) has queued: the newest message offered to
 * it. The head is written with the queue's entries, so after a crash the feed resumes right after
 * what was queued: earlier messages were queued or deliberately skipped, later ones never reached
 * the queue and are replayed.
 */
export class FeedHead {
  private seq = 0;
  private cursor: string | undefined;
  /** The head last handed to a queue write. */
  private written: string | undefined;

  constructor(
    private readonly hub: Hub,
    private readonly kind: string,
    private readonly key: string,
  ) {}

  /**
   * Reads the stored head and says where the feed resumes: after it when this store's history
   * still holds it, else `now` (an unreadable head, or one of another epoch, starts live).
   */
  async load(): Promise<string> {
    this.seq = 0;
    this.cursor = undefined;
    const stored = (await this.hub.getRecord(this.kind, this.key))?.toString('utf8');
    this.written = stored;
    if (!stored) return 'now';
    try {
      const c = parseCursor(stored);
      if (c.epoch !== this.hub.epoch || c.seq > this.hub.headSeq) return 'now';
      this.seq = c.seq;
      this.cursor = stored;
      return stored;
    } catch {
      return 'now';
    }
  }

  /** A message offered to the feed (in seq order per subscription; the head keeps the newest). */
  advance(m: StoredMessage): void {
    if (m.seq > this.seq) {
      this.seq = m.seq;
      this.cursor = m.cursor;
    }
  }

  /** The record write that moves the stored head, when it moved since the last one. */
  changes(): RecordChange[] {
    const head = this.cursor;
    if (head === undefined || head === this.written) return [];
    this.written = head;
    return [{ kind: this.kind, key: this.key, value: Buffer.from(head) }];
  }
}
