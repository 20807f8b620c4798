import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import { idempotencyRecordKey, type IdempotentPublisher } from '../core/idempotency.js';

/** Who publishes stream entries: whoever can XADD to the streams can publish to any topic. */
export const STREAMS_PRINCIPAL: Principal = { id: 'omnipush:streams', kind: 'user', grants: ALLOW_ALL };

export interface RedisStreamsOptions {
  url: string;
  streams: string[];
  group: string;
  consumer: string;
  batchSize: number;
}

const BLOCK_MS = 2_000;
/** Entries another consumer took and has not acknowledged for this long are taken over. */
const CLAIM_IDLE_MS = 30_000;

type Entry = [id: string, fields: string[]];
/**
 * XREADGROUP's answer: a list of [stream, entries] pairs (RESP2), or a map of them (RESP3), which
 * the client hands over as a flat [stream, entries, stream, entries ...] list.
 */
type StreamReply = unknown[] | null;

function streamsOf(reply: StreamReply): Array<[string, Entry[]]> {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  if (Array.isArray(reply[0])) return reply as Array<[string, Entry[]]>;
  const out: Array<[string, Entry[]]> = [];
  for (let i = 0; i + 1 < reply.length; i += 2) out.push([String(reply[i]), reply[i + 1] as Entry[]]);
  return out;
}

/**
 * Reads the app's Redis streams as one member of a consumer group: each entry is published once
 * through the hub (idempotency key: the entry's `idempotencyKey` field, else `stream:<name>:<id>`),
 * then acknowledged. Entries left pending by a crash are read again on start (ours) or taken over
 * after {@link CLAIM_IDLE_MS} (another member's); their keys make the second publish a no-op.
 *
 * Entry fields: `topic` (required), `data`, `event`, `contentType`, `retain` (`1`/`true`), `ttl`
 * (seconds), `properties` (a JSON object), `idempotencyKey`.
 */
export class RedisStreamsConsumer {
  private readonly redis: Redis;
  private closed = false;
  private loop: Promise<void> | null = null;
  private lastClaim = 0;
  published = 0;

  constructor(
    private readonly hub: Hub,
    private readonly idempotency: IdempotentPublisher,
    private readonly log: Logger,
    private readonly opts: RedisStreamsOptions,
  ) {
    this.redis = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: null, enableOfflineQueue: true });
    this.redis.on('error', () => undefined); // reconnects on its own; failures show up in the loop's log
  }

  async start(): Promise<void> {
    await this.redis.connect();
    for (const s of this.opts.streams) {
      try {
        // `$`: the group starts at what is added from now on, not at the stream's whole past
        await this.redis.xgroup('CREATE', s, this.opts.group, '$', 'MKSTREAM');
      } catch (e) {
        if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
      }
    }
    this.loop = this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.redis.disconnect();
    await this.loop?.catch(() => undefined);
  }

  private async run(): Promise<void> {
    // first what this consumer read and never acknowledged (a crash), then new entries
    let pending = true;
    let backoff = 250;
    while (!this.closed) {
      try {
        const ids = this.opts.streams.map(() => (pending ? '0' : '>'));
        const args: Array<string | number> = ['GROUP', this.opts.group, this.opts.consumer, 'COUNT', this.opts.batchSize];
        if (!pending) args.push('BLOCK', BLOCK_MS);
        const reply = (await this.redis.call('XREADGROUP', ...args, 'STREAMS', ...this.opts.streams, ...ids)) as StreamReply;
        let n = 0;
        for (const [stream, entries] of streamsOf(reply)) n += await this.handle(stream, entries);
        if (pending && n === 0) pending = false;
        if (Date.now() - this.lastClaim > CLAIM_IDLE_MS) await this.claimAbandoned();
        backoff = 250;
      } catch (e) {
        if (this.closed) return;
        this.log.warn({ err: e }, 'redis streams: read failed; retrying');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 10_000);
        pending = true;
      }
    }
  }

  private async claimAbandoned(): Promise<void> {
    this.lastClaim = Date.now();
    for (const s of this.opts.streams) {
      const r = (await this.redis.xautoclaim(s, this.opts.group, this.opts.consumer, CLAIM_IDLE_MS, '0-0', 'COUNT', this.opts.batchSize)) as [string, Entry[]];
      if (r[1].length) await this.handle(s, r[1]);
    }
  }

  /** Publishes a stream's entries in order, then acknowledges them; returns how many. */
  private async handle(stream: string, entries: Entry[]): Promise<number> {
    const live = entries.filter((e) => e[1] !== null); // deleted while pending: nothing to publish
    const items = live.map(([id, fields]) => {
      const f = fieldMap(fields);
      return { req: toRequest(f), recordKey: idempotencyRecordKey(STREAMS_PRINCIPAL.id, f.idempotencyKey ?? `stream:${stream}:${id}`) };
    });
    const results = await this.idempotency.publishBatchUnder(STREAMS_PRINCIPAL, items);
    results.forEach((r, i) => {
      if ('code' in r) this.log.error({ stream, id: live[i][0], err: r }, 'redis streams: entry refused and acknowledged');
    });
    if (entries.length) await this.redis.xack(stream, this.opts.group, ...entries.map((e) => e[0]));
    this.published += live.length;
    return entries.length;
  }
}

function fieldMap(fields: string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  return f;
}

function toRequest(f: Record<string, string>): PublishRequest {
  // a missing topic fails the hub's check, which logs the entry and moves on
  const req: PublishRequest = { topic: f.topic ?? '', payload: Buffer.from(f.data ?? '', 'utf8') };
  if (f.event) req.event = f.event;
  if (f.contentType) req.contentType = f.contentType;
  if (f.retain === '1' || f.retain === 'true') req.retain = true;
  if (f.ttl !== undefined) req.ttl = Number(f.ttl);
  if (f.properties) {
    try {
      const p = JSON.parse(f.properties) as unknown;
      if (p && typeof p === 'object' && !Array.isArray(p)) req.properties = Object.entries(p).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
    } catch {
      req.properties = [['properties', f.properties]];
    }
  }
  return req;
}
