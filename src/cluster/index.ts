import type { Logger } from 'pino';
import type { Store } from '../core/store.js';
import { RedisStore } from '../store/redis.js';
import { LocalBus, type Bus } from './bus.js';
import { RedisBus } from './redis-bus.js';

export type { Bus, BusSink } from './bus.js';
export { LocalBus } from './bus.js';
export { RedisBus } from './redis-bus.js';

/** Builds the configured bus; `redis` needs the Redis store, whose append publishes what the bus reads. */
export function createBus(kind: 'local' | 'redis', store: Store, log?: Logger): Bus {
  if (kind === 'local') return new LocalBus();
  if (!(store instanceof RedisStore)) {
    throw new Error(`bus.kind "redis" needs store.kind "redis" (the bus carries the Redis store's appends), not "${store.kind}"`);
  }
  return new RedisBus(store, { log });
}
