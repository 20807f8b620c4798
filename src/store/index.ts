import type { Store } from '../core/store.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import { SqliteStore } from './sqlite.js';

export interface StoreConfig {
  kind: 'sqlite' | 'memory' | 'redis';
  dir: string;
  synchronous: 'normal' | 'full';
  redis?: { url: string; prefix: string };
}

/** Builds and opens the configured store. */
export async function createStore(cfg: StoreConfig): Promise<Store> {
  const store: Store =
    cfg.kind === 'memory'
      ? new MemoryStore()
      : cfg.kind === 'redis'
        ? new RedisStore({ url: cfg.redis?.url ?? 'redis://127.0.0.1:6379', prefix: cfg.redis?.prefix ?? 'omnipush:' })
        : new SqliteStore(cfg.dir, { synchronous: cfg.synchronous });
  await store.open();
  return store;
}
