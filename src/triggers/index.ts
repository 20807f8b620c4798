import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';
import type { Config } from '../config/schema.js';
import type { Hub } from '../core/hub.js';
import { IdempotentPublisher } from '../core/idempotency.js';
import type { OptionsPublisher } from '../core/publish-options.js';
import { DelayedPublisher } from './delayed.js';
import { TriggerOptionsPublisher } from './options-publisher.js';
import { PgOutbox } from './pg-outbox.js';
import { RedisStreamsConsumer } from './redis-streams.js';

export interface Triggers {
  publishWith: OptionsPublisher;
  /** Stops consuming and scheduling; before the hub closes. */
  close(): Promise<void>;
}

/** Starts idempotent and delayed publish, and the outbox and stream consumers the config turns on. */
export async function startTriggers(config: Config, hub: Hub, cluster: ClusterControl, log: Logger): Promise<Triggers> {
  const t = config.triggers;
  const idempotency = new IdempotentPublisher(hub, t.idempotency.window * 1000);
  const delayed = new DelayedPublisher(hub, idempotency, cluster, log, { maxDelayMs: t.delayed.maxDelay * 1000, maxPerPrincipal: t.delayed.maxPerPrincipal });
  delayed.start();
  const sweep = setInterval(
    () => void idempotency.sweep().catch((e: unknown) => log.warn({ err: e }, 'idempotency key sweep failed')),
    Math.min(t.idempotency.window * 1000, 600_000),
  );
  sweep.unref();
  const outbox = t.postgres.url ? new PgOutbox(hub, idempotency, log, { ...t.postgres, url: t.postgres.url }) : undefined;
  await outbox?.start();
  const streamsUrl = t.redisStreams.url ?? (config.store.kind === 'redis' ? config.store.redis.url : undefined);
  let streams: RedisStreamsConsumer | undefined;
  if (t.redisStreams.streams.length) {
    if (!streamsUrl) throw new Error('triggers.redisStreams needs a url (or the Redis store)');
    streams = new RedisStreamsConsumer(hub, idempotency, log, { ...t.redisStreams, url: streamsUrl, consumer: t.redisStreams.consumer ?? cluster.nodeId });
    await streams.start();
  }
  return {
    publishWith: new TriggerOptionsPublisher(hub, idempotency, delayed),
    async close() {
      clearInterval(sweep);
      await Promise.all([delayed.close(), outbox?.close(), streams?.close()]);
    },
  };
}
