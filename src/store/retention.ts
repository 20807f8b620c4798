import type { RetentionRule } from '../core/store.js';
import { filterMatches } from '../core/topic.js';

/** The retention that applies to `topic`: the first matching rule, else the fallback. */
export function retentionFor(topic: string, rules: RetentionRule[], fallback: Omit<RetentionRule, 'filter'>): Omit<RetentionRule, 'filter'> {
  for (const r of rules) if (filterMatches(r.filter, topic)) return r;
  return fallback;
}
