import type { ConfigInput } from '../../src/config/schema.js';
import type { RunningServer } from '../../src/server.js';
import type { RedisServer } from './redis.js';
import { startTestServer } from './server.js';

/** Config of one node of a test cluster: Redis store and bus, everything else as in startTestServer. */
export function clusterConfig(redis: RedisServer, prefix: string, extra: ConfigInput = {}): ConfigInput {
  return {
    ...extra,
    store: { kind: 'redis', redis: { url: redis.url, prefix } },
    bus: { kind: 'redis' },
    history: { pruneInterval: 3600, ...extra.history },
  };
}

/** Starts `n` in-process nodes sharing one Redis (store and bus). */
export async function startCluster(redis: RedisServer, prefix: string, n = 3, extra: ConfigInput = {}): Promise<RunningServer[]> {
  const nodes: RunningServer[] = [];
  for (let i = 0; i < n; i++) nodes.push(await startTestServer(clusterConfig(redis, prefix, extra)));
  return nodes;
}

/** The seq inside a cursor (`<epoch>_<seq base36>`). */
export function seqOf(cursor: string): number {
  return parseInt(cursor.slice(cursor.lastIndexOf('_') + 1), 36);
}

export async function httpPublish(base: string, topic: string, data: string): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });
  if (r.status !== 200) throw new Error(`publish to ${base} answered ${r.status}: ${await r.text()}`);
  return ((await r.json()) as { cursor: string }).cursor;
}
