import { OmnipushError } from '../core/errors.js';
import { BucketMap } from '../core/token-bucket.js';

/** Seconds of the rate a principal may use at once. */
const BURST_S = 10;

/**
 * What acks may cost the store, per principal (`receipts.ackLookupsPerSecond`): an ack for a
 * cursor this node does not hold costs a read, and any principal may send as many as it likes, so
 * the reads are paid from a token bucket. 0 switches the limit off.
 */
export class AckMeter {
  private readonly buckets: BucketMap | null;

  constructor(private readonly perSecond: number) {
    this.buckets = perSecond > 0 ? new BucketMap({ messagesPerSecond: perSecond, bytesPerSecond: 0, burst: BURST_S }) : null;
  }

  get on(): boolean {
    return this.buckets !== null;
  }

  /** Takes `reads` from `principalId`'s bucket; throws `rate_limited` (with `retryAfter`) when it is empty. */
  charge(principalId: string, reads: number, now: number): void {
    if (!this.buckets || reads === 0) return;
    const wait = this.buckets.take(principalId, reads, 0, now);
    if (wait <= 0) return;
    const retryAfter = Math.max(1, Math.ceil(wait));
    throw new OmnipushError('rate_limited', `acks for messages this node does not hold are limited to ${this.perSecond} cursors a second; retry in ${retryAfter} s`, {
      limit: 'receipts.ackLookupsPerSecond',
      retryAfter,
    });
  }

  /** Forgets the buckets that are full again: memory follows the principals that acked lately. */
  sweep(now: number): void {
    this.buckets?.sweep(now);
  }
}
