import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * Event-loop delay since the previous scrape, sampled every millisecond: the figure that shows one
 * request stalling everyone else (a long synchronous store call or loop). The process defaults
 * sample every 10 ms and never reset, too coarse to see a 10 ms budget kept or broken.
 */
export function registerEventLoopDelay(registry: Registry): void {
  const h = monitorEventLoopDelay({ resolution: 1 });
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
    help: 'Event-loop delay, 99th percentile since the previous scrape (sampled every 1 ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? h.percentile(99) * ns : 0);
      take();
    },
  });
  new Gauge({
    name: 'omnipush_event_loop_delay_max_seconds',
    help: 'Event-loop delay, longest since the previous scrape (sampled every 1 ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? h.max * ns : 0);
      take();
    },
  });
}
