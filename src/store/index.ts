import type { Store } from '../core/store.js';
import { MemoryStore } from './memory.js';
import { SqliteStore } from './sqlite.js';

export interface StoreConfig {
  kind: 'sqlite' | 'memory';
  dir: string;
  synchronous: 'normal' | 'full';
}

/** Builds and opens the configured store. */
export async function createStore(cfg: StoreConfig): Promise<Store> {
  const store: Store = cfg.kind === 'memory' ? new MemoryStore() : new SqliteStore(cfg.dir, { synchronous: cfg.synchronous });
  await store.open();
  return store;
}
