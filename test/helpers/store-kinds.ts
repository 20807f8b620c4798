import { after, before } from 'node:test';
import type { Store } from '../../src/core/store.js';
import { MemoryStore } from '../../src/store/memory.js';
import { RedisStore } from '../../src/store/redis.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { redisMissing, startRedis, type RedisServer } from './redis.js';
import { tempDir } from './server.js';

/** Every store kind a test file runs against, with what they stand on. */
export interface StoreKinds {
  /** `[kind, make]` for memory, sqlite and, where redis-server is installed, redis; each `make` gives a fresh, empty store. */
  readonly kinds: Array<[string, () => Store]>;
  /** A fresh directory for a sqlite store, removed after the file's tests. */
  sqliteDir(): string;
  /** The file's redis-server (once its `before` hook has run). */
  redisUrl(): string;
  /** A key prefix no other store of the file has: `label` and a count. */
  redisPrefix(label: string): string;
}

/**
 * Registers the file-level hooks the stores need and returns them. Call it at the top level of a
 * test file. `name` tags the temp directories and the redis stores' key prefixes.
 */
export function storeKinds(name: string): StoreKinds {
  const dirs: Array<{ remove(): void }> = [];
  after(() => dirs.forEach((d) => d.remove()));
  const sqliteDir = (): string => {
    const d = tempDir(`omnipush-${name}-`);
    dirs.push(d);
    return d.path;
  };

  // One redis-server for the file; each store gets its own key prefix, so tests never see each other's data.
  let redis: RedisServer | undefined;
  let prefixes = 0;
  if (!redisMissing) {
    before(async () => {
      redis = await startRedis();
    });
    after(() => redis?.remove());
  }
  const redisUrl = (): string => {
    if (!redis) throw new Error('redis-server is not running: it starts in the before hook, where it is installed');
    return redis.url;
  };
  const redisPrefix = (label: string): string => `${label}${++prefixes}:`;

  const kinds: Array<[string, () => Store]> = [
    ['memory', () => new MemoryStore()],
    ['sqlite', () => new SqliteStore(sqliteDir())],
  ];
  if (!redisMissing) kinds.push(['redis', () => new RedisStore({ url: redisUrl(), prefix: redisPrefix(name) })]);
  return { kinds, sqliteDir, redisUrl, redisPrefix };
}
