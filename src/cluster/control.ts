import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { OmnipushError } from '../core/errors.js';
import { runScript, script, type Script } from '../store/redis-lua.js';

/** A small message between nodes; `from` is the sender's node id. */
export interface ControlEvent {
  type: string;
  from: string;
  [field: string]: unknown;
}

/**
 * What doors need to act as one across nodes (docs/cluster.md): who the nodes are, small events
 * between them, leases, ownership claims with generations, and small shared maps. A single
 * process uses {@link LocalControl}, where it is alone and every lease and claim is its own.
 */
export interface ClusterControl {
  readonly nodeId: string;
  /** More than one node may exist: doors coordinate through this control. */
  readonly clustered: boolean;
  start(): Promise<void>;
  close(): Promise<void>;
  /** Live node ids (heartbeat not expired), sorted; always includes this node. */
  nodes(): readonly string[];
  isLive(nodeId: string): boolean;
  /** Called after every heartbeat round (with the possibly unchanged node list) and when the list changes. */
  onTick(cb: (nodes: readonly string[], changed: boolean) => void): void;
  /** Sends an event to every other node (not to this one). */
  publish(type: string, data?: Record<string, unknown>): void;
  on(type: string, cb: (e: ControlEvent) => void): void;
  /** Resolves with the first event of `type` that `match` accepts, or null after `ms` or once `signal` aborts. */
  next(type: string, match: (e: ControlEvent) => boolean, ms: number, signal?: AbortSignal): Promise<ControlEvent | null>;
  /** SET NX PX: a token when this node now holds the lease `name`, else null. */
  acquire(name: string, ttlMs: number): Promise<string | null>;
  /** Extends the lease if `token` still holds it. */
  renew(name: string, token: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if `token` still holds it. */
  release(name: string, token: string): Promise<void>;
  /** Makes this node the owner of `key` in `space`; returns the new generation and the previous owner. */
  claim(space: string, key: string): Promise<{ gen: number; previous?: string }>;
  /** Drops the claim if this node still holds it. */
  unclaim(space: string, key: string): Promise<void>;
  /** Who holds `key` in `space` now, if anyone. */
  claimOf(space: string, key: string): Promise<Claim | undefined>;
  /**
   * Makes this node the owner of `key` only if its claim is still `expected` (undefined: nobody's),
   * so that of nodes racing to take over an abandoned claim one wins; the new generation, or 0.
   */
  claimIf(space: string, key: string, expected: Claim | undefined): Promise<number>;
  /** Every claim in `space`, by key. */
  claims(space: string): Promise<Map<string, Claim>>;
  mapSet(map: string, field: string, value: string): Promise<void>;
  /** One field of a map (undefined when absent). */
  mapGet(map: string, field: string): Promise<string | undefined>;
  /** Replaces the value only if it is still `expected` (compare and set); true when it did. */
  mapReplace(map: string, field: string, expected: string, value: string): Promise<boolean>;
  /**
   * True when this call removed the field: among nodes racing to take it, exactly one gets true.
   * With `expected`, only a field still holding that value is removed.
   */
  mapTake(map: string, field: string, expected?: string): Promise<boolean>;
  mapAll(map: string): Promise<Map<string, string>>;
}

/** Who holds a claim, and its generation. */
export interface Claim {
  node: string;
  gen: number;
}

function parseClaim(v: string): Claim {
  const sp = v.indexOf(' ');
  return { node: v.slice(0, sp), gen: Number(v.slice(sp + 1)) };
}

export function newNodeId(): string {
  return randomBytes(6).toString('hex');
}

/** One process: no other node, every lease and claim is granted, maps are in memory. */
export class LocalControl implements ClusterControl {
  readonly nodeId = newNodeId();
  readonly clustered = false;
  private readonly maps = new Map<string, Map<string, string>>();
  private readonly held = new Map<string, number>();

  async start(): Promise<void> {}
  async close(): Promise<void> {}
  nodes(): readonly string[] {
    return [this.nodeId];
  }
  isLive(nodeId: string): boolean {
    return nodeId === this.nodeId;
  }
  onTick(): void {}
  publish(): void {}
  on(): void {}
  async next(): Promise<ControlEvent | null> {
    return null;
  }
  async acquire(): Promise<string | null> {
    return 'local';
  }
  async renew(): Promise<boolean> {
    return true;
  }
  async release(): Promise<void> {}
  async claim(space: string, key: string): Promise<{ gen: number; previous?: string }> {
    const k = `${space}\0${key}`;
    const gen = (this.held.get(k) ?? 0) + 1;
    this.held.set(k, gen);
    return { gen, previous: gen > 1 ? this.nodeId : undefined };
  }
  async unclaim(space: string, key: string): Promise<void> {
    this.held.delete(`${space}\0${key}`);
  }
  async claimOf(space: string, key: string): Promise<Claim | undefined> {
    const gen = this.held.get(`${space}\0${key}`);
    return gen === undefined ? undefined : { node: this.nodeId, gen };
  }
  async claimIf(space: string, key: string, expected: Claim | undefined): Promise<number> {
    return (await this.claimOf(space, key))?.gen === expected?.gen ? (await this.claim(space, key)).gen : 0;
  }
  async claims(space: string): Promise<Map<string, Claim>> {
    const out = new Map<string, Claim>();
    for (const [k, gen] of this.held) if (k.startsWith(`${space}\0`)) out.set(k.slice(space.length + 1), { node: this.nodeId, gen });
    return out;
  }
  private map(name: string): Map<string, string> {
    let m = this.maps.get(name);
    if (!m) this.maps.set(name, (m = new Map()));
    return m;
  }
  async mapSet(map: string, field: string, value: string): Promise<void> {
    this.map(map).set(field, value);
  }
  async mapGet(map: string, field: string): Promise<string | undefined> {
    return this.map(map).get(field);
  }
  async mapReplace(map: string, field: string, expected: string, value: string): Promise<boolean> {
    const m = this.map(map);
    if (m.get(field) !== expected) return false;
    m.set(field, value);
    return true;
  }
  async mapTake(map: string, field: string, expected?: string): Promise<boolean> {
    const m = this.map(map);
    if (expected !== undefined && m.get(field) !== expected) return false;
    return m.delete(field);
  }
  async mapAll(map: string): Promise<Map<string, string>> {
    return new Map(this.map(map));
  }
}

const RENEW = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`);
const RELEASE = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`);
// owner and generation in one field ("<node> <gen>"): the generation only grows, so a node can
// tell a takeover that came after its own claim from one that came before
const CLAIM = script(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local gen = 1
local prev = ''
if old then
  local sp = string.find(old, ' ', 1, true)
  prev = string.sub(old, 1, sp - 1)
  gen = tonumber(string.sub(old, sp + 1)) + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. gen)
return {prev, gen}`);
const UNCLAIM = script(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and string.sub(old, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. ' ' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`);
// CLAIM, only if the claim is still the one the caller saw ('' for none)
const CLAIM_IF = script(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if (old or '') ~= ARGV[3] then return 0 end
local gen = 1
if old then gen = tonumber(string.sub(old, string.find(old, ' ', 1, true) + 1)) + 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. gen)
return gen`);
const TAKE_IF = script(`if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`);
const REPLACE = script(`if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0`);

export interface RedisControlOptions {
  url: string;
  /** Key prefix of the deployment (the store's); control keys live under `<prefix>cluster:`. */
  prefix: string;
  heartbeatMs: number;
  nodeTimeoutMs: number;
  log: Logger;
}

/**
 * The control channel over Redis, on connections of its own so that a slow history read never
 * delays a heartbeat: nodes in a sorted set scored by heartbeat expiry, events on one pub/sub
 * channel, leases as keys with a token, claims and maps as hashes.
 */
export class RedisControl implements ClusterControl {
  readonly nodeId = newNodeId();
  readonly clustered = true;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly events = new EventEmitter();
  private readonly ticks: Array<(nodes: readonly string[], changed: boolean) => void> = [];
  private live: string[];
  private timer: NodeJS.Timeout | undefined;
  private beating = false;
  private closed = false;
  /** The first subscription is made; later ones follow reconnects. */
  private subscribed = false;
  private readonly channel: string;
  private readonly nodesKey: string;

  constructor(private readonly opts: RedisControlOptions) {
    this.live = [this.nodeId];
    this.channel = `${opts.prefix}cluster:events`;
    this.nodesKey = `${opts.prefix}cluster:nodes`;
    const common = {
      lazyConnect: true,
      connectTimeout: 5_000,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000) + Math.floor(Math.random() * 100),
    };
    // Commands fail at once while Redis is away: a missed heartbeat is better than a late one.
    // A Redis that is connected but does not answer fails them after the node timeout, the time
    // after which other nodes count this one as gone anyway. Not shorter: the timer also fires
    // when this process's event loop was busy and the reply is already waiting in the socket, and
    // under a burst of connects that would turn away MQTT clients with 0x88 for nothing.
    this.redis = new Redis(opts.url, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: Math.max(1000, opts.nodeTimeoutMs) });
    // Resubscribed by hand after a reconnect: ioredis's own resubscription does not catch a
    // failure (the connection closing again at once), and that unhandled rejection would end the
    // process. A failed resubscription is retried at the next 'ready'.
    this.sub = new Redis(opts.url, { ...common, autoResubscribe: false });
    this.redis.on('error', () => undefined);
    this.sub.on('error', () => undefined);
    this.sub.on('ready', () => {
      if (this.subscribed && !this.closed) this.sub.subscribe(this.channel).catch(() => undefined);
    });
    this.events.setMaxListeners(0);
    this.sub.on('messageBuffer', (_ch: Buffer, raw: Buffer) => {
      let e: ControlEvent;
      try {
        e = JSON.parse(raw.toString('utf8')) as ControlEvent;
      } catch {
        return;
      }
      if (e.from === this.nodeId || typeof e.type !== 'string') return;
      // a node that speaks is alive, even if its heartbeat has not been read yet
      if (!this.live.includes(e.from) && e.type !== 'node-leave') void this.beat();
      this.events.emit(e.type, e);
    });
  }

  /** Redis errors become `unavailable`, so that doors answer as for any outage (503, CONNACK 0x88). */
  private async run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      throw new OmnipushError('unavailable', `cluster state is unreachable: ${(e as Error).message}`);
    }
  }

  /** One of the control scripts on one control key (EVALSHA: the digest travels, not the text). */
  private script(s: Script, key: string, ...args: string[]): Promise<unknown> {
    return this.run(() => runScript(this.redis, s, [this.key(key)], args));
  }

  private key(name: string): string {
    return `${this.opts.prefix}cluster:${name}`;
  }

  async start(): Promise<void> {
    await Promise.all([this.redis.connect(), this.sub.connect()]);
    await this.sub.subscribe(this.channel);
    this.subscribed = true;
    // other nodes re-read the node list at once instead of at their next heartbeat
    this.on('node-join', () => void this.beat());
    this.on('node-leave', () => void this.beat());
    await this.beat();
    this.publish('node-join');
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  /** Writes our heartbeat, drops expired nodes, reads the live list. */
  private async beat(): Promise<void> {
    if (this.beating || this.closed) return;
    this.beating = true;
    let changed = false;
    try {
      const now = Date.now();
      const r = await this.redis
        .multi()
        .zadd(this.nodesKey, String(now + this.opts.nodeTimeoutMs), this.nodeId)
        .zremrangebyscore(this.nodesKey, '-inf', String(now))
        .zrange(this.nodesKey, '0', '-1')
        .exec();
      const list = ((r?.[2]?.[1] as string[] | undefined) ?? [this.nodeId]).slice().sort();
      if (list.join(',') !== this.live.join(',')) {
        this.opts.log.info({ node: this.nodeId, nodes: list }, 'cluster nodes changed');
        this.live = list;
        changed = true;
      }
    } catch (e) {
      // Redis away: keep the last known list rather than conclude every other node is dead
      this.opts.log.debug({ err: e }, 'cluster heartbeat failed');
    } finally {
      this.beating = false;
    }
    for (const cb of this.ticks) cb(this.live, changed);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      await this.redis.zrem(this.nodesKey, this.nodeId);
      await this.redis.publish(this.channel, JSON.stringify({ type: 'node-leave', from: this.nodeId }));
    } catch {
      // the others find out when our heartbeat expires
    }
    this.events.removeAllListeners();
    this.redis.disconnect();
    this.sub.disconnect();
  }

  nodes(): readonly string[] {
    return this.live;
  }

  isLive(nodeId: string): boolean {
    return nodeId === this.nodeId || this.live.includes(nodeId);
  }

  onTick(cb: (nodes: readonly string[], changed: boolean) => void): void {
    this.ticks.push(cb);
  }

  publish(type: string, data: Record<string, unknown> = {}): void {
    if (this.closed) return;
    this.redis.publish(this.channel, JSON.stringify({ ...data, type, from: this.nodeId })).catch((e: unknown) => this.opts.log.warn({ err: e, type }, 'cluster event not sent'));
  }

  on(type: string, cb: (e: ControlEvent) => void): void {
    this.events.on(type, cb);
  }

  next(type: string, match: (e: ControlEvent) => boolean, ms: number, signal?: AbortSignal): Promise<ControlEvent | null> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(null);
      const done = (e: ControlEvent | null) => {
        clearTimeout(timer);
        this.events.off(type, listener);
        signal?.removeEventListener('abort', aborted);
        resolve(e);
      };
      const listener = (e: ControlEvent) => {
        if (match(e)) done(e);
      };
      const aborted = () => done(null);
      const timer = setTimeout(() => done(null), ms);
      this.events.on(type, listener);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  async acquire(name: string, ttlMs: number): Promise<string | null> {
    const token = `${this.nodeId}:${randomBytes(6).toString('hex')}`;
    const ok = await this.run(() => this.redis.set(this.key(`lease:${name}`), token, 'PX', ttlMs, 'NX'));
    return ok === 'OK' ? token : null;
  }

  async renew(name: string, token: string, ttlMs: number): Promise<boolean> {
    return Number(await this.script(RENEW, `lease:${name}`, token, String(ttlMs))) === 1;
  }

  async release(name: string, token: string): Promise<void> {
    await this.script(RELEASE, `lease:${name}`, token);
  }

  async claim(space: string, key: string): Promise<{ gen: number; previous?: string }> {
    const [prev, gen] = (await this.script(CLAIM, `claims:${space}`, key, this.nodeId)) as [string, number];
    return { gen: Number(gen), previous: prev || undefined };
  }

  async unclaim(space: string, key: string): Promise<void> {
    await this.script(UNCLAIM, `claims:${space}`, key, this.nodeId);
  }

  async claimOf(space: string, key: string): Promise<Claim | undefined> {
    const v = await this.run(() => this.redis.hget(this.key(`claims:${space}`), key));
    return v ? parseClaim(v) : undefined;
  }

  async claimIf(space: string, key: string, expected: Claim | undefined): Promise<number> {
    return Number(await this.script(CLAIM_IF, `claims:${space}`, key, this.nodeId, expected ? `${expected.node} ${expected.gen}` : ''));
  }

  async claims(space: string): Promise<Map<string, Claim>> {
    const all = await this.run(() => this.redis.hgetall(this.key(`claims:${space}`)));
    return new Map(Object.entries(all).map(([k, v]) => [k, parseClaim(v)]));
  }

  async mapSet(map: string, field: string, value: string): Promise<void> {
    await this.run(() => this.redis.hset(this.key(`map:${map}`), field, value));
  }

  async mapGet(map: string, field: string): Promise<string | undefined> {
    return (await this.run(() => this.redis.hget(this.key(`map:${map}`), field))) ?? undefined;
  }

  async mapReplace(map: string, field: string, expected: string, value: string): Promise<boolean> {
    return Number(await this.script(REPLACE, `map:${map}`, field, expected, value)) === 1;
  }

  async mapTake(map: string, field: string, expected?: string): Promise<boolean> {
    if (expected === undefined) return (await this.run(() => this.redis.hdel(this.key(`map:${map}`), field))) === 1;
    return Number(await this.script(TAKE_IF, `map:${map}`, field, expected)) === 1;
  }

  async mapAll(map: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.run(() => this.redis.hgetall(this.key(`map:${map}`)))));
  }
}

/**
 * Runs `fn` while holding the lease `name` (waiting for it up to `waitMs`), so that one node at a
 * time does it: e.g. creating a key pair that every node must then share.
 */
export async function withLease<T>(control: ClusterControl, name: string, fn: () => Promise<T>, waitMs = 15_000): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const token = await control.acquire(name, waitMs);
    if (token) {
      try {
        return await fn();
      } finally {
        await control.release(name, token).catch(() => undefined);
      }
    }
    if (Date.now() > deadline) throw new Error(`cluster lease ${name} not obtained within ${waitMs} ms`);
    await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
  }
}
