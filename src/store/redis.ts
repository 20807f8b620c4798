import { Redis, type RedisKey } from 'ioredis';
import { OmnipushError } from '../core/errors.js';
import type { StoredMessage } from '../core/message.js';
import { formatCursor, isExpired } from '../core/message.js';
import { allRetained } from '../core/retained-replay.js';
import { IDEMPOTENCY_KIND, idempotencyRecord, toStored, type AppendInput, type HistoryQuery, type RecordChange, type RetainedRef, type RetentionRule, type Store } from '../core/store.js';
import { filterMatches, isWildcardFilter } from '../core/topic.js';
import { newEpoch } from './epoch.js';
import { decodeBusBatch, decodeFields, encodeFields, splitSeq } from './redis-codec.js';
import { HistoryReader } from './redis-history.js';
import { dec, lexRange, redisKeys, type RedisKeys } from './redis-keys.js';
import { runScript, script, type Script } from './redis-lua.js';
import { APPEND_LUA, PRUNE_TOPIC_LUA } from './redis-scripts.js';
import { retentionFor } from './retention.js';
import { levelKey, walkRetainedKeysAsync, type KeyedRef, type KeyRange } from './retained-walk.js';

export interface RedisStoreOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Start of every key (and of the bus channel), so several servers can share one Redis. */
  prefix: string;
  /** ms a command may take before it fails (a hung Redis must not hang publishers forever). */
  commandTimeoutMs?: number;
}

/** Topics examined per prune() call; the next call continues where this one stopped. */
const PRUNE_TOPICS_PER_CALL = 5000;
const PRUNE_PAGE = 200;
/** Messages one prune script call removes at most, so Redis is never blocked for long. */
const PRUNE_BUDGET = 1000;
/** Redis errors that say "not now" rather than "never": the caller may retry later. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MISCONF|OOM|READONLY|MASTERDOWN|TRYAGAIN|NOREPLICAS|CLUSTERDOWN|NOTBUSY)\b/;

const APPEND = script(APPEND_LUA);
const PRUNE = script(PRUNE_TOPIC_LUA);

/**
 * History, retained messages, meta and records in Redis, laid out as described in
 * `redis-scripts.ts`. Every `append` is one Lua script, so processes sharing a Redis share one
 * total order of seqs (one cursor space), and each batch is published on `<prefix>bus` in that order.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  epoch = '';
  private readonly redis: Redis;
  /** Highest seq this process knows of (its own appends, what it read at open, {@link noteSeq}). */
  private seq = 0;
  /** Where the next prune() continues in the topic index ('' = from the start). */
  private pruneCursor = '';
  private lastError = '';
  private readonly where: string;
  private readonly k: RedisKeys;
  private readonly reader: HistoryReader;

  constructor(private readonly opts: RedisStoreOptions) {
    this.k = redisKeys(opts.prefix);
    this.where = describeUrl(opts.url);
    this.redis = new Redis(opts.url, {
      lazyConnect: true,
      // Fail commands at once while disconnected instead of queueing them: a publisher gets a
      // clear 503 now rather than an answer minutes later, and an append that may already have
      // run is never sent twice.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs ?? 10_000,
      connectTimeout: 5_000,
      // reconnect forever, backing off to 2 s, with jitter so many nodes do not reconnect in step
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000) + Math.floor(Math.random() * 100),
    });
    // without a listener ioredis prints every failed reconnect; keep the last one for our errors
    this.redis.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    this.reader = new HistoryReader(this.redis, this.k, (seq, body) => this.toMessage(seq, body));
  }

  async open(): Promise<void> {
    try {
      await this.redis.connect();
    } catch (e) {
      this.redis.disconnect();
      throw new OmnipushError('unavailable', `cannot reach Redis at ${this.where}: ${(e as Error).message || this.lastError}`);
    }
    try {
      await this.openState();
    } catch (e) {
      this.redis.disconnect();
      throw e;
    }
  }

  /** Checks the server and reads (or creates) the epoch and the seq high-water mark. */
  private async openState(): Promise<void> {
    await this.guard(async () => {
      const version = /redis_version:(\d+)\.(\d+)/.exec(await this.redis.info('server'));
      if (version && Number(version[1]) * 100 + Number(version[2]) < 602) {
        throw new OmnipushError('internal', `Redis at ${this.where} is ${version[1]}.${version[2]}; the store needs 6.2 or later (ZADD GT, ZMSCORE)`);
      }
      await this.redis.hsetnx(this.k.state, 'epoch', newEpoch());
      const [epoch, seq] = await this.redis.hmget(this.k.state, 'epoch', 'seq');
      this.epoch = epoch!;
      this.seq = Number(seq ?? 0);
      await Promise.all([this.redis.script('LOAD', APPEND.lua), this.redis.script('LOAD', PRUNE.lua)]);
      if ((await this.redis.hget(this.k.state, 'rindex')) !== '1') await this.buildRetainedIndex();
    });
  }

  /**
   * Builds the retained index (retained:index, retained:meta, retained:count) of a store written before it existed. Runs
   * once per store: appends maintain the index from then on.
   */
  private async buildRetainedIndex(): Promise<void> {
    const k = this.k;
    await this.redis.del(k.retainedKeys, k.retainedMeta, k.retainedCounts);
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscanBuffer(k.retained, cursor, 'COUNT', 500);
      cursor = next.toString();
      const p = this.redis.pipeline();
      for (let i = 0; i < flat.length; i += 2) {
        const topic = flat[i].toString('utf8');
        const { seq, rest } = splitSeq(flat[i + 1]);
        const pub = this.toMessage(seq, rest).publisher ?? '';
        // HSCAN may return an entry twice: count a topic only when its meta is new
        p.zadd(k.retainedKeys, 0, levelKey(topic));
        p.hsetnx(k.retainedMeta, topic, `${seq} ${pub}`);
      }
      const res = (await p.exec()) ?? [];
      const c = this.redis.pipeline();
      for (let i = 0; i < flat.length; i += 2) {
        if (res[i + 1]?.[1] !== 1) continue;
        const { seq, rest } = splitSeq(flat[i + 1]);
        c.hincrby(k.retainedCounts, this.toMessage(seq, rest).publisher ?? '', 1);
      }
      await c.exec();
    } while (cursor !== '0');
    await this.redis.hset(k.state, 'rindex', '1');
  }

  /** The channel every appended batch is published on, in seq order. */
  get busChannel(): string {
    return this.k.bus;
  }

  /** The messages of one frame received on {@link busChannel}, as `append` returned them to their writer. */
  decodeBusFrame(frame: Buffer): StoredMessage[] {
    return decodeBusBatch(frame).map(({ seq, fields }) => ({ ...(fields as unknown as AppendInput & { retain: boolean }), seq, cursor: formatCursor(this.epoch, seq) }));
  }

  /** Raises the known seq high-water mark (for seqs learnt from other nodes, e.g. over the bus). */
  noteSeq(seq: number): void {
    if (seq > this.seq) this.seq = seq;
  }

  async append(batch: AppendInput[]): Promise<StoredMessage[]> {
    if (batch.length === 0) return [];
    const k = this.k;
    const ks: RedisKey[] = [k.state, k.msg, k.log, k.topics, k.retained, k.retainedKeys, k.retainedMeta, k.retainedCounts];
    const args: Array<string | Buffer> = [this.epoch, dec(this.seq), k.bus];
    let idempotent: Array<{ i: number; key: string }> | undefined;
    for (let i = 0; i < batch.length; i++) {
      const input = batch[i];
      if (input.idempotencyKey !== undefined) {
        (idempotent ??= []).push({ i, key: input.idempotencyKey });
        input.idempotencyKey = undefined; // not part of the stored message
      }
      // the input is the store's (Store.append): its retain is made a boolean in place, not in a copy
      const retain = (input.retain = input.retain === true);
      ks.push(k.topic(input.topic));
      args.push(input.topic, `${input.publishedAt}:${input.expiresAt ?? ''}`, !retain ? '0' : input.payload.length ? '1' : '2', encodeFields(input), retain ? (input.publisher ?? '') : '');
    }
    const first = Number(await this.guard(() => this.run(APPEND, ks, args)));
    const out = batch.map((input, i) => toStored(input, this.epoch, first + i));
    this.noteSeq(first + batch.length - 1);
    // Right after the script rather than in it: a crash between the two (a short window) can let a
    // retry store the message again; sqlite writes both in one transaction.
    if (idempotent) await this.putRecords(idempotent.map(({ i, key }) => ({ kind: IDEMPOTENCY_KIND, key, value: idempotencyRecord(out[i]) })));
    return out;
  }

  async history(q: HistoryQuery): Promise<StoredMessage[]> {
    if (q.limit <= 0 || q.toSeq <= q.afterSeq || q.filters.length === 0) return [];
    return this.guard(async () => {
      return this.reader.read(q);
    });
  }

  async range(afterSeq: number, toSeq: number, limit: number): Promise<StoredMessage[]> {
    if (limit <= 0 || toSeq <= afterSeq) return [];
    return this.guard(() => this.reader.range(afterSeq, toSeq, limit));
  }

  /**
   * The last seq assigned by any process on this Redis (read from Redis, unlike {@link lastSeq}).
   * Every seq up to it is committed: the counter and the messages are written by one script.
   */
  async fetchLastSeq(): Promise<number> {
    return this.guard(async () => Number((await this.redis.hget(this.k.state, 'seq')) ?? 0));
  }

  /** Is the store's connection up? (readiness) */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /** The configured Redis URL, for the bus's own connection. */
  get url(): string {
    return this.opts.url;
  }

  async prunedThrough(filters: string[]): Promise<number> {
    return this.guard(async () => {
      let max = Number((await this.redis.hget(this.k.state, 'lost_through')) ?? 0);
      const exact = filters.filter((f) => !isWildcardFilter(f));
      const wild = filters.filter(isWildcardFilter);
      if (exact.length) {
        const scores = (await this.redis.zmscore(this.k.pruned, ...exact)) as Array<string | null>;
        for (const s of scores) if (s !== null && Number(s) > max) max = Number(s);
      }
      if (wild.length === 0) return max;
      // highest pruned seq first: the first topic that matches holds the answer. Each topic's
      // pruned seq is a seq of that topic, so scores are unique and paging by score is exact.
      let below = '+inf';
      for (;;) {
        const page = await this.redis.zrevrangebyscore(this.k.pruned, below, `(${dec(max)}`, 'WITHSCORES', 'LIMIT', 0, 500);
        for (let i = 0; i < page.length; i += 2) {
          if (wild.some((f) => filterMatches(f, page[i]))) return Math.max(max, Number(page[i + 1]));
        }
        if (page.length < 1000) return max;
        below = `(${page[page.length - 1]}`;
      }
    });
  }

  async retained(filters: string[], now: number): Promise<StoredMessage[]> {
    return allRetained(this, filters, now);
  }

  /**
   * Walks the index in Redis, shared by every node: a node keeps no copy that other nodes' writes
   * could make stale. The seqs come from `retained:meta`, one HMGET per page.
   */
  async *retainedIndex(filters: string[], pageSize: number): AsyncGenerator<RetainedRef[]> {
    const k = this.k;
    const range: KeyRange<Promise<KeyedRef[]>> = async (from, to, limit) => {
      const min = Buffer.concat([Buffer.from('['), from]);
      const max = to === null ? '+' : Buffer.concat([Buffer.from('('), to]);
      const keys = await this.guard(() => this.redis.zrangebylexBuffer(k.retainedKeys, min, max, 'LIMIT', 0, limit));
      return keys.map((key): KeyedRef => ({ key, seq: -1 }));
    };
    for await (const page of walkRetainedKeysAsync(range, filters, pageSize)) {
      if (page.length === 0) {
        yield page;
        continue;
      }
      const metas = await this.guard(() => this.redis.hmget(k.retainedMeta, ...page.map((r) => r.topic)));
      const out: RetainedRef[] = [];
      // a null meta was cleared between the two reads: it is gone
      metas.forEach((v, i) => v && out.push({ topic: page[i].topic, seq: Number(v.slice(0, v.indexOf(' '))) }));
      yield out;
    }
  }

  async retainedOf(topics: string[], now: number): Promise<StoredMessage[]> {
    if (topics.length === 0) return [];
    return this.guard(async () => {
      const values = await this.redis.hmgetBuffer(this.k.retained, ...topics);
      const out: StoredMessage[] = [];
      for (const v of values) {
        if (!v) continue;
        const { seq, rest } = splitSeq(v);
        const m = this.toMessage(seq, rest);
        if (!isExpired(m, now)) out.push(m);
      }
      return out;
    });
  }

  async retainedCount(publisher: string, cap: number): Promise<number> {
    return this.guard(async () => Math.min(cap, Number((await this.redis.hget(this.k.retainedCounts, publisher)) ?? 0)));
  }

  lastSeq(): number {
    return this.seq;
  }

  async prune(now: number, rules: RetentionRule[], fallback: Omit<RetentionRule, 'filter'>): Promise<number> {
    return this.guard(async () => {
      const k = this.k;
      // a Redis restarted without persistence has forgotten the scripts; loading is idempotent
      await this.redis.script('LOAD', PRUNE.lua);
      let removed = 0;
      let examined = 0;
      let cursor = this.pruneCursor;
      while (examined < PRUNE_TOPICS_PER_CALL) {
        const topics = await this.redis.zrangebylex(k.topics, cursor ? `(${cursor}` : '-', '+', 'LIMIT', 0, PRUNE_PAGE);
        const args = (t: string): [RedisKey[], string[]] => {
          const r = retentionFor(t, rules, fallback);
          const oldBefore = Math.max(now - r.maxAgeMs, -1e15);
          return [
            [k.topic(t), k.msg, k.log, k.topics, k.pruned],
            [t, dec(Math.min(r.maxCount, 1e15)), dec(oldBefore), String(PRUNE_BUDGET), dec(now)],
          ];
        };
        const p = this.redis.pipeline();
        for (const t of topics) {
          const [ks, as] = args(t);
          p.evalsha(PRUNE.sha, ks.length, ...ks, ...as);
        }
        const results = (await p.exec()) ?? [];
        for (let i = 0; i < topics.length; i++) {
          const [err, res] = results[i];
          if (err) throw err;
          let [n, more] = res as [number, number];
          removed += n;
          // a topic far over its limits: keep going in budget-sized steps, yielding between them
          while (more) {
            await new Promise((r) => setImmediate(r));
            [n, more] = (await this.run(PRUNE, ...args(topics[i]))) as [number, number];
            removed += n;
          }
        }
        examined += topics.length;
        if (topics.length < PRUNE_PAGE) {
          cursor = '';
          break;
        }
        cursor = topics[topics.length - 1];
      }
      this.pruneCursor = cursor;
      return removed;
    });
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.guard(async () => (await this.redis.hget(this.k.meta, key)) ?? undefined);
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.guard(() => this.redis.hset(this.k.meta, key, value));
  }

  async getRecord(kind: string, key: string): Promise<Buffer | undefined> {
    return this.guard(async () => (await this.redis.hgetBuffer(this.k.recordValues(kind), key)) ?? undefined);
  }

  async putRecords(changes: RecordChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.guard(async () => {
      // MULTI/EXEC: all of the batch or none of it, and no reader sees half of it
      const m = this.redis.multi();
      for (const c of changes) {
        if (c.value === null) {
          m.hdel(this.k.recordValues(c.kind), c.key);
          m.zrem(this.k.recordKeys(c.kind), c.key);
        } else {
          m.hset(this.k.recordValues(c.kind), c.key, c.value);
          m.zadd(this.k.recordKeys(c.kind), 0, c.key);
        }
      }
      const res = await m.exec();
      if (!res) throw new OmnipushError('unavailable', 'record transaction was aborted');
      for (const [err] of res) if (err) throw err;
    });
  }

  async listRecords(kind: string, prefix = '', limit = Infinity, after?: string): Promise<Array<{ key: string; value: Buffer }>> {
    if (limit <= 0) return [];
    return this.guard(async () => {
      const [from, max] = lexRange(prefix);
      const min = after !== undefined && after >= prefix ? `(${after}` : from;
      const count = Number.isFinite(limit) ? limit : -1;
      const keys = await this.redis.zrangebylex(this.k.recordKeys(kind), min, max, 'LIMIT', 0, count);
      if (keys.length === 0) return [];
      const values = await this.redis.hmgetBuffer(this.k.recordValues(kind), ...keys);
      const out: Array<{ key: string; value: Buffer }> = [];
      // a null value was deleted between the two reads: it is gone, so leave it out
      values.forEach((value, i) => value && out.push({ key: keys[i], value }));
      return out;
    });
  }

  async close(): Promise<void> {
    if (this.redis.status === 'ready') {
      try {
        await this.redis.quit();
        return;
      } catch {
        /* fall through to a hard disconnect */
      }
    }
    this.redis.disconnect();
  }

  private run(s: Script, ks: RedisKey[], args: Array<string | Buffer>): Promise<unknown> {
    return runScript(this.redis, s, ks, args);
  }

  /** Runs `fn`, turning Redis and connection failures into {@link OmnipushError}s. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.redis.status !== 'ready') {
      throw new OmnipushError('unavailable', `store unavailable: Redis at ${this.where} is not connected (${this.redis.status}${this.lastError ? `: ${this.lastError}` : ''})`);
    }
    try {
      return await fn();
    } catch (e) {
      throw this.storeError(e);
    }
  }

  private storeError(e: unknown): OmnipushError {
    if (e instanceof OmnipushError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof Error && e.name === 'ReplyError') {
      if (msg.startsWith('OMNIPUSH_EPOCH')) {
        // another process started a new history after this one's was lost; only a restart helps
        return new OmnipushError('internal', `store history replaced: ${msg.slice('OMNIPUSH_EPOCH '.length)}; restart this server`);
      }
      if (TRANSIENT_REPLY.test(msg)) return new OmnipushError('unavailable', `store unavailable: Redis at ${this.where}: ${msg}`);
      return new OmnipushError('internal', `Redis error: ${msg}`);
    }
    // connection closed, timed out, not writable ...: the command may or may not have run
    return new OmnipushError('unavailable', `store unavailable: Redis at ${this.where}: ${msg}`);
  }

  private toMessage(seq: number, body: Buffer): StoredMessage {
    const fields = decodeFields(body) as unknown as AppendInput & { retain: boolean };
    return { ...fields, seq, cursor: formatCursor(this.epoch, seq) };
  }
}

/** host:port of a Redis URL, without the password, for error messages. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return 'the configured URL';
  }
}
