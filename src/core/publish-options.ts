import type { Principal } from './grants.js';
import type { PublishRequest } from './hub.js';
import type { ReceiptRequest } from './receipt.js';

/** What a publish may ask for beyond the message: an idempotency key, a due time. */
export interface PublishOptions {
  idempotencyKey?: string;
  /** ms since the epoch: publish then (durably scheduled), not now. */
  due?: number;
  /** Ask the addressed principal's clients to acknowledge it, with a fallback (docs/receipts.md). */
  receipt?: ReceiptRequest;
}

/** Published now (`cursor`), or scheduled (`cursor: null`, `id`, `due` in ms). */
export type PublishOutcome = { cursor: string; topic: string; repeated: boolean } | { cursor: null; id: string; due: number; repeated: boolean };

/** Publishes with options; doors hand requests that carry options to it. */
export interface OptionsPublisher {
  publish(p: Principal, req: PublishRequest, opts: PublishOptions): Promise<PublishOutcome>;
}
