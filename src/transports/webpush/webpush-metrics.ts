import { Counter, Gauge, Histogram } from 'prom-client';
import type { Metrics } from '../../metrics/metrics.js';

/** Outcomes of a delivery attempt (or of a delivery not attempted), as metric labels. */
export type PushOutcome =
  | 'delivered'
  | 'delivered_without_data'
  | 'retry'
  | 'expired'
  | 'gone'
  | 'too_large'
  | 'unauthorized'
  | 'rejected'
  /** held back: the message asks its recipient for a receipt; it is pushed only as the fallback */
  | 'skipped_receipt'
  /** queued as a receipt's fallback */
  | 'receipt_fallback'
  | 'skipped_online'
  | 'skipped_failing';

/** Web Push figures, registered in the server's registry. */
export class WebPushMetrics {
  readonly attempts: Counter<'origin' | 'outcome'>;
  readonly sendSeconds: Histogram<'origin'>;
  readonly queued: Gauge;
  readonly subscriptions: Gauge;

  constructor(m: Metrics, queueSize: () => number, subscriptionCount: () => number) {
    const registers = [m.registry];
    this.attempts = new Counter({
      name: 'omnipush_webpush_outcomes_total',
      help: 'Web Push deliveries by push-service origin and outcome (skipped ones have origin "-")',
      labelNames: ['origin', 'outcome'],
      registers,
    });
    this.sendSeconds = new Histogram({
      name: 'omnipush_webpush_send_seconds',
      help: 'Time for a push service to answer one push request',
      labelNames: ['origin'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.queued = new Gauge({ name: 'omnipush_webpush_queue_entries', help: 'Web Push deliveries waiting (durable queue)', registers, collect() { this.set(queueSize()); } });
    this.subscriptions = new Gauge({ name: 'omnipush_webpush_subscriptions', help: 'Registered Web Push subscriptions', registers, collect() { this.set(subscriptionCount()); } });
  }

  /** Origins get their own label up to this many; endpoints come from browsers, so the rest share `other`. */
  private static readonly MAX_ORIGINS = 100;
  private readonly origins = new Set<string>();

  private originLabel(origin: string): string {
    if (this.origins.has(origin) || origin === '-') return origin;
    if (this.origins.size >= WebPushMetrics.MAX_ORIGINS) return 'other';
    this.origins.add(origin);
    return origin;
  }

  /** Label children by origin and outcome: a send then costs no label hashing. */
  private readonly children = new Map<string, { inc(): void }>();
  private readonly timers = new Map<string, { observe(v: number): void }>();

  count(origin: string, outcome: PushOutcome): void {
    const label = this.originLabel(origin);
    const k = `${label} ${outcome}`;
    let c = this.children.get(k);
    if (!c) this.children.set(k, (c = this.attempts.labels(label, outcome)));
    c.inc();
  }

  observeSend(origin: string, seconds: number): void {
    const label = this.originLabel(origin);
    let h = this.timers.get(label);
    if (!h) this.timers.set(label, (h = this.sendSeconds.labels(label)));
    h.observe(seconds);
  }
}
