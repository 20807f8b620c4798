import type { Logger } from 'pino';
import type { Hub } from '../../core/hub.js';
import type { RecordChange } from '../../core/store.js';
import type { PushJob } from './payload.js';

export const QUEUE_KIND = 'webpush.queue';
export const META_KIND = 'webpush.meta';
/** Meta record: cursor of the newest message offered to Web Push, written with the queue entries it produced. */
export const HEAD_KEY = 'head';

/** One pending delivery of one message to one subscription. */
export interface QueueEntry {
  /** `<subscription id>/<seq, base36, zero-padded>`: per-subscription order, and a prefix to drop them all. */
  key: string;
  sub: string;
  /** Push-service origin (concurrency is limited per origin). */
  origin: string;
  cursor: string;
  job: PushJob;
  /** ms; past it the push service would drop the message anyway, so we stop trying. */
  giveUpAt: number;
  attempts: number;
  /** ms; not sent before. */
  notBefore: number;
  /** The push service refused the full body (413): only the small payload is sent. */
  withoutData?: boolean;
}

export function entryKey(sub: string, seq: number): string {
  return `${sub}/${seq.toString(36).padStart(11, '0')}`;
}

/** What the sender decided about an attempt. */
export type Verdict = { done: true } | { done: false; delayMs: number };

export interface QueueOptions {
  concurrencyPerOrigin: number;
  /** Sends one entry; never throws. */
  attempt(e: QueueEntry): Promise<Verdict>;
  /** The cursor to store as the head with the next write, if it moved. */
  head(): string | undefined;
  log: Logger;
  now?: () => number;
}

/**
 * The durable delivery queue: every entry is in the hub's records before its first attempt, and is
 * deleted in the same transaction as other finished ones once the push service accepted it (or it
 * is hopeless). Entries survive a crash; after one, only attempts that were in flight can repeat.
 */
export class DeliveryQueue {
  private readonly entries = new Map<string, QueueEntry>();
  private readonly bySub = new Map<string, Set<string>>();
  /** Durable changes waiting for the next write: an entry (new or updated) or null (delete). */
  private readonly dirty = new Map<string, QueueEntry | null>();
  /** New entries: sent only once their write is done. */
  private unsaved: QueueEntry[] = [];
  private readonly ready = new Map<string, QueueEntry[]>();
  private readonly inflight = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private writing: Promise<void> | null = null;
  private writeScheduled = false;
  private lastHead: string | undefined;
  private closed = false;
  private inflightTotal = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly now: () => number;

  constructor(
    private readonly hub: Hub,
    private readonly opts: QueueOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Reads the stored queue and schedules every entry; returns the stored head cursor. */
  async load(): Promise<string | undefined> {
    const head = await this.hub.getRecord(META_KIND, HEAD_KEY);
    this.lastHead = head?.toString('utf8');
    for (const row of await this.hub.listRecords(QUEUE_KIND)) {
      const e = JSON.parse(row.value.toString('utf8')) as QueueEntry;
      this.remember(e);
      this.schedule(e);
    }
    return this.lastHead;
  }

  /** Up to `limit` pending entries whose key sorts after `after`, in key order (the server API's view). */
  list(limit: number, after = ''): QueueEntry[] {
    const keys: string[] = [];
    for (const k of this.entries.keys()) if (k > after) keys.push(k);
    keys.sort();
    return keys.slice(0, limit).map((k) => this.entries.get(k)!);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Adds a delivery; written durably (batched per tick) before its first attempt. */
  add(e: QueueEntry): void {
    if (this.closed || this.entries.has(e.key)) return;
    this.remember(e);
    this.dirty.set(e.key, e);
    this.unsaved.push(e);
    this.scheduleWrite();
  }

  /** Makes sure the head moves durably even when nothing was queued (all skipped). */
  touch(): void {
    this.scheduleWrite();
  }

  /** Drops every entry of a subscription (it is gone); durable with `extra` in one transaction. */
  async dropSubscription(sub: string, extra: RecordChange[] = []): Promise<void> {
    const keys = this.bySub.get(sub);
    this.bySub.delete(sub);
    const changes = [...extra];
    if (keys) {
      for (const k of keys) {
        this.entries.delete(k);
        this.dirty.delete(k);
        changes.push({ kind: QUEUE_KIND, key: k, value: null });
      }
    }
    this.unsaved = this.unsaved.filter((e) => e.sub !== sub);
    await this.hub.putRecords(changes);
  }

  private remember(e: QueueEntry): void {
    this.entries.set(e.key, e);
    let set = this.bySub.get(e.sub);
    if (!set) this.bySub.set(e.sub, (set = new Set()));
    set.add(e.key);
  }

  private forget(e: QueueEntry): void {
    this.entries.delete(e.key);
    const set = this.bySub.get(e.sub);
    if (set) {
      set.delete(e.key);
      if (set.size === 0) this.bySub.delete(e.sub);
    }
    this.dirty.set(e.key, null);
    this.scheduleWrite();
  }

  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      void this.write();
    });
  }

  /** One transaction for everything changed since the last one; then the new entries may go out. */
  private async write(): Promise<void> {
    if (this.writing) {
      await this.writing;
      if (this.dirty.size || this.unsaved.length || this.opts.head() !== this.lastHead) this.scheduleWrite();
      return;
    }
    const changes: RecordChange[] = [];
    for (const [key, e] of this.dirty) changes.push({ kind: QUEUE_KIND, key, value: e ? Buffer.from(JSON.stringify(e)) : null });
    this.dirty.clear();
    const head = this.opts.head();
    if (head !== undefined && head !== this.lastHead) {
      changes.push({ kind: META_KIND, key: HEAD_KEY, value: Buffer.from(head) });
      this.lastHead = head;
    }
    const fresh = this.unsaved;
    this.unsaved = [];
    if (changes.length === 0 && fresh.length === 0) return this.settleIdle();
    this.writing = (async () => {
      try {
        if (changes.length) await this.hub.putRecords(changes);
      } catch (e) {
        // Still deliver: a failing store must not hold pushes back; they are just not crash-safe.
        this.opts.log.error({ err: e }, 'web push queue write failed');
      }
    })();
    await this.writing;
    this.writing = null;
    for (const e of fresh) if (this.entries.get(e.key) === e) this.schedule(e);
    this.settleIdle();
  }

  private schedule(e: QueueEntry): void {
    if (this.closed) return;
    const wait = e.notBefore - this.now();
    if (wait > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.enqueueReady(e);
      }, wait);
      t.unref();
      this.timers.add(t);
      return;
    }
    this.enqueueReady(e);
  }

  private enqueueReady(e: QueueEntry): void {
    if (this.closed || this.entries.get(e.key) !== e) return;
    let list = this.ready.get(e.origin);
    if (!list) this.ready.set(e.origin, (list = []));
    list.push(e);
    this.pump(e.origin);
  }

  private pump(origin: string): void {
    const list = this.ready.get(origin);
    if (!list) return;
    let running = this.inflight.get(origin) ?? 0;
    while (running < this.opts.concurrencyPerOrigin && list.length && !this.closed) {
      const e = list.shift()!;
      if (this.entries.get(e.key) !== e) continue;
      running++;
      this.inflightTotal++;
      void this.opts.attempt(e).then(
        (v) => this.finished(e, v),
        (err: unknown) => {
          this.opts.log.error({ err }, 'web push attempt failed');
          this.finished(e, { done: false, delayMs: 1000 });
        },
      );
    }
    this.inflight.set(origin, running);
    if (list.length === 0) this.ready.delete(origin);
  }

  private finished(e: QueueEntry, v: Verdict): void {
    this.inflight.set(e.origin, (this.inflight.get(e.origin) ?? 1) - 1);
    this.inflightTotal--;
    if (this.entries.get(e.key) === e) {
      if (v.done) this.forget(e);
      else {
        e.attempts++;
        e.notBefore = this.now() + v.delayMs;
        // persisted so that a restart keeps honouring Retry-After and the attempt count
        this.dirty.set(e.key, e);
        this.scheduleWrite();
        this.schedule(e);
      }
    }
    this.pump(e.origin);
    this.settleIdle();
  }

  private settleIdle(): void {
    if (this.inflightTotal === 0 && !this.writing && !this.writeScheduled && this.dirty.size === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Resolves when no attempt is in flight and every change is written (tests, shutdown). */
  idle(): Promise<void> {
    if (this.inflightTotal === 0 && !this.writing && !this.writeScheduled && this.dirty.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops sending; waits up to `graceMs` for attempts in flight, then writes what changed. */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.ready.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.dirty.size) await this.write();
    if (this.writing) await this.writing;
  }
}
