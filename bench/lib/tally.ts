import { Histogram } from './histogram.js';

/**
 * What one load generator has seen: deliveries, their latencies, and connections the server
 * closed. `timing` says whether deliveries are timed (latency) or only counted: counting alone is
 * what the max-rate phases want, timing costs a clock read and a parse per message.
 */
export const tally = { delivered: 0, closed: 0, hist: new Histogram(), timing: true };

export interface StatsCommand {
  reset?: boolean;
  /** Send the latency histogram along (10k buckets: not on every poll). */
  hist?: boolean;
  /** Time deliveries from now on, or only count them; unchanged when absent. */
  timing?: boolean;
}

/** The answer to `{cmd: 'stats'}`; resets the counts and latencies afterwards when asked. */
export function statsReply(m: StatsCommand): { delivered: number; closed: number; hist?: number[] } {
  if (m.timing !== undefined) tally.timing = m.timing;
  const reply = { delivered: tally.delivered, closed: tally.closed, hist: m.hist ? tally.hist.counts : undefined };
  if (m.reset) {
    tally.delivered = 0;
    tally.hist = new Histogram();
  }
  return reply;
}
