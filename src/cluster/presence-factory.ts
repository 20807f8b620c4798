import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Presence, type PresenceBackend } from '../core/presence.js';
import { LocalPresence } from '../core/presence-local.js';
import { validateFilter } from '../core/topic.js';
import type { ClusterControl } from './control.js';
import { RedisPresence } from './redis-presence.js';

/**
 * Presence when `presence.rules` has any: members in this process alone, or in Redis for the
 * cluster (docs/presence.md). Without rules nothing hears the registry and nothing is kept.
 */
export async function createPresence(config: Config, cluster: ClusterControl, log: Logger): Promise<Presence | undefined> {
  const c = config.presence;
  if (c.rules.length === 0) return undefined;
  const rules = c.rules.map((r, i) => {
    try {
      return { filter: validateFilter(r.filter), joinLeave: r.joinLeave, maxMembers: r.maxMembers };
    } catch (e) {
      throw new Error(`presence.rules[${i}].filter: ${(e as Error).message}`);
    }
  });
  const backend: PresenceBackend = cluster.clustered ? await RedisPresence.start(config.store.redis.url, config.store.redis.prefix, cluster, log, c.leaveGrace * 1000) : new LocalPresence();
  return new Presence(rules, backend, { nodeId: cluster.nodeId, pollGraceMs: c.pollGrace * 1000, leaveGraceMs: c.leaveGrace * 1000, maxPageSize: c.maxPageSize });
}
