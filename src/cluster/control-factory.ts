import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { LocalControl, RedisControl, type ClusterControl } from './control.js';

/**
 * Nodes that share a Redis store are one cluster: they must agree on who holds an MQTT session,
 * who sends Web Push, whose members take a shared subscription's message. Other stores belong to
 * one process, which is alone.
 */
export async function createControl(config: Config, log: Logger): Promise<ClusterControl> {
  if (config.store.kind !== 'redis') return new LocalControl();
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
