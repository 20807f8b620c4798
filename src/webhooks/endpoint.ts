import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import type { Config } from '../config/schema.js';
import type { WebhookEventType } from '../config/webhooks-schema.js';
import { parseRetryAfter } from '../outbound/retry-after.js';
import { signatureHeaders, signingKeys } from './signer.js';

/** One event as the app receives it (one per request, or an array of them when batched). */
export interface WebhookEvent {
  /** Unique per event; a receiver drops a repeat by it (delivery is at least once). */
  id: string;
  type: WebhookEventType;
  /** ISO 8601, when the event happened. */
  timestamp: string;
  data: Record<string, unknown>;
}

export interface PostResult {
  /** HTTP status, or 0 when no answer came (timeout, connection refused). */
  status: number;
  retryAfterMs?: number;
  detail?: string;
}

/**
 * One configured receiver: its signing keys, its keep-alive pool (one socket per request allowed
 * in flight), and how it wants events (which, batched or not).
 */
export class WebhookEndpoint {
  /** Stable across restarts and config order: queue keys start with it. */
  readonly id: string;
  readonly url: URL;
  readonly events: ReadonlySet<WebhookEventType>;
  readonly filters: readonly string[];
  readonly maxEvents: number;
  readonly maxDelayMs: number;
  readonly concurrency: number;
  private readonly keys: Buffer[];
  private readonly pool: Pool;

  constructor(cfg: Config['webhooks']['endpoints'][number]) {
    this.url = new URL(cfg.url);
    this.id = createHash('sha256').update(cfg.url).digest().subarray(0, 9).toString('base64url');
    this.events = new Set(cfg.events);
    this.filters = cfg.filters;
    this.maxEvents = cfg.batch.maxEvents;
    this.maxDelayMs = cfg.batch.maxDelay;
    this.concurrency = cfg.concurrency;
    this.keys = signingKeys(cfg.secrets ?? [cfg.secret!]);
    const ms = cfg.timeout * 1000;
    this.pool = new Pool(this.url.origin, { connections: cfg.concurrency, pipelining: 1, headersTimeout: ms, bodyTimeout: ms, connect: { timeout: ms } });
  }

  /** Signs and POSTs `events` (an array body when the endpoint batches); never throws. */
  async post(events: WebhookEvent[]): Promise<PostResult> {
    const batched = this.maxEvents > 1;
    const body = Buffer.from(JSON.stringify(batched ? events : events[0]));
    // a retry of the same batch carries the same webhook-id, so a receiver can drop it whole
    const id = events.length === 1 ? events[0].id : `batch_${createHash('sha256').update(events.map((e) => e.id).join(' ')).digest().subarray(0, 12).toString('base64url')}`;
    const headers = { 'content-type': 'application/json', ...signatureHeaders(this.keys, id, Math.floor(Date.now() / 1000), body) };
    try {
      const res = await this.pool.request({ path: this.url.pathname + this.url.search, method: 'POST', headers, body });
      let detail = '';
      if (res.statusCode >= 300) detail = (await res.body.text()).slice(0, 200);
      else await res.body.dump();
      const out: PostResult = { status: res.statusCode };
      const ra = parseRetryAfter(res.headers['retry-after']);
      if (ra !== undefined) out.retryAfterMs = ra;
      if (detail) out.detail = detail;
      return out;
    } catch (e) {
      const err = e as Error & { code?: string };
      return { status: 0, detail: err.code ?? err.message };
    }
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}
