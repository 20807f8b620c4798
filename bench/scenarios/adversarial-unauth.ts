import type { AdversarialOptions } from './adversarial.js';

/** Not built yet. */
export async function unauthFlood(o: AdversarialOptions): Promise<void> {
  o.row('adversarial: unauth', 'not built yet');
  await Promise.resolve();
}
