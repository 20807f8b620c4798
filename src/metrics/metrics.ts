import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HubObserver } from '../core/hub.js';
import { registerEventLoopDelay } from './event-loop.js';

/** The server's Prometheus figures. One instance per server; doors report into it. */
export class Metrics {
  readonly registry = new Registry();
  readonly connections: Gauge<'transport'>;
  readonly published: Counter;
  readonly deliveries: Counter<'transport'>;
  readonly fanouts: Counter;
  readonly slowConsumerCloses: Counter<'transport'>;
  readonly deliveryLatency: Histogram;
  readonly storeLatency: Histogram<'op'>;
  readonly httpRequests: Counter<'route' | 'status'>;
  /** Deliveries per transport, incremented by the doors without label lookups. */
  readonly deliveryCounts: Record<string, number> = { sse: 0, longpoll: 0, websocket: 0 };

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'omnipush_process_' });
    registerEventLoopDelay(this.registry);
    this.connections = new Gauge({ name: 'omnipush_connections', help: 'Open subscriber connections per transport', labelNames: ['transport'], registers });
    this.published = new Counter({ name: 'omnipush_messages_in_total', help: 'Messages accepted and stored', registers });
    const counts = this.deliveryCounts;
    const reported: Record<string, number> = {};
    this.deliveries = new Counter({
      name: 'omnipush_messages_out_total',
      help: 'Messages handed to subscribers (live and replayed) per transport',
      labelNames: ['transport'],
      registers,
      // doors count in a plain object on the hot path; the counter catches up when scraped
      collect() {
        for (const t of Object.keys(counts)) {
          const delta = counts[t] - (reported[t] ?? 0);
          if (delta > 0) this.inc({ transport: t }, delta);
          reported[t] = counts[t];
        }
      },
    });
    this.fanouts = new Counter({ name: 'omnipush_fanout_deliveries_total', help: 'Live deliveries made by fan-out (all transports)', registers });
    this.slowConsumerCloses = new Counter({ name: 'omnipush_queue_closes_total', help: 'Subscribers closed because they fell behind their queue bound', labelNames: ['transport'], registers });
    this.deliveryLatency = new Histogram({
      name: 'omnipush_publish_to_deliver_seconds',
      help: 'Time from accepting a publish to handing it to subscribers',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.storeLatency = new Histogram({
      name: 'omnipush_store_op_seconds',
      help: 'Store operation latency',
      labelNames: ['op'],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.httpRequests = new Counter({ name: 'omnipush_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers });
    for (const t of ['sse', 'longpoll', 'websocket']) this.connections.set({ transport: t }, 0);
  }

  /** The hub's observer, feeding these metrics. */
  hubObserver(): HubObserver {
    return {
      published: (n) => this.published.inc(n),
      fannedOut: (n, latencyMs) => {
        if (n > 0) {
          this.fanouts.inc(n);
          this.deliveryLatency.observe(latencyMs / 1000);
        }
      },
      storeLatency: (op, s) => this.storeLatency.observe({ op }, s),
      slowConsumerClosed: (t) => this.slowConsumerCloses.inc({ transport: t }),
    };
  }
}
