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

  count(origin: string, outcome: PushOutcome): void {
    this.attempts.inc({ origin, outcome });
  }
}
