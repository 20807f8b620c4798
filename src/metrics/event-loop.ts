import { createHistogram, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** While the loop is this busy between two samples (the share of the time it ran code), it is sampled at the resolution. */
const BUSY = 0.1;

/** One window's figures, in seconds of delay (0 when nothing was sampled). */
export interface LoopDelayWindow {
  count: number;
  min: number;
  max: number;
  mean: number;
  stddev: number;
  p50: number;
  p90: number;
  p99: number;
}

/**
 * How late the event loop runs a timer: the figure that shows one request stalling everyone else
 * (a long synchronous store call or loop). Sampled every `resolution` ms while the loop has work,
 * and once every `idleMs` while it has none, so that an idle server does not wake a hundred times a
 * second: a server that wakes every 10 ms with nothing to do gets placed beside its load on a busy
 * host, and every write it makes then costs a dearer wakeup (fan-out p99 was a few percent worse).
 *
 * The loop counts as having work after a sample when at least a tenth of the time since the one
 * before went to running code (`performance.eventLoopUtilization`), and from the moment a door
 * reports work ({@link wake}: a connection, a request, a publish, a store call). A stall that
 * begins while the loop is idle and nothing arrives is seen only by the slow sample, if it spans it.
 *
 * 10 ms by default, not 1: a timer firing every millisecond cut the fan-out's per-tick write batches
 * short (WebSocket and MQTT fan-out fell by a third). A stall of S ms then reads between S - 10 and
 * S, by where in the 10 ms it began.
 */
export class LoopDelaySampler {
  private readonly hist = createHistogram();
  private timer: NodeJS.Timeout | undefined;
  private due = 0;
  private busy = false;
  private closed = false;
  private elu: EventLoopUtilization = performance.eventLoopUtilization();

  constructor(
    readonly resolution: number,
    readonly idleMs = 1000,
  ) {
    this.arm(false);
  }

  /** Work arrived: sample every `resolution` ms until the loop is idle again. Cheap when it already is. */
  readonly wake = (): void => {
    if (!this.busy && !this.closed) this.arm(true);
  };

  /** Whether it samples at the resolution now (for tests). */
  get sampling(): boolean {
    return this.busy;
  }

  private arm(busy: boolean): void {
    clearTimeout(this.timer);
    this.busy = busy;
    const ms = busy ? this.resolution : this.idleMs;
    this.due = performance.now() + ms;
    this.timer = setTimeout(this.fire, ms);
    this.timer.unref();
  }

  private readonly fire = (): void => {
    // node's timer may run up to a millisecond before `due` (it counts from the loop's cached clock)
    this.hist.record(Math.max(1, Math.round((performance.now() - this.due) * 1e6)));
    const now = performance.eventLoopUtilization();
    const since = performance.eventLoopUtilization(now, this.elu);
    this.elu = now;
    if (!this.closed) this.arm(since.utilization >= BUSY);
  };

  /** The figures since the previous call, which starts a new window. */
  take(): LoopDelayWindow {
    const h = this.hist;
    const s = (ns: number): number => (h.count ? ns / 1e9 : 0);
    const w = { count: h.count, min: s(h.min), max: s(h.max), mean: s(h.mean), stddev: s(h.stddev), p50: s(h.percentile(50)), p90: s(h.percentile(90)), p99: s(h.percentile(99)) };
    h.reset();
    return w;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

/** prom-client's own sampler of `nodejs_eventloop_lag_*` cannot be turned off: this interval (2³¹−1 ms, ~25 days: the largest that fits the 32 bits node keeps it in) keeps it from firing. */
export const PROM_CLIENT_LOOP_PRECISION = 2 ** 31 - 1;

const STANDARD: Array<[keyof LoopDelayWindow, string, string, 'min' | 'max' | 'average']> = [
  ['min', 'nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', 'min'],
  ['max', 'nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', 'max'],
  ['mean', 'nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', 'average'],
  ['stddev', 'nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', 'average'],
  ['p50', 'nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', 'average'],
  ['p90', 'nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', 'average'],
  ['p99', 'nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', 'average'],
];

/**
 * `omnipush_event_loop_delay_{p99,max}_seconds`, and the standard `nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds`
 * in place of prom-client's (registered by `collectDefaultMetrics` with {@link PROM_CLIENT_LOOP_PRECISION}),
 * all read from one sampler and one window since the previous scrape. The window is taken by the
 * first of them a scrape collects (registration order); the rest read what it took.
 */
export function registerEventLoopDelay(registry: Registry, resolution: number): LoopDelaySampler {
  const sampler = new LoopDelaySampler(resolution);
  let w = sampler.take();
  const registers = [registry];
  const help = `sampled every \`metrics.loopDelayResolution\` ms while the server has work, every ${sampler.idleMs / 1000} s while idle`;
  new Gauge({
    name: 'omnipush_event_loop_delay_p99_seconds',
    help: `Event-loop delay, 99th percentile since the previous scrape (${help})`,
    registers,
    collect() {
      w = sampler.take();
      this.set(w.p99);
    },
  });
  new Gauge({
    name: 'omnipush_event_loop_delay_max_seconds',
    help: `Event-loop delay, longest since the previous scrape (${help})`,
    registers,
    collect() {
      this.set(w.max);
    },
  });
  for (const [field, name, text, aggregator] of STANDARD) {
    registry.removeSingleMetric(name);
    new Gauge({
      name,
      help: `${text} Since the previous scrape; the delay beyond the sampling interval (${help}).`,
      registers,
      aggregator,
      collect() {
        this.set(w[field]);
      },
    });
  }
  return sampler;
}
