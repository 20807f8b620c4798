import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { LocalControl, RedisControl, type ClusterControl } from './control.js';

/**
 * Nodes on the Redis bus (which needs the Redis store) are one cluster: every hub sees every
 * message, and the nodes must agree on who holds an MQTT session, who sends Web Push, whose
 * members take a shared subscription's message. Without the bus a process is alone.
 */
export async function createControl(config: Config, log: Logger): Promise<ClusterControl> {
  if (config.bus.kind !== 'redis' || config.store.kind !== 'redis') return new LocalControl();
  const c = new RedisControl({
    url: config.store.redis.url,
    prefix: config.store.redis.prefix,
    heartbeatMs: config.cluster.heartbeat * 1000,
    nodeTimeoutMs: config.cluster.nodeTimeout * 1000,
    log,
  });
  await c.start();
  return c;
}
