import { z } from 'zod';
import { durationSeconds } from './duration.js';

/** Delivery receipts and notify-if-unseen (docs/receipts.md). */
export const receiptsSchema = z
  .object({
    /** Filters with one `{sub}` level naming the principal a topic's messages are for, e.g. `user/{sub}/#`. */
    rules: z
      .array(
        z
          .object({
            filter: z
              .string()
              .min(1)
              .max(1024)
              .refine((f) => f.split('/').filter((l) => l === '{sub}').length === 1, 'a receipts rule filter needs exactly one {sub} level, e.g. "user/{sub}/#"'),
          })
          .strict(),
      )
      .max(100)
      .default([]),
    /** longest `receipt.within` a publish may ask for, seconds */
    maxWithin: durationSeconds(z.number().positive().max(7 * 86400)).default(3600),
    /** receipts pending at once on this node (quota_exceeded past it) */
    maxPending: z.number().int().positive().default(100_000),
    /** receipts one publisher may have pending at once on this node (quota_exceeded past it) */
    maxPendingPerPrincipal: z.number().int().positive().default(10_000),
    /** cursors one ack (POST /v1/ack, WebSocket `ack` frame) may carry */
    maxAckCursors: z.number().int().positive().max(10_000).default(500),
    /**
     * acked cursors per second, per principal, that need a store read (a receipt this node does not
     * hold: finished, another node's, or none); 429 rate_limited past it, with a burst of ten seconds' worth. 0: no limit
     */
    ackLookupsPerSecond: z.number().int().min(0).default(200),
    /** seconds receipt events (and finished receipts, for late acks) are kept for GET /v1/receipts */
    keep: durationSeconds(z.number().positive()).default(24 * 3600),
    /** publish each receipt event to `$receipts/<topic>` too */
    topicEvents: z.boolean().default(true),
  })
  .strict()
  .default({});
