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
}

export async function adversarial(o: AdversarialOptions): Promise<void> {
  await retainedCost(o);
  await quotaCost(o);
  await unauthFlood(o);
}
