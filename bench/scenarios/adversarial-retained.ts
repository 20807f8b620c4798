import type { AdversarialOptions } from './adversarial.js';

/** Not built yet. */
export async function retainedCost(o: AdversarialOptions): Promise<void> {
  o.row('adversarial: retained', 'not built yet');
  await Promise.resolve();
}
