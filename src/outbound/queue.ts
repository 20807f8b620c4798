import type { Logger } from 'pino';
import type { Hub } from '../core/hub.js';
import type { RecordChange } from '../core/store.js';

/** What every durable outbound delivery carries; the rest of an entry is its user's own. */
export interface OutboundEntry {
  /** Unique, and sorts in the order deliveries of one group should go. */
  key: string;
  /** ms; not sent before. */
  notBefore: number;
  attempts: number;
}

/** What the sender decided about an attempt (of one entry or of a batch). */
export type Verdict = { done: true } | { done: false; delayMs: number };

export interface OutboundQueueOptions<E extends OutboundEntry> {
  /** Record kind the entries are kept under in the store. */
  kind: string;
  /** The receiver an entry goes to: concurrency (and batching) are per target. */
  target(e: E): string;
  /** What a set of entries belongs to, so that all of them can be dropped at once (optional). */
  group?(e: E): string;
  /** Requests in flight per target. */
  concurrency(target: string): number;
  /** Entries sent together in one attempt to `target` (default 1). */
  batch?(target: string): { maxEntries: number; maxDelayMs: number };
  /** Sends one entry, or a batch of entries of one target; never throws. */
  attempt(entries: E[]): Promise<Verdict>;
  /** Extra record changes to write with the next transaction (e.g. a position marker). */
  extra?(): RecordChange[];
  log: Logger;
  now?: () => number;
}

/**
 * A durable outbound delivery queue (Web Push, webhooks): every entry is in the hub's records
 * before its first attempt and deleted, batched with other finished ones, once the receiver took
 * it (or it is hopeless). After a crash only attempts that were in flight can repeat. One process
 * sends from it at a time (see SenderLease); concurrency is limited per target.
 */
export class OutboundQueue<E extends OutboundEntry> {
  private readonly entries = new Map<string, E>();
  private readonly byGroup = new Map<string, Set<string>>();
  /** Durable changes waiting for the next write: an entry (new or updated) or null (delete). */
  private readonly dirty = new Map<string, E | null>();
  /** New entries: sent only once their write is done. */
  private unsaved: E[] = [];
  private readonly ready = new Map<string, E[]>();
  private readonly inflight = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Targets waiting for a partial batch to fill up (or its delay to pass). */
  private readonly batchTimers = new Map<string, NodeJS.Timeout>();
  private writing: Promise<void> | null = null;
  private writeScheduled = false;
  private closed = false;
  private inflightTotal = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly now: () => number;

  constructor(
    private readonly hub: Hub,
    private readonly opts: OutboundQueueOptions<E>,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Reads the stored entries and schedules every one. */
  async load(): Promise<void> {
    for (const row of await this.hub.listRecords(this.opts.kind)) this.adopt(JSON.parse(row.value.toString('utf8')) as E);
  }

  /**
   * Reads the stored entries page by page and schedules those not known yet (stored by another
   * process whose notice never came); how many were new.
   */
  async rescan(page = 500): Promise<number> {
    // An entry done while the store is read is still in what was read: it must not come back. Those
    // are the ones whose delete is not yet written when the rescan starts, and the ones done after.
    const gone = new Set<string>();
    for (const [key, e] of this.dirty) if (e === null) gone.add(key);
    this.gone = gone;
    try {
      await this.writing;
      let n = 0;
      let after: string | undefined;
      for (;;) {
        const rows = await this.hub.listRecords(this.opts.kind, '', page, after);
        for (const row of rows) if (!this.entries.has(row.key) && !gone.has(row.key) && this.adopt(JSON.parse(row.value.toString('utf8')) as E)) n++;
        if (rows.length < page || this.closed) return n;
        after = rows[rows.length - 1].key;
      }
    } finally {
      this.gone = null;
    }
  }

  /** Keys done while a {@link rescan} runs. */
  private gone: Set<string> | null = null;

  /** Schedules an entry already in the store (written by another process); false if it was known. */
  adopt(e: E): boolean {
    if (this.closed || this.entries.has(e.key)) return false;
    this.remember(e);
    this.schedule(e);
    return true;
  }

  /** Up to `limit` pending entries whose key sorts after `after`, in key order (the server API's view). */
  list(limit: number, after = ''): E[] {
    const keys: string[] = [];
    for (const k of this.entries.keys()) if (k > after) keys.push(k);
    keys.sort();
    return keys.slice(0, limit).map((k) => this.entries.get(k)!);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Adds a delivery; written durably (batched per tick) before its first attempt. */
  add(e: E): void {
    if (this.closed || this.entries.has(e.key)) return;
    this.remember(e);
    this.dirty.set(e.key, e);
    this.unsaved.push(e);
    this.scheduleWrite();
  }

  /**
   * Adds deliveries and writes them now, in one transaction with `extra` (a state change that must
   * hold exactly when they are queued); they go out once written. Resolves after the write.
   */
  async addWith(entries: E[], extra: RecordChange[]): Promise<void> {
    const fresh = entries.filter((e) => !this.closed && !this.entries.has(e.key));
    const changes = [...extra];
    for (const e of fresh) changes.push({ kind: this.opts.kind, key: e.key, value: Buffer.from(JSON.stringify(e)) });
    await this.hub.putRecords(changes);
    for (const e of fresh) {
      if (this.closed || this.entries.has(e.key)) continue;
      this.remember(e);
      this.schedule(e);
    }
  }

  /** Makes sure {@link OutboundQueueOptions.extra} is written even when nothing was queued. */
  touch(): void {
    this.scheduleWrite();
  }

  /** Drops every entry of a group; durable with `extra` in one transaction. */
  async dropGroup(group: string, extra: RecordChange[] = []): Promise<void> {
    const keys = this.byGroup.get(group);
    this.byGroup.delete(group);
    const changes = [...extra];
    if (keys) {
      for (const k of keys) {
        this.entries.delete(k);
        this.gone?.add(k);
        this.dirty.delete(k);
        changes.push({ kind: this.opts.kind, key: k, value: null });
      }
    }
    if (this.opts.group) this.unsaved = this.unsaved.filter((e) => this.opts.group!(e) !== group);
    await this.hub.putRecords(changes);
  }

  /** Removes an entry (it moved elsewhere, e.g. to a given-up list), with `extra` in the same write. */
  async remove(key: string, extra: RecordChange[] = []): Promise<void> {
    const e = this.entries.get(key);
    if (e) this.unlink(e);
    this.gone?.add(key);
    this.dirty.delete(key);
    await this.hub.putRecords([...extra, { kind: this.opts.kind, key, value: null }]);
  }

  private remember(e: E): void {
    this.entries.set(e.key, e);
    if (!this.opts.group) return;
    const g = this.opts.group(e);
    let set = this.byGroup.get(g);
    if (!set) this.byGroup.set(g, (set = new Set()));
    set.add(e.key);
  }

  private unlink(e: E): void {
    this.entries.delete(e.key);
    this.gone?.add(e.key);
    if (!this.opts.group) return;
    const g = this.opts.group(e);
    const set = this.byGroup.get(g);
    if (set) {
      set.delete(e.key);
      if (set.size === 0) this.byGroup.delete(g);
    }
  }

  private forget(e: E): void {
    this.unlink(e);
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
      if (this.dirty.size || this.unsaved.length) this.scheduleWrite();
      // extra() reports what moved since it was last asked: give it its own write
      else if (this.opts.extra) this.scheduleWrite();
      return;
    }
    const changes: RecordChange[] = [];
    for (const [key, e] of this.dirty) changes.push({ kind: this.opts.kind, key, value: e ? Buffer.from(JSON.stringify(e)) : null });
    this.dirty.clear();
    if (this.opts.extra) for (const c of this.opts.extra()) changes.push(c);
    const fresh = this.unsaved;
    this.unsaved = [];
    if (changes.length === 0 && fresh.length === 0) return this.settleIdle();
    this.writing = (async () => {
      try {
        if (changes.length) await this.hub.putRecords(changes);
      } catch (e) {
        // Still deliver: a failing store must not hold deliveries back; they are just not crash-safe.
        this.opts.log.error({ err: e, kind: this.opts.kind }, 'outbound queue write failed');
      }
    })();
    await this.writing;
    this.writing = null;
    for (const e of fresh) if (this.entries.get(e.key) === e) this.schedule(e);
    this.settleIdle();
  }

  private schedule(e: E): void {
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

  private enqueueReady(e: E): void {
    if (this.closed || this.entries.get(e.key) !== e) return;
    const target = this.opts.target(e);
    let list = this.ready.get(target);
    if (!list) this.ready.set(target, (list = []));
    list.push(e);
    this.pump(target);
  }

  private pump(target: string, force = false): void {
    const list = this.ready.get(target);
    if (!list) return;
    let running = this.inflight.get(target) ?? 0;
    const limit = this.opts.concurrency(target);
    const batch = this.opts.batch?.(target);
    const max = batch ? Math.max(1, batch.maxEntries) : 1;
    while (running < limit && list.length && !this.closed) {
      if (!force && max > 1 && list.length < max && batch!.maxDelayMs > 0) {
        // a partial batch waits up to maxDelay for company (the timer starts with its first entry)
        if (!this.batchTimers.has(target)) {
          const t = setTimeout(() => {
            this.batchTimers.delete(target);
            this.flushPartial(target);
          }, batch!.maxDelayMs);
          t.unref();
          this.batchTimers.set(target, t);
        }
        break;
      }
      const taken: E[] = [];
      while (taken.length < max && list.length) {
        const e = list.shift()!;
        if (this.entries.get(e.key) === e) taken.push(e);
      }
      if (taken.length === 0) continue;
      running++;
      this.inflightTotal++;
      void this.opts.attempt(max === 1 ? taken : taken.sort(byKey)).then(
        (v) => this.finished(target, taken, v),
        (err: unknown) => {
          this.opts.log.error({ err, kind: this.opts.kind }, 'outbound attempt failed');
          this.finished(target, taken, { done: false, delayMs: 1000 });
        },
      );
    }
    this.inflight.set(target, running);
    if (list.length === 0) this.ready.delete(target);
  }

  /** The batch delay passed: send what is there even though fewer than a batch. */
  private flushPartial(target: string): void {
    if (!this.closed) this.pump(target, true);
  }

  private finished(target: string, taken: E[], v: Verdict): void {
    this.inflight.set(target, (this.inflight.get(target) ?? 1) - 1);
    this.inflightTotal--;
    for (const e of taken) {
      if (this.entries.get(e.key) !== e) continue;
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
    this.pump(target);
    this.settleIdle();
  }

  private isIdle(): boolean {
    return this.inflightTotal === 0 && !this.writing && !this.writeScheduled && this.dirty.size === 0;
  }

  private settleIdle(): void {
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when no attempt is in flight and every change is written (tests, shutdown). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops sending; waits up to `graceMs` for attempts in flight, then writes what changed. */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const t of this.batchTimers.values()) clearTimeout(t);
    this.batchTimers.clear();
    this.ready.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.dirty.size) await this.write();
    if (this.writing) await this.writing;
  }
}

function byKey(a: OutboundEntry, b: OutboundEntry): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
