import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HubObserver } from '../core/hub.js';
import { VERSION } from '../version.js';

/** The doors a publish can come in by (the in-process API counts as `embedded`). */
export type PublishDoor = 'http' | 'websocket' | 'mqtt' | 'embedded';

/** Per-door figures the doors bump as plain numbers; the counters catch up when scraped. */
function catchUp(counts: Record<PublishDoor, number>): (counter: Counter<'door'>) => void {
  const reported: Record<string, number> = {};
  return (counter) => {
    for (const door of Object.keys(counts) as PublishDoor[]) {
      const delta = counts[door] - (reported[door] ?? 0);
      if (delta > 0) counter.inc({ door }, delta);
      reported[door] = counts[door];
    }
  };
}
import { PROM_CLIENT_LOOP_PRECISION, registerEventLoopDelay, type LoopDelaySampler } from './event-loop.js';

/** The server's Prometheus figures. One instance per server; doors report into it. */
export class Metrics {
  readonly registry = new Registry();
  /** The event-loop delay sampler; its `wake` is called by the doors when work arrives. */
  readonly loopDelay: LoopDelaySampler;
  readonly connections: Gauge<'transport'>;
  readonly published: Counter;
  readonly deliveries: Counter<'transport'>;
  readonly fanouts: Counter;
  readonly slowConsumerCloses: Counter<'transport'>;
  readonly deliveryLatency: Histogram;
  readonly storeLatency: Histogram<'op'>;
  readonly httpRequests: Counter<'route' | 'status'>;
  /**
   * Answered HTTP requests, route → status → count, handed to {@link httpRequests} when scraped:
   * prom-client's labelled inc hashed its labels on every request.
   */
  private readonly httpCounts = new Map<string, Map<number, number>>();
  /** MQTT CONNECTs refused because the client identifier's session is another principal's. */
  readonly mqttForeignConnects: Counter;
  /** MQTT PUBLISHes left out for one client because they exceed its Maximum Packet Size. */
  readonly mqttDroppedOversize: Counter;
  /** Questions to the app (hooks) by hook and outcome: allow, deny, cached, timeout, unavailable, invalid, busy. */
  readonly hookRequests: Counter<'hook' | 'result'>;
  /** Time the app took to answer a hook (cache hits are not timed). */
  readonly hookLatency: Histogram<'hook'>;
  /** Deliveries per transport, incremented by the doors without label lookups. */
  readonly deliveryCounts: Record<string, number> = { sse: 0, longpoll: 0, websocket: 0 };
  /** Messages accepted per door, bumped by the doors (no label lookup on their paths). */
  readonly publishCounts: Record<PublishDoor, number> = { http: 0, websocket: 0, mqtt: 0, embedded: 0 };
  /** Payload bytes of those messages. */
  readonly publishBytes: Record<PublishDoor, number> = { http: 0, websocket: 0, mqtt: 0, embedded: 0 };
  /** Publishes waiting for the store's next batch, read at scrape time (set by the server). */
  pendingPublishes: () => number = () => 0;
  /** MQTT sessions this node holds, read at scrape time (set by the MQTT door). */
  mqttSessions: (() => { connected: number; total: number }) | undefined;

  constructor(opts: { loopDelayResolution?: number } = {}) {
    const registers = [this.registry];
    // standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes ...) so stock dashboards work;
    // their event-loop gauges are read from our sampler (registerEventLoopDelay), else a timer of
    // their own would wake an idle loop every few ms
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: PROM_CLIENT_LOOP_PRECISION });
    new Gauge({ name: 'omnipush_build_info', help: 'Always 1; the labels say which build runs', labelNames: ['version', 'node'], registers }).set({ version: VERSION, node: process.versions.node }, 1);
    const publishCatchUp = catchUp(this.publishCounts);
    const bytesCatchUp = catchUp(this.publishBytes);
    const publishedByDoor = new Counter({
      name: 'omnipush_published_messages_total',
      help: 'Messages accepted for publishing, per door',
      labelNames: ['door'],
      registers,
      collect() {
        publishCatchUp(this);
      },
    });
    const bytesByDoor = new Counter({
      name: 'omnipush_published_bytes_total',
      help: 'Payload bytes accepted for publishing, per door',
      labelNames: ['door'],
      registers,
      collect() {
        bytesCatchUp(this);
      },
    });
    for (const door of Object.keys(this.publishCounts)) {
      publishedByDoor.inc({ door }, 0);
      bytesByDoor.inc({ door }, 0);
    }
    const pending = () => this.pendingPublishes();
    const sessions = () => this.mqttSessions?.() ?? { connected: 0, total: 0 };
    new Gauge({
      name: 'omnipush_hub_pending_publishes',
      help: 'Publishes accepted and waiting for the store',
      registers,
      collect() {
        this.set(pending());
      },
    });
    new Gauge({
      name: 'omnipush_mqtt_sessions',
      help: 'MQTT sessions this node holds: connected, or offline (persistent, waiting for their client)',
      labelNames: ['state'],
      registers,
      collect() {
        const s = sessions();
        this.set({ state: 'connected' }, s.connected);
        this.set({ state: 'offline' }, Math.max(0, s.total - s.connected));
      },
    });
    this.loopDelay = registerEventLoopDelay(this.registry, opts.loopDelayResolution ?? 10);
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
    const httpCounts = this.httpCounts;
    const httpReported = new Map<string, number>();
    this.httpRequests = new Counter({
      name: 'omnipush_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'],
      registers,
      collect() {
        for (const [route, byStatus] of httpCounts) {
          for (const [status, n] of byStatus) {
            const key = `${route} ${status}`;
            const delta = n - (httpReported.get(key) ?? 0);
            if (delta > 0) this.inc({ route, status: String(status) }, delta);
            httpReported.set(key, n);
          }
        }
      },
    });
    this.mqttForeignConnects = new Counter({ name: 'omnipush_mqtt_foreign_connects_total', help: 'MQTT CONNECTs refused: the session belongs to another principal', registers });
    this.mqttDroppedOversize = new Counter({ name: 'omnipush_mqtt_dropped_oversize_total', help: "MQTT messages not sent to a client because they exceed its Maximum Packet Size", registers });
    this.hookRequests = new Counter({ name: 'omnipush_hook_requests_total', help: 'Hook questions to the app by hook and result', labelNames: ['hook', 'result'], registers });
    this.hookLatency = new Histogram({
      name: 'omnipush_hook_duration_seconds',
      help: 'Time the app took to answer a hook',
      labelNames: ['hook'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    for (const t of ['sse', 'longpoll', 'websocket']) this.connections.set({ transport: t }, 0);
  }

  /** Counts one answered HTTP request (`route` is one of a fixed set of labels). */
  countHttpRequest(route: string, status: number): void {
    let byStatus = this.httpCounts.get(route);
    if (!byStatus) this.httpCounts.set(route, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  /** The hub's observer, feeding these metrics. */
  hubObserver(): HubObserver {
    return {
      published: (n) => {
        this.loopDelay.wake();
        this.published.inc(n);
      },
      fannedOut: (n, latencyMs) => {
        if (n > 0) {
          this.fanouts.inc(n);
          this.deliveryLatency.observe(latencyMs / 1000);
        }
      },
      storeLatency: (op, s) => {
        this.loopDelay.wake();
        this.storeLatency.observe({ op }, s);
      },
      slowConsumerClosed: (t) => this.slowConsumerCloses.inc({ transport: t }),
    };
  }

  /** The pre-auth pool's figures (limits.preAuth), read when scraped. */
  watchPreAuth(pool: { readonly size: number; readonly refused: number; readonly evicted: number }): void {
    const registers = [this.registry];
    new Gauge({
      name: 'omnipush_preauth_sockets',
      help: 'Sockets not authenticated yet (raw MQTT before CONNECT, WebSocket waiting for auth, HTTP before its first head)',
      registers,
      collect() {
        this.set(pool.size);
      },
    });
    const reported = { refused: 0, evicted: 0 };
    new Counter({
      name: 'omnipush_preauth_closed_total',
      help: 'Unauthenticated sockets closed at once: `refused` (their address was full), `evicted` (the pool was full and they were its oldest)',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const reason of ['refused', 'evicted'] as const) {
          const delta = pool[reason] - reported[reason];
          if (delta > 0) this.inc({ reason }, delta);
          reported[reason] = pool[reason];
        }
      },
    });
  }
}
