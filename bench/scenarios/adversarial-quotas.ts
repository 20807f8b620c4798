import type { AdversarialOptions } from './adversarial.js';

/** Not built yet. */
export async function quotaCost(o: AdversarialOptions): Promise<void> {
  o.row('adversarial: quotas', 'not built yet');
  await Promise.resolve();
}
