import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { OmnipushError } from '../core/errors.js';
import type { StoredMessage } from '../core/message.js';
import type { RedisStore } from '../store/redis.js';
import type { Bus, BusSink } from './bus.js';

/** Messages read from the store per command while filling a hole. */
const FILL_PAGE = 1000;
/** Frames held while filling; past this they are dropped and read from the store instead. */
const MAX_BUFFERED_MESSAGES = 50_000;
/** ms between checks that nothing was missed without a later frame to reveal it. */
const AUDIT_INTERVAL_MS = 2_000;

export interface RedisBusOptions {
  log?: Logger;
  /** ms between audits (tests shorten it). */
  auditIntervalMs?: number;
}

/**
 * The cluster bus over Redis pub/sub. The store's append script publishes every batch on one
 * channel from inside the script, so frames arrive in seq order. Pub/sub is not reliable (a
 * reconnect or an output-buffer limit loses frames), so the bus tracks the next seq it expects:
 * a frame starting past it, a (re)subscription, or an audit that finds the store ahead, make it
 * read the missing range from the store's global log first, holding newer frames meanwhile. The
 * sink gets every seq once, ascending; seqs the store no longer has (pruned, or lost by Redis)
 * are skipped.
 */
export class RedisBus implements Bus {
  readonly kind = 'redis';
  readonly external = true;
  private readonly sub: Redis;
  private sink?: BusSink;
  /** The next seq to hand over. */
  private expected = 1;
  private buffer: StoredMessage[][] = [];
  private buffered = 0;
  private overflowed = false;
  private filling: Promise<void> | null = null;
  /** A (re)subscription or audit asked for a fill while one was running: run it again. */
  private refill = false;
  private subscribed = false;
  private closed = false;
  private lastError = '';
  private auditTimer?: NodeJS.Timeout;
  private subscribing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: RedisStore,
    private readonly opts: RedisBusOptions = {},
  ) {
    this.sub = new Redis(store.url, {
      lazyConnect: true,
      // resubscribed by hand on 'ready', so that every resubscription is followed by a fill
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      connectTimeout: 5_000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000) + Math.floor(Math.random() * 100),
    });
    this.sub.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    this.sub.on('ready', () => {
      this.subscribing = this.resubscribe();
    });
    this.sub.on('close', () => {
      if (this.subscribed && !this.closed) this.opts.log?.warn({ err: this.lastError || undefined }, 'cluster bus lost its Redis subscription; reconnecting');
      this.subscribed = false;
    });
    this.sub.on('messageBuffer', (_channel: Buffer, frame: Buffer) => this.onFrame(frame));
  }

  async start(sink: BusSink): Promise<void> {
    this.sink = sink;
    this.expected = sink.headSeq + 1;
    try {
      await this.sub.connect();
    } catch (e) {
      this.sub.disconnect();
      throw new OmnipushError('unavailable', `cluster bus cannot reach Redis: ${(e as Error).message || this.lastError}`);
    }
    await this.subscribing;
    if (!this.subscribed) {
      this.sub.disconnect();
      throw new OmnipushError('unavailable', `cluster bus cannot subscribe on Redis: ${this.lastError}`);
    }
    await this.filling;
    this.auditTimer = setInterval(() => this.audit(), this.opts.auditIntervalMs ?? AUDIT_INTERVAL_MS);
    this.auditTimer.unref();
  }

  unhealthy(): string | undefined {
    if (!this.subscribed) return `cluster bus is not subscribed on Redis (${this.sub.status}${this.lastError ? `: ${this.lastError}` : ''})`;
    if (!this.store.connected) return 'store connection to Redis is down';
    return undefined;
  }

  /** Next seq this bus will hand over (for tests and metrics). */
  get nextSeq(): number {
    return this.expected;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.auditTimer);
    this.sub.disconnect();
    await this.filling?.catch(() => undefined);
  }

  private async resubscribe(): Promise<void> {
    try {
      await this.sub.subscribe(this.store.busChannel);
      this.subscribed = true;
      // frames published while unsubscribed were never sent to us: read them from the store
      this.fill();
    } catch (e) {
      this.lastError = (e as Error).message;
    }
  }

  private onFrame(frame: Buffer): void {
    if (this.closed || !this.sink) return;
    let msgs: StoredMessage[];
    try {
      msgs = this.store.decodeBusFrame(frame);
    } catch (e) {
      // a frame we cannot read (another version?): the store has the messages; read them there
      this.opts.log?.error({ err: e }, 'cluster bus frame could not be decoded; reading the store instead');
      this.fill();
      return;
    }
    if (msgs.length === 0) return;
    this.store.noteSeq(msgs[msgs.length - 1].seq);
    if (this.filling || msgs[0].seq > this.expected) {
      this.hold(msgs);
      this.fill();
      return;
    }
    this.hand(msgs);
  }

  private hold(msgs: StoredMessage[]): void {
    if (this.overflowed) return;
    if (this.buffered + msgs.length > MAX_BUFFERED_MESSAGES) {
      // the store has them all; dropping the buffer only means reading more from it
      this.buffer = [];
      this.buffered = 0;
      this.overflowed = true;
      return;
    }
    this.buffer.push(msgs);
    this.buffered += msgs.length;
  }

  /** Hands over the part of an ascending batch not handed over yet. */
  private hand(msgs: StoredMessage[]): void {
    let i = 0;
    while (i < msgs.length && msgs[i].seq < this.expected) i++;
    if (i === msgs.length) return;
    const fresh = i === 0 ? msgs : msgs.slice(i);
    this.expected = fresh[fresh.length - 1].seq + 1;
    this.sink!.fanOutFromBus(fresh);
  }

  /** Starts filling from the store, or asks the running fill to go round once more. */
  private fill(): void {
    if (this.closed) return;
    if (this.filling) {
      this.refill = true;
      return;
    }
    this.filling = this.fillLoop().finally(() => {
      this.filling = null;
    });
  }

  private async fillLoop(): Promise<void> {
    let attempt = 0;
    for (;;) {
      if (this.closed) return;
      this.refill = false;
      try {
        await this.fillOnce();
      } catch (e) {
        // Redis is away: retry with backoff; frames keep being held (bounded) meanwhile
        this.lastError = (e as Error).message;
        attempt++;
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** Math.min(attempt, 6), 2_000)));
        this.refill = true;
      }
      if (!this.refill) return;
    }
  }

  /** Reads the store up to its current seq, then hands over held frames that follow on. */
  private async fillOnce(): Promise<void> {
    const target = await this.store.fetchLastSeq();
    this.store.noteSeq(target);
    while (this.expected <= target && !this.closed) {
      const page = await this.store.range(this.expected - 1, target, FILL_PAGE);
      if (this.closed) return;
      this.hand(page);
      // Every seq up to target is committed, so a short page means the rest was pruned (or
      // lost by Redis); nothing more will ever come for those seqs.
      if (page.length < FILL_PAGE) this.expected = Math.max(this.expected, target + 1);
    }
    const held = this.buffer;
    this.buffer = [];
    this.buffered = 0;
    if (this.overflowed) {
      this.overflowed = false;
      this.refill = true;
      return;
    }
    for (let i = 0; i < held.length; i++) {
      const msgs = held[i];
      if (msgs[msgs.length - 1].seq < this.expected) continue;
      if (msgs[0].seq > this.expected) {
        // another hole (frames lost after the target was read): keep the rest and go round again
        for (const rest of held.slice(i)) this.hold(rest);
        this.refill = true;
        return;
      }
      this.hand(msgs);
    }
  }

  /** Catches a lost frame that no later frame reveals (the last publish before a quiet spell). */
  private audit(): void {
    if (this.closed || this.filling || !this.subscribed || !this.store.connected) return;
    this.store.fetchLastSeq().then(
      (seq) => {
        if (seq >= this.expected) this.fill();
      },
      () => undefined,
    );
  }
}
