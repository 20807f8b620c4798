/**
 * Scenario `adversarial`: what hostile clients cost everybody else. Three parts, each in its own file:
 * retained-state cost of a subscribe, the cost of quotas on the hot paths, and unauthenticated
 * sockets held open while legitimate clients connect.
 */
import { retainedCost } from './adversarial-retained.js';
import { quotaCost } from './adversarial-quotas.js';
import { unauthFlood } from './adversarial-unauth.js';

export type Row = (what: string, value: string, target?: string, verdict?: string) => void;

export interface AdversarialOptions {
  quick: boolean;
  row: Row;
  /** Raw figures go here, under the part's own key. */
  results: Record<string, unknown>;
  /** Whether the run asked for this part (`adversarial-retained`, `-quotas`, `-unauth`; `adversarial` asks for all). */
  want: (part: string) => boolean;
}

export async function adversarial(o: AdversarialOptions): Promise<void> {
  if (o.want('adversarial-retained')) await retainedCost(o);
  if (o.want('adversarial-quotas')) await quotaCost(o);
  if (o.want('adversarial-unauth')) await unauthFlood(o);
}
