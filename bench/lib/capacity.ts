import { stats, statsOnce } from '../scenarios/fanout.js';
import { cpuNanos, type LoadGen } from './procs.js';
import { paced } from './publish.js';

/**
 * Server CPU nanoseconds per delivery while `publish` sends one message `rate` times a second for
 * `seconds` to the load generators' `clients` subscribers, every delivery awaited (up to 10 s after).
 *
 * What the server would sustain were it alone on the machine is one over this figure. On two cores
 * shared with the load generators, a max-rate fan-out moves by ±30% between rounds of one build:
 * how many messages share one socket write depends on how far the clients lag, which feeds back
 * into what each delivery costs. Below saturation and with one message per publish, every delivery
 * is its own write: on a quiet machine this figure spread by ±1% across four server processes with
 * 10k WebSocket subscribers, but by ±5-10% (bimodal at times, a round far off now and then) over
 * the rounds of full `adversarial-quotas` runs, against ±30% for the max rate.
 */
export async function cpuPerDelivery(gens: LoadGen[], pid: number, clients: number, rate: number, seconds: number, publish: () => void): Promise<number> {
  await stats(gens, { reset: true, timing: false });
  const cpu0 = cpuNanos(pid);
  const want = (await paced(rate, seconds, publish)) * clients;
  const s = await statsOnce(gens, want, 10_000);
  if (s.delivered < want) throw new Error(`capacity phase: ${s.delivered} of ${want} deliveries arrived`);
  return (cpuNanos(pid) - cpu0) / s.delivered;
}
