import type { OutboundEntry } from '../../outbound/queue.js';
import type { PushJob } from './payload.js';

export const QUEUE_KIND = 'webpush.queue';
export const META_KIND = 'webpush.meta';
/** Meta record: cursor of the newest message offered to Web Push, written with the queue entries it produced. */
export const HEAD_KEY = 'head';

/** One pending delivery of one message to one subscription. */
export interface QueueEntry extends OutboundEntry {
  /** `<subscription id>/<seq, base36, zero-padded>`: per-subscription order, and a prefix to drop them all. */
  key: string;
  sub: string;
  /** Push-service origin (concurrency is limited per origin). */
  origin: string;
  cursor: string;
  job: PushJob;
  /** ms; past it the push service would drop the message anyway, so we stop trying. */
  giveUpAt: number;
  attempts: number;
  /** ms; not sent before. */
  notBefore: number;
  /** The push service refused the full body (413): only the small payload is sent. */
  withoutData?: boolean;
}

export function entryKey(sub: string, seq: number): string {
  return `${sub}/${seq.toString(36).padStart(11, '0')}`;
}

