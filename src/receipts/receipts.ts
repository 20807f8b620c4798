import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';
import { OmnipushError } from '../core/errors.js';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import { formatCursor, parseCursor, type StoredMessage } from '../core/message.js';
import { AddressRules, type AckDoor, type AckOutcome, type ReceiptAcks, type ReceiptRequest } from '../core/receipt.js';
import type { RecordChange } from '../core/store.js';
import { AckMeter } from './ack-meter.js';
import { DueLoop } from '../outbound/due-loop.js';
import type { ReceiptLog } from './receipt-log.js';
import {
  decodeRecord,
  DUE_KIND,
  dueKey,
  encodeRecord,
  finishChanges,
  RECEIPT_KIND,
  sweepFinished,
  timeOfKey,
  type FallbackSender,
  type ReceiptDraft,
  type ReceiptEvent,
  type ReceiptRecord,
} from './receipt-record.js';

/** The lease one node holds while it fires due receipts, so each fires once across a cluster. */
const LEASE = 'receipts:due';
const LEASE_MS = 15_000;
/** Due receipts read per store call. */
const PAGE = 200;
/** Acks in a cluster that came before their receipt was written, retried once a second later; at most this many. */
const MAX_EARLY = 1000;
const SYSTEM: Principal = { id: 'omnipush:receipts', kind: 'user', grants: ALLOW_ALL };

export interface ReceiptsOptions {
  /** `receipts.rules` filters, e.g. `user/{sub}/#`. */
  rules: string[];
  maxWithinMs: number;
  maxPending: number;
  maxPendingPerPrincipal: number;
  maxAckCursors: number;
  /** Store reads one principal's acks may cause per second (burst: ten seconds' worth); 0: no limit. */
  ackLookupsPerSecond: number;
  /** ms finished receipts and their events are kept. */
  keepMs: number;
  /** Longest wait between looks at the store; default 1 s in a cluster, else 60 s. */
  pollMs?: number;
  now?: () => number;
}

/**
 * Delivery receipts: a publish that asks for one leaves a pending record (due when its window
 * ends); the addressed principal's first ack on any door finishes it as `delivered`; a window that
 * ends without one fires the fallback (Web Push to the principal's registrations, once) or
 * `expired`. Records live in the store, so windows survive restarts and any node's acks count; the
 * node holding a lease fires what is due.
 */
export class Receipts implements ReceiptAcks {
  /** Figures since start (tests, metrics). */
  readonly counts = { requested: 0, acked: 0, ignored: 0, unknown: 0, late: 0, pushed: 0, expired: 0 };
  private readonly rules: AddressRules;
  /** Pending receipts this node made (or, alone, loaded at start): acks find them without a read. */
  private readonly local = new Map<string, ReceiptRecord>();
  private readonly perPublisher = new Map<string, number>();
  /** Drafts accepted, their publishes not yet stored. */
  private reserved = 0;
  private early = 0;
  /** Acks in a cluster, one after another (see {@link serially}). */
  private chain: Promise<void> = Promise.resolve();
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly loop: DueLoop;
  private readonly meter: AckMeter;

  constructor(
    private readonly hub: Hub,
    private readonly control: ClusterControl,
    private readonly events: ReceiptLog,
    private readonly fallback: FallbackSender | undefined,
    private readonly log: Logger,
    private readonly opts: ReceiptsOptions,
  ) {
    this.rules = new AddressRules(opts.rules);
    this.now = opts.now ?? Date.now;
    this.pollMs = opts.pollMs ?? (control.clustered ? 1000 : 60_000);
    this.loop = new DueLoop(() => this.tick(), this.pollMs, log, 'receipts', this.now);
    this.meter = new AckMeter(opts.ackLookupsPerSecond);
  }

  /** Loads the pending receipts (alone: all of them are this node's) and starts firing what is due. */
  async start(): Promise<void> {
    if (!this.control.clustered) {
      // page by page, as the due loop reads: a restart with many pending never reads them in one go
      let after: string | undefined;
      for (;;) {
        const rows = await this.hub.listRecords(DUE_KIND, '', PAGE, after);
        for (const row of rows) {
          const b = await this.hub.getRecord(RECEIPT_KIND, row.value.toString('utf8'));
          const r = b && decodeRecord(b);
          if (r && r.state === 'pending') this.remember(r);
        }
        if (rows.length < PAGE) break;
        after = rows[rows.length - 1].key;
      }
    }
    this.loop.start();
    this.sweepTimer = setInterval(() => void this.sweep().catch((e: unknown) => this.log.warn({ err: e }, 'receipt sweep failed')), Math.min(this.opts.keepMs, 60_000));
    this.sweepTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.loop.close();
  }

  get maxCursors(): number {
    return this.opts.maxAckCursors;
  }

  /** Receipts pending on this node (reserved for publishes in flight included). */
  get pending(): number {
    return this.local.size + this.reserved;
  }

  // ------------------------------------------------------------------ asking

  /**
   * Checks a receipt request and marks `req` with its recipient (the hub adds the receipt property); throws `no_recipient`,
   * `invalid_request` or `quota_exceeded`. The caller publishes, then calls {@link track} (or
   * {@link release} when the publish failed).
   */
  prepare(p: Principal, req: PublishRequest, r: ReceiptRequest): ReceiptDraft {
    if (r.withinMs > this.opts.maxWithinMs) {
      throw new OmnipushError('invalid_request', `receipt.within may be at most ${this.opts.maxWithinMs / 1000} seconds`, { limit: this.opts.maxWithinMs / 1000 });
    }
    const to = r.to ?? (typeof req.topic === 'string' ? this.rules.recipientOf(req.topic) : undefined);
    if (to === undefined) {
      throw new OmnipushError('no_recipient', `a receipt needs a recipient: ${JSON.stringify(req.topic)} matches no receipts.rules filter and the message gives no "to"`, { topic: req.topic });
    }
    if (this.pending >= this.opts.maxPending) {
      throw new OmnipushError('quota_exceeded', `at most ${this.opts.maxPending} receipts may be pending`, { limit: 'receipts.maxPending', max: this.opts.maxPending });
    }
    const mine = this.perPublisher.get(p.id) ?? 0;
    if (mine >= this.opts.maxPendingPerPrincipal) {
      throw new OmnipushError('quota_exceeded', `at most ${this.opts.maxPendingPerPrincipal} receipts of one publisher may be pending`, {
        limit: 'receipts.maxPendingPerPrincipal',
        max: this.opts.maxPendingPerPrincipal,
      });
    }
    req.receiptTo = to;
    this.reserved++;
    this.perPublisher.set(p.id, mine + 1);
    return { to, publisher: p.id, withinMs: r.withinMs, fallback: r.fallback };
  }

  /** The publish of a prepared request failed: its place is free again. */
  release(d: ReceiptDraft): void {
    this.reserved--;
    this.uncount(d.publisher);
  }

  /** The prepared message is stored as `cursor`: its window starts now, durably. */
  async track(d: ReceiptDraft, cursor: string, topic: string): Promise<void> {
    this.reserved--;
    this.counts.requested++;
    const r: ReceiptRecord = { cursor, topic, to: d.to, publisher: d.publisher, due: this.now() + d.withinMs, fallback: d.fallback, state: 'pending', events: [] };
    this.local.set(cursor, r);
    await this.hub.putRecords([
      { kind: RECEIPT_KIND, key: cursor, value: encodeRecord(r) },
      { kind: DUE_KIND, key: dueKey(r.due, cursor), value: Buffer.from(cursor) },
    ]);
    this.loop.dueAt(r.due);
  }

  private remember(r: ReceiptRecord): void {
    this.local.set(r.cursor, r);
    this.perPublisher.set(r.publisher, (this.perPublisher.get(r.publisher) ?? 0) + 1);
  }

  /** Drops this node's copy of a receipt that is no longer pending (in a cluster, `r` may be the store's copy). */
  private forget(r: ReceiptRecord): void {
    const mine = this.local.get(r.cursor);
    if (!mine) return;
    this.local.delete(r.cursor);
    this.uncount(mine.publisher);
  }

  private uncount(publisher: string): void {
    const n = (this.perPublisher.get(publisher) ?? 1) - 1;
    if (n > 0) this.perPublisher.set(publisher, n);
    else this.perPublisher.delete(publisher);
  }

  // ------------------------------------------------------------------ acks

  /**
   * Acknowledgements from `p` through `door`: each cursor of a receipt addressed to `p` counts
   * (`seen`: the user looked, too); others are counted and let be. Cheap for unknown cursors: a
   * malformed one, or one this store never gave out, is not looked up.
   */
  async ack(p: Principal, cursors: readonly unknown[], door: AckDoor, seen = false): Promise<AckOutcome> {
    if (cursors.length > this.maxCursors) throw new OmnipushError('invalid_request', `at most ${this.maxCursors} cursors per ack (receipts.maxAckCursors)`);
    // refused before it queues behind other acks (in a cluster) or reads anything
    if (this.meter.on) this.meter.charge(p.id, this.readsOf(cursors), this.now());
    return this.ackUnmetered(p, cursors, door, seen);
  }

  private ackUnmetered(p: Principal, cursors: readonly unknown[], door: AckDoor, seen = false): Promise<AckOutcome> {
    if (this.control.clustered) return this.serially(() => this.ackNow(p, cursors, door, seen));
    return this.ackNow(p, cursors, door, seen);
  }

  /** The store reads an ack of `cursors` costs: one per cursor this store may have given out that this node does not hold. */
  private readsOf(cursors: readonly unknown[]): number {
    let reads = 0;
    for (const c of cursors) if (typeof c === 'string' && !this.known(c) && this.seqOf(c) > 0) reads++;
    return reads;
  }

  private async ackNow(p: Principal, cursors: readonly unknown[], door: AckDoor, seen: boolean): Promise<AckOutcome> {
    const out: AckOutcome = { acked: 0, ignored: 0, unknown: 0 };
    const changes: RecordChange[] = [];
    const events: ReceiptEvent[] = [];
    const finished: ReceiptRecord[] = [];
    for (const c of new Set(cursors)) {
      let r = typeof c === 'string' ? this.known(c) : undefined;
      if (!r) {
        const seq = typeof c === 'string' ? this.seqOf(c) : 0;
        const b = seq > 0 ? await this.hub.getRecord(RECEIPT_KIND, c as string) : undefined;
        r = b && decodeRecord(b);
        if (!r) {
          // in a cluster, the publishing node may not have written it yet: look once more, later
          if (seq > 0 && this.control.clustered && this.early < MAX_EARLY) this.retryLater(p, c as string, door, seen);
          out.unknown++;
          continue;
        }
      }
      if (r.to !== p.id) {
        out.ignored++;
        continue;
      }
      out.acked++;
      if (this.apply(r, door, seen, changes, events)) finished.push(r);
    }
    this.counts.acked += out.acked;
    this.counts.ignored += out.ignored;
    this.counts.unknown += out.unknown;
    if (changes.length === 0) return out;
    for (const r of finished) this.forget(r);
    await this.hub.putRecords(changes);
    this.events.announce(events);
    return out;
  }

  /**
   * The receipt as this node holds it, when that is the truth: alone, this node is the only one
   * that changes receipts; in a cluster another node may have, so the store is read instead.
   */
  private known(cursor: string): ReceiptRecord | undefined {
    return this.control.clustered ? undefined : this.local.get(cursor);
  }

  /**
   * In a cluster each ack reads the record before it writes it: acks on this node go one after
   * another, so two of them never both find a receipt pending (across nodes they may, at worst
   * recording `delivered` twice).
   */
  private serially<T>(run: () => Promise<T>): Promise<T> {
    const next = this.chain.then(run, run);
    this.chain = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  /** One delivery acknowledged by the door itself (an MQTT PUBACK/PUBREC); never throws. */
  ackDelivery(p: Principal, cursor: string, door: AckDoor): void {
    // bounded by the deliveries the server itself made: not metered
    this.ackUnmetered(p, [cursor], door).catch((e: unknown) => this.log.warn({ err: e, cursor }, 'receipt ack not recorded'));
  }

  private retryLater(p: Principal, cursor: string, door: AckDoor, seen: boolean): void {
    this.early++;
    const t = setTimeout(() => {
      this.early--;
      if (this.closed) return;
      const retry = async () => {
        const b = await this.hub.getRecord(RECEIPT_KIND, cursor);
        if (b) await this.ackUnmetered(p, [cursor], door, seen);
      };
      retry().catch((e: unknown) => this.log.warn({ err: e, cursor }, 'receipt ack not recorded'));
    }, 1000);
    t.unref();
  }

  /** The seq of a cursor this store may have given out, else 0. */
  private seqOf(cursor: string): number {
    if (cursor.length > 40) return 0;
    try {
      const c = parseCursor(cursor);
      return c.epoch === this.hub.epoch && c.seq <= this.hub.headSeq ? c.seq : 0;
    } catch {
      return 0;
    }
  }

  /** Applies one ack to `r` (state in memory at once, changes to write); true when it finished a pending receipt. */
  private apply(r: ReceiptRecord, door: AckDoor, seen: boolean, changes: RecordChange[], events: ReceiptEvent[]): boolean {
    const now = this.now();
    const before = changes.length;
    let finished = false;
    if (r.state === 'pending') {
      r.state = 'delivered';
      r.finishedAt = now;
      changes.push(...finishChanges(r, now));
      events.push(this.events.add(r, 'delivered', now, changes, { door }));
      finished = true;
    } else if (r.state !== 'delivered' && !r.late) {
      // after the fallback (or expiry): recorded once, not acted on
      r.late = true;
      this.counts.late++;
      events.push(this.events.add(r, 'delivered', now, changes, { door, late: true }));
    }
    if (seen && !r.seen) {
      r.seen = true;
      events.push(this.events.add(r, 'seen', now, changes, r.state === 'pushed' || r.state === 'expired' ? { door, late: true } : { door }));
    }
    if (changes.length > before) changes.push({ kind: RECEIPT_KIND, key: r.cursor, value: encodeRecord(r) });
    return finished;
  }

  // ------------------------------------------------------------------ windows that end

  /** Fires what is due while holding the lease; returns ms until the next look. */
  private async tick(): Promise<number> {
    // with Web Push on, the node that sends it fires the fallbacks: its queue takes them
    if (this.fallback && !this.fallback.sending) return this.pollMs;
    let rows = await this.hub.listRecords(DUE_KIND, '', PAGE);
    if (rows.length === 0) return this.pollMs;
    const first = timeOfKey(rows[0].key);
    if (first > this.now()) return first - this.now();
    const token = await this.control.acquire(LEASE, LEASE_MS);
    if (!token) return this.pollMs;
    try {
      const started = this.now();
      for (;;) {
        for (const row of rows) {
          if (this.closed) return this.pollMs;
          const due = timeOfKey(row.key);
          if (due > this.now()) return due - this.now();
          await this.fire(row.key, row.value.toString('utf8'));
          // stay well inside the lease; the next tick goes on
          if (this.now() - started > LEASE_MS / 3) return 0;
        }
        if (rows.length < PAGE) return this.pollMs;
        rows = await this.hub.listRecords(DUE_KIND, '', PAGE, rows[rows.length - 1].key);
      }
    } finally {
      await this.control.release(LEASE, token).catch(() => undefined);
    }
  }

  /** The window of `cursor` ended with no ack: the fallback, or `expired`. */
  private async fire(key: string, cursor: string): Promise<void> {
    let r = this.known(cursor);
    if (!r) {
      const b = await this.hub.getRecord(RECEIPT_KIND, cursor);
      r = b && decodeRecord(b);
    }
    if (!r || r.state !== 'pending') {
      await this.hub.putRecords([{ kind: DUE_KIND, key, value: null }]);
      return;
    }
    const rec = r;
    const events: ReceiptEvent[] = [];
    let reason = 'fallback none';
    if (rec.fallback === 'webpush') {
      if (!this.fallback) reason = 'web push is off';
      else {
        const m = await this.messageOf(rec);
        if (!m) reason = 'message no longer stored';
        else {
          const n = await this.fallback.pushFallback(m, rec.to, (registrations) => {
            // an ack that came while the message was read wins
            if (rec.state !== 'pending') return null;
            return this.finish(rec, 'pushed', events, { registrations });
          });
          if (n > 0) {
            this.counts.pushed++;
            this.forget(rec);
            this.events.announce(events);
            return;
          }
          reason = 'no web push registration';
        }
      }
    }
    if (rec.state !== 'pending') return;
    const changes = this.finish(rec, 'expired', events, { reason });
    this.counts.expired++;
    this.forget(rec);
    await this.hub.putRecords(changes);
    this.events.announce(events);
  }

  private finish(r: ReceiptRecord, state: 'pushed' | 'expired', events: ReceiptEvent[], extra: Partial<ReceiptEvent>): RecordChange[] {
    const now = this.now();
    r.state = state;
    r.finishedAt = now;
    const changes = finishChanges(r, now);
    events.push(this.events.add(r, state, now, changes, extra));
    changes.push({ kind: RECEIPT_KIND, key: r.cursor, value: encodeRecord(r) });
    return changes;
  }

  /** The message of a receipt, read back from history (undefined when it was pruned or expired). */
  private async messageOf(r: ReceiptRecord): Promise<StoredMessage | undefined> {
    const c = parseCursor(r.cursor);
    const since = c.seq > 1 ? formatCursor(c.epoch, c.seq - 1) : 'all';
    const h = await this.hub.history(SYSTEM, [r.topic], since, 1);
    const m = h.messages[0];
    return m && m.cursor === r.cursor ? m : undefined;
  }

  // ------------------------------------------------------------------ upkeep

  /** Drops finished receipts (and their events) older than `keep`, and pending ones another node fired. */
  private async sweep(): Promise<void> {
    const now = this.now();
    for (const r of this.local.values()) if (r.due < now - 60_000) this.forget(r);
    this.meter.sweep(now);
    await sweepFinished(this.hub, now - this.opts.keepMs, () => this.closed);
  }
}

