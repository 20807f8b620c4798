import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * Event-loop delay since the previous scrape, sampled every 10 ms: the figure that shows one
 * request stalling everyone else (a long synchronous store call or loop). The process defaults
 * (`nodejs_eventloop_lag_*`) never reset, so they cannot show one window's p99.
 */
export function registerEventLoopDelay(registry: Registry): void {
  // 10 ms, not 1: a timer firing every millisecond cut the fan-out's per-tick write batches short
  // (WebSocket and MQTT fan-out fell by a third); a stall past the 10 ms budget still shows whole
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const ns = 1e-9;
  // both gauges read the same window; the one collected last resets it
  let pending = 0;
  const take = (): void => {
    if (++pending < 2) return;
    pending = 0;
    h.reset();
  };
  new Gauge({
    name: 'omnipush_event_loop_delay_p99_seconds',
    help: 'Event-loop delay, 99th percentile since the previous scrape (sampled every 10 ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? h.percentile(99) * ns : 0);
      take();
    },
  });
  new Gauge({
    name: 'omnipush_event_loop_delay_max_seconds',
    help: 'Event-loop delay, longest since the previous scrape (sampled every 10 ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? h.max * ns : 0);
      take();
    },
  });
}
