import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * Event-loop delay since the previous scrape, sampled every `resolution` ms (10 by default): the figure that shows one
 * request stalling everyone else (a long synchronous store call or loop). The process defaults
 * (`nodejs_eventloop_lag_*`) never reset, so they cannot show one window's p99.
 *
 * The histogram records the whole time between two firings of its timer, so an idle loop reads
 * the resolution; the delay is what exceeds it (as OpenTelemetry's and Elastic's Node
 * runtime metrics compute it).
 */
export function registerEventLoopDelay(registry: Registry, resolution: number): void {
  // 10 ms by default, not 1: a timer firing every millisecond cut the fan-out's per-tick write
  // batches short (WebSocket and MQTT fan-out fell by a third). A stall of S ms then reads between
  // S - 10 and S, by where in the 10 ms it began.
  const h = monitorEventLoopDelay({ resolution });
  h.enable();
  const delaySeconds = (recordedNs: number): number => Math.max(0, recordedNs * 1e-9 - resolution / 1000);
  // both gauges read the same window; the one collected last resets it
  let pending = 0;
  const take = (): void => {
    if (++pending < 2) return;
    pending = 0;
    h.reset();
  };
  new Gauge({
    name: 'omnipush_event_loop_delay_p99_seconds',
    help: 'Event-loop delay, 99th percentile since the previous scrape (sampled every `metrics.loopDelayResolution` ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? delaySeconds(h.percentile(99)) : 0);
      take();
    },
  });
  new Gauge({
    name: 'omnipush_event_loop_delay_max_seconds',
    help: 'Event-loop delay, longest since the previous scrape (sampled every `metrics.loopDelayResolution` ms)',
    registers: [registry],
    collect() {
      this.set(h.count ? delaySeconds(h.max) : 0);
      take();
    },
  });
}
