import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';
import { OmnipushError } from '../core/errors.js';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import { checkIdempotencyKey, idempotencyRecordKey, type IdempotentPublisher } from '../core/idempotency.js';
import { IDEMPOTENCY_KIND, type IdempotencyEntry } from '../core/store.js';
import { DueLoop, principalPrefix, timeKey } from '../outbound/due-loop.js';

/** Record kind of pending delayed publishes; keys `<due ms, 15 digits> <id>` sort by due time. */
export const DELAYED_KIND = 'delayed';
/** Record kind indexing them by publisher (`<principal> <id>`), for the per-principal quota. */
const OWNER_KIND = 'delayed-owner';
/** The lease one node holds while it publishes due items, so each is published by one node. */
const LEASE = 'triggers:delayed';
const LEASE_MS = 15_000;
/** Principal id under which due items' idempotency keys live; no client can be called this. */
const KEY_SPACE = 'omnipush:delayed';

/** A scheduled publish as stored: the request (as JSON, so the payload in base64), its id, due time and publisher. */
interface DelayedRecord extends Omit<PublishRequest, 'payload'> {
  id: string;
  due: number;
  publisher: string;
  payload: string; // base64
}

export interface DelayedOptions {
  maxDelayMs: number;
  maxPerPrincipal: number;
  /** Longest wait between looks at the store (items another node scheduled); ms. Default 1 s in a cluster, else 60 s. */
  pollMs?: number;
  now?: () => number;
}

export interface Scheduled {
  id: string;
  /** ms since the epoch */
  due: number;
  repeated: boolean;
}

/** The optional fields of a publish, which the record keeps as the request has them. */
type PublishFields = Omit<PublishRequest, 'topic' | 'payload'>;

/** Scheduling and publishing carry the same fields; unset, false and empty ones stay out, so records stay small. */
function copyOptions(from: PublishFields, to: PublishFields): void {
  if (from.contentType) to.contentType = from.contentType;
  if (from.event) to.event = from.event;
  if (from.properties?.length) to.properties = from.properties;
  if (from.retain) to.retain = true;
  if (from.ttl !== undefined) to.ttl = from.ttl;
  if (from.qos !== undefined) to.qos = from.qos;
}

const dueKey = timeKey;
const ownerPrefix = principalPrefix;

/**
 * Delayed publish: durable records in the store, one timer for the next due item, published once.
 * Any node may schedule; the node holding the lease publishes what is due, each item under an
 * idempotency key of its own, so a crash between publishing and deleting the record never doubles it.
 */
export class DelayedPublisher {
  private closed = false;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly loop: DueLoop;

  constructor(
    private readonly hub: Hub,
    private readonly idempotency: IdempotentPublisher,
    private readonly control: ClusterControl,
    private readonly log: Logger,
    private readonly opts: DelayedOptions,
  ) {
    this.now = opts.now ?? Date.now;
    // alone, every schedule arms the timer itself; in a cluster other nodes schedule too
    this.pollMs = opts.pollMs ?? (control.clustered ? 1000 : 60_000);
    this.loop = new DueLoop(() => this.tick(), this.pollMs, log, 'delayed publish', this.now);
  }

  start(): void {
    this.loop.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loop.close();
  }

  /** Stores a publish due at `due` (ms); checks grants and limits now. Answers the first schedule for a repeated key. */
  async schedule(p: Principal, req: PublishRequest, due: number, key?: string): Promise<Scheduled> {
    const now = this.now();
    if (!Number.isFinite(due)) throw new OmnipushError('invalid_request', 'the due time is not a time');
    if (due - now > this.opts.maxDelayMs) {
      throw new OmnipushError('invalid_request', `a publish may be delayed by at most ${Math.floor(this.opts.maxDelayMs / 1000)} seconds`, { limit: this.opts.maxDelayMs / 1000 });
    }
    const input = this.hub.checkPublish(p, req);
    let rk: string | undefined;
    if (key !== undefined) {
      rk = idempotencyRecordKey(p.id, checkIdempotencyKey(key));
      const seen = await this.idempotency.lookup(rk);
      if (seen?.delayed) return { id: seen.delayed.id, due: seen.delayed.due, repeated: true };
      if (seen) throw new OmnipushError('invalid_request', 'this idempotency key was used for an immediate publish', { cursor: seen.cursor });
    }
    const pending = await this.hub.listRecords(OWNER_KIND, ownerPrefix(p.id), this.opts.maxPerPrincipal);
    if (pending.length >= this.opts.maxPerPrincipal) {
      throw new OmnipushError('quota_exceeded', `at most ${this.opts.maxPerPrincipal} delayed publishes may be pending per principal`, { limit: 'triggers.delayed.maxPerPrincipal', max: this.opts.maxPerPrincipal });
    }
    const id = randomUUID();
    const rec: DelayedRecord = { id, due, publisher: p.id, topic: input.topic, payload: req.payload.toString('base64') };
    copyOptions(req, rec);
    const dk = dueKey(due, id);
    const changes = [
      { kind: DELAYED_KIND, key: dk, value: Buffer.from(JSON.stringify(rec)) },
      { kind: OWNER_KIND, key: ownerPrefix(p.id) + id, value: Buffer.from(dk) },
    ];
    if (rk) {
      const entry: IdempotencyEntry = { cursor: '', topic: input.topic, at: now, delayed: { id, due } };
      changes.push({ kind: IDEMPOTENCY_KIND, key: rk, value: Buffer.from(JSON.stringify(entry)) });
    }
    await this.hub.putRecords(changes);
    this.loop.dueAt(due);
    return { id, due, repeated: false };
  }

  /** Publishes what is due while holding the lease; returns ms until the next look. */
  private async tick(): Promise<number> {
    let next = await this.peek();
    if (next === undefined || next.due > this.now()) return next ? next.due - this.now() : this.pollMs;
    const token = await this.control.acquire(LEASE, LEASE_MS);
    if (!token) return this.pollMs;
    try {
      const started = this.now();
      while (next && next.due <= this.now() && !this.closed) {
        await this.publishDue(next);
        // stay well inside the lease; the next tick goes on
        if (this.now() - started > LEASE_MS / 3) return 0;
        next = await this.peek();
      }
      return next ? next.due - this.now() : this.pollMs;
    } finally {
      await this.control.release(LEASE, token).catch(() => undefined);
    }
  }

  private async peek(): Promise<(DelayedRecord & { key: string }) | undefined> {
    for (;;) {
      const [first] = await this.hub.listRecords(DELAYED_KIND, '', 1);
      if (!first) return undefined;
      try {
        return { ...(JSON.parse(first.value.toString('utf8')) as DelayedRecord), key: first.key };
      } catch {
        // unreadable: drop it rather than block every item behind it
        this.log.error({ key: first.key }, 'delayed publish: unreadable record removed');
        await this.hub.putRecords([{ kind: DELAYED_KIND, key: first.key, value: null }]);
      }
    }
  }

  private async publishDue(rec: DelayedRecord & { key: string }): Promise<void> {
    // grants were checked when it was scheduled; what is published is what was accepted then
    const principal: Principal = { id: rec.publisher, kind: 'user', grants: ALLOW_ALL };
    const req: PublishRequest = { topic: rec.topic, payload: Buffer.from(rec.payload, 'base64') };
    copyOptions(rec, req);
    try {
      await this.idempotency.publishUnder(principal, req, idempotencyRecordKey(KEY_SPACE, rec.id));
    } catch (e) {
      if (!(e instanceof OmnipushError) || e.code === 'unavailable' || e.code === 'shutting_down') throw e;
      // a publish that can never succeed (limits changed since) must not block the queue
      this.log.error({ err: e, id: rec.id, topic: rec.topic }, 'delayed publish dropped');
    }
    await this.hub.putRecords([
      { kind: DELAYED_KIND, key: rec.key, value: null },
      { kind: OWNER_KIND, key: ownerPrefix(rec.publisher) + rec.id, value: null },
    ]);
  }
}
