import { z } from 'zod';
import { durationSeconds } from './duration.js';

/** The events a webhook endpoint can ask for (docs/webhooks.md). */
export const WEBHOOK_EVENTS = ['connect', 'disconnect', 'subscribe', 'unsubscribe', 'message', 'webpush.gone', 'message.receipt'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** A Standard Webhooks secret: `whsec_` and base64 of at least 16 random bytes. */
const secret = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, 'a webhook secret is "whsec_" followed by base64 (e.g. from `openssl rand -base64 32`)')
  .refine((s) => Buffer.from(s.slice(6), 'base64').length >= 16, 'a webhook secret needs at least 16 bytes (base64 after "whsec_")');

const endpoint = z
  .object({
    /** Where events are POSTed (http: or https:). */
    url: z.string().url().refine((u) => /^https?:$/.test(new URL(u).protocol), 'webhook url must be http: or https:'),
    /** Signing secret `whsec_<base64>`. */
    secret: secret.optional(),
    /** Several secrets while rotating: each request carries one signature per secret (newest first). */
    secrets: z.array(secret).min(1).max(8).optional(),
    /** Which events go to this endpoint. */
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default(['connect', 'disconnect', 'subscribe', 'unsubscribe', 'webpush.gone']),
    /** Topic filters whose messages are sent as `message` events (needs `message` in `events`). */
    filters: z.array(z.string().min(1)).max(100).default([]),
    batch: z
      .object({
        /** events per request; above 1 the body is a JSON array of events */
        maxEvents: z.number().int().min(1).max(1000).default(1),
        /** ms a partial batch waits for more events before it goes */
        maxDelay: z.number().int().min(0).max(60_000).default(0),
      })
      .strict()
      .default({}),
    /** requests in flight to this endpoint at once */
    concurrency: z.number().int().min(1).max(256).default(4),
    /** seconds to wait for the endpoint's answer before the attempt counts as failed */
    timeout: durationSeconds(z.number().positive().max(300)).default(10),
  })
  .strict()
  .refine((e) => (e.secret !== undefined) !== (e.secrets !== undefined), 'a webhook endpoint needs `secret` or `secrets` (one of them)')
  .refine((e) => e.filters.length === 0 || e.events.includes('message'), 'webhook `filters` need "message" in `events`');

/** Signed webhooks to the app (docs/webhooks.md): off while `endpoints` is empty. */
export const webhooksSchema = z
  .object({
    endpoints: z.array(endpoint).max(32).default([]),
    retry: z
      .object({
        /** backoff between retries, ms: exponential from min to max, with full jitter (Retry-After wins) */
        minDelay: z.number().int().positive().default(1000),
        maxDelay: z.number().int().positive().default(5 * 60_000),
        /** seconds after which an undelivered event is given up (kept for the server API to retry) */
        giveUpAfter: durationSeconds(z.number().positive()).default(24 * 3600),
      })
      .strict()
      .default({}),
    /**
     * In a cluster: how often the sending node reads the stored queue for events another node
     * stored but whose notice it did not hear (a pub/sub message lost while Redis reconnected).
     */
    rescanInterval: durationSeconds(z.number().positive()).default(30),
  })
  .strict()
  .default({});
