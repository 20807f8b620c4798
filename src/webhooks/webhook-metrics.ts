import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../metrics/metrics.js';

export type WebhookOutcome = 'delivered' | 'retry' | 'given_up' | 'dropped';

/** Webhook figures, registered in the server's registry; endpoints are few (configured), so each is a label. */
export class WebhookMetrics {
  private readonly events: Counter<'endpoint' | 'outcome'>;

  constructor(m: Metrics, queueSize: () => number) {
    const registers = [m.registry];
    this.events = new Counter({
      name: 'omnipush_webhooks_events_total',
      help: 'Webhook events by endpoint (host and path) and outcome of the attempt that carried them',
      labelNames: ['endpoint', 'outcome'],
      registers,
    });
    new Gauge({ name: 'omnipush_webhooks_queue_entries', help: 'Webhook events waiting on this node (the sending node holds the queue)', registers, collect() { this.set(queueSize()); } });
  }

  count(endpoint: string, outcome: WebhookOutcome, n: number): void {
    this.events.labels(endpoint, outcome).inc(n);
  }
}
