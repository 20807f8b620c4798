import { isConnectionId } from './connections.js';
import { Delivery } from './encoded.js';
import { OmnipushError } from './errors.js';
import { RECEIPT_PROPERTY } from './receipt.js';
import { canPublish, canReceive, subscribeVerdict, type Principal } from './grants.js';
import { formatCursor, isExpired, messageBytes, parseCursor, type MessageInput, type StoredMessage } from './message.js';
import { RetainedQuota } from './retained-quota.js';
import { retainedBySeq } from './retained-replay.js';
import type { AppendInput, RecordChange, RetentionRule, Store } from './store.js';
import { validateFilter, validateTopic, DEFAULT_TOPIC_LIMITS, type TopicLimits } from './topic.js';
import { SubscriptionTrie } from './trie.js';

/** Figures the hub reports; the server turns them into metrics. All optional. */
export interface HubObserver {
  published?(count: number): void;
  /** Messages handed to subscribers; `latencyMs` is publish→fan-out for the message. */
  fannedOut?(deliveries: number, latencyMs: number): void;
  storeLatency?(op: 'append' | 'history' | 'retained' | 'prune', seconds: number): void;
  slowConsumerClosed?(transport: string): void;
}

/** What a transport implements to receive messages. */
export interface HubSubscriber {
  /** Transport name, for metrics (`sse`, `longpoll`, ...). */
  readonly transport: string;
  readonly principal: Principal;
  /** Called in seq order, at most once per message. Must not throw; encode via `d.encoded(format)`. */
  deliver(d: Delivery): void;
  /** History the subscriber asked for is gone (pruned, or from another store); sent before the rest. */
  gap(info: GapInfo): void;
  /** The hub ends the subscription (slow consumer, shutdown). The transport closes its connection. */
  close(reason: OmnipushError): void;
  /**
   * Flow control for replays: a promise that settles when the subscriber can take more, or
   * null when it can now. Live messages meanwhile wait in the (bounded) pending list.
   */
  backpressure?(): Promise<void> | null;
  /**
   * The connection this subscriber belongs to, as its door told the client: messages published with
   * it as `exclude`, or with it as `sender` when {@link noEcho} is set, skip this subscriber.
   */
  readonly connectionId?: string;
  /** Skip the messages this connection published itself (MQTT's No Local for the other doors). */
  readonly noEcho?: boolean;
}

export interface GapInfo {
  /** The cursor the subscriber resumed from. */
  from: string;
  reason: 'pruned' | 'unknown_epoch' | 'ahead';
}

/** A checked subscription request; produced by {@link Hub.checkSubscribe}. */
export interface SubscribePlan {
  filters: string[];
  /** Per-delivery grant check needed (a deny filter overlaps a subscribed filter). */
  perMessageCheck: boolean;
  mode: 'retained' | 'live' | 'history';
  afterSeq: number;
  gap?: GapInfo;
  /**
   * The cursor is past what this node has fanned out: with a cluster bus it may come from a node
   * that is a little ahead, so subscribe waits briefly for the bus before calling it `ahead`.
   */
  awaitSeq?: number;
}

export interface PublishRequest {
  topic: string;
  payload: Buffer;
  contentType?: string;
  event?: string;
  properties?: Array<[string, string]>;
  retain?: boolean;
  /** Seconds until the message expires. */
  ttl?: number;
  qos?: 0 | 1 | 2;
  /** A connection id (as told to its client) that must not receive the message. */
  exclude?: string;
  /** The connection id the publisher speaks for: that connection's no-echo subscriptions skip it. */
  sender?: string;
  /**
   * The principal a receipt is asked from, set by the receipts room once it accepted the request:
   * the hub adds the {@link RECEIPT_PROPERTY} itself, so no client can set that property.
   */
  receiptTo?: string;
}

export interface HubOptions {
  limits?: TopicLimits;
  maxPayloadBytes?: number;
  /** Bytes a subscriber may have buffered (while catching up) before it is closed. */
  maxQueueBytes?: number;
  historyPageSize?: number;
  retention?: RetentionRule[];
  defaultRetention?: Omit<RetentionRule, 'filter'>;
  observer?: HubObserver;
  now?: () => number;
  /**
   * A cluster bus fans messages out (`fanOutFromBus`), this node's own publishes included, instead
   * of the hub right after `append`: then every node fans out one sequence, in seq order.
   */
  externalFanOut?: boolean;
  /** Retained topics a principal may hold (`quotas.retainedTopicsPerPrincipal`); 0 or absent: no limit. */
  retainedTopicsPerPrincipal?: number;
  /**
   * With `externalFanOut`: ms a publish waits, once durable, for this node to fan it out before it
   * resolves anyway (the bus is catching up after an outage; the message is stored and will follow).
   */
  fanOutWaitMs?: number;
}

interface SubState {
  sub: HubSubscriber;
  filters: string[];
  perMessageCheck: boolean;
  /** Highest seq delivered; also deduplicates overlapping filters. */
  lastSeq: number;
  /** While catching up, live messages wait here. */
  pending: StoredMessage[] | null;
  pendingBytes: number;
  closed: boolean;
}

/** Told once whether an enqueued publish was stored (and fanned out here), or not. Must not throw. */
export interface PublishWaiter {
  stored(m: StoredMessage): void;
  failed(e: unknown): void;
}

interface PendingPublish {
  input: AppendInput;
  waiter: PublishWaiter;
}

const CONTROL_RE = /[\r\n\0]/;

/** Filters {@link Hub} keeps a shared one-filter list for. */
const SOLE_LISTS = 4096;

function connectionIdField(name: string, v: unknown): string {
  if (typeof v !== 'string' || !isConnectionId(v)) throw new OmnipushError('invalid_request', `${name} must be a connection id (1..128 printable ASCII characters)`);
  return v;
}

/** `m` names `sub`'s connection as the one to leave out, or as its sender to a subscriber that asked for no echo. */
function skips(sub: HubSubscriber, m: MessageInput): boolean {
  const id = sub.connectionId;
  if (id === undefined) return false;
  return m.exclude === id || (m.sender === id && sub.noEcho === true);
}

/**
 * The hub: validates and stores publishes in groups, fans them out to matching subscribers
 * in seq order, and replays history or retained messages to (re)subscribing clients with no gap
 * and no duplicate.
 */
export class Hub {
  readonly limits: TopicLimits;
  readonly maxPayloadBytes: number;
  readonly maxQueueBytes: number;
  private readonly pageSize: number;
  private readonly retention: RetentionRule[];
  private readonly defaultRetention: Omit<RetentionRule, 'filter'>;
  private readonly observer: HubObserver;
  private readonly now: () => number;

  private readonly trie = new SubscriptionTrie<SubState>();
  private readonly subs = new Map<HubSubscriber, SubState>();
  /**
   * Frozen one-filter lists, one per filter: the subscribers of a popular topic all hold the same
   * list rather than ~56 bytes each. Bounded: it starts over past SOLE_LISTS filters.
   */
  private readonly soleLists = new Map<string, string[]>();
  private queue: PendingPublish[] = [];
  private flushing = false;
  private flushScheduled = false;
  /** Last seq fanned out: everything at or below it is in the store and was offered to subscribers. */
  private head: number;
  private catchingUp = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly externalFanOut: boolean;
  private readonly fanOutWaitMs: number;
  private readonly retainedQuota: RetainedQuota | null;
  /** Retained publishes queued since the last flush took the queue: only then does the quota look. */
  private queuedRetained = 0;
  /** Publishes (and subscribes) waiting for `head` to reach a seq, ascending by seq. */
  private headWaiters: Array<{ seq: number; done: () => void; timer: NodeJS.Timeout }> = [];

  constructor(
    readonly store: Store,
    opts: HubOptions = {},
  ) {
    this.limits = opts.limits ?? DEFAULT_TOPIC_LIMITS;
    this.maxPayloadBytes = opts.maxPayloadBytes ?? 1024 * 1024;
    this.maxQueueBytes = opts.maxQueueBytes ?? 4 * 1024 * 1024;
    this.pageSize = opts.historyPageSize ?? 500;
    this.retention = opts.retention ?? [];
    this.defaultRetention = opts.defaultRetention ?? { maxCount: 1000, maxAgeMs: 24 * 3600_000 };
    this.observer = opts.observer ?? {};
    this.now = opts.now ?? Date.now;
    this.head = store.lastSeq();
    this.externalFanOut = opts.externalFanOut ?? false;
    this.fanOutWaitMs = opts.fanOutWaitMs ?? 5_000;
    const q = opts.retainedTopicsPerPrincipal ?? 0;
    this.retainedQuota = q > 0 ? new RetainedQuota(store, q) : null;
  }

  /** Last seq fanned out by this node (a cluster bus hands over what comes after it). */
  get headSeq(): number {
    return this.head;
  }

  get epoch(): string {
    return this.store.epoch;
  }

  /** Cursor of the newest message fanned out (what a client holding "everything so far" resumes from). */
  headCursor(): string {
    return formatCursor(this.store.epoch, this.head);
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /**
   * The retained messages matching `filter`, oldest first, at most `limit` (the server API's view).
   * Read page by page as subscribe replays are, and cut as soon as `limit` is reached: bodies past
   * it are never read, and the event loop gets its turns between pages.
   */
  async retainedMessages(filter: string, limit: number): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    for await (const page of retainedBySeq(this.store, [validateFilter(filter)], this.now(), Infinity)) {
      for (const m of page) {
        out.push(m);
        if (out.length === limit) return out;
      }
    }
    return out;
  }

  /** Every subscribed filter with its number of subscribers on this node, in no order (the server API's listing). */
  forEachFilter(visit: (filter: string, subscribers: number) => void): void {
    this.trie.walk(visit);
  }

  // ---------------------------------------------------------------- publish

  /** Validates a publish against limits and grants; throws {@link OmnipushError}. */
  checkPublish(p: Principal, req: PublishRequest): AppendInput {
    const topic = validateTopic(req.topic, this.limits);
    if (!canPublish(p, topic)) {
      throw new OmnipushError('forbidden', `not allowed to publish to ${JSON.stringify(topic)}`, { topic });
    }
    if (!Buffer.isBuffer(req.payload)) throw new OmnipushError('invalid_request', 'payload must be bytes');
    if (req.payload.length > this.maxPayloadBytes) {
      throw new OmnipushError(
        'payload_too_large',
        `payload is ${req.payload.length} bytes; the limit is ${this.maxPayloadBytes}`,
        { limit: this.maxPayloadBytes },
      );
    }
    if (req.event !== undefined && (typeof req.event !== 'string' || req.event === '' || CONTROL_RE.test(req.event) || req.event.length > 256)) {
      throw new OmnipushError('invalid_request', 'event must be 1..256 characters without CR, LF or NUL');
    }
    if (req.contentType !== undefined && (typeof req.contentType !== 'string' || CONTROL_RE.test(req.contentType) || req.contentType.length > 256)) {
      throw new OmnipushError('invalid_request', 'contentType must be up to 256 characters without CR, LF or NUL');
    }
    if (req.properties !== undefined) {
      if (!Array.isArray(req.properties) || req.properties.length > 64) {
        throw new OmnipushError('invalid_request', 'properties must be at most 64 name/value pairs');
      }
      for (const pair of req.properties) {
        if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' || pair[0].length + pair[1].length > 4096) {
          throw new OmnipushError('invalid_request', 'each property is a [name, value] pair of strings (name + value ≤ 4096 characters)');
        }
        // a forged one would hold the message back from its "recipient's" Web Push and make clients ack a receipt nobody asked for
        if (pair[0] === RECEIPT_PROPERTY) throw new OmnipushError('invalid_request', `the property ${RECEIPT_PROPERTY} is set by the server: ask for a receipt with "receipt" instead`);
      }
    }
    let expiresAt: number | undefined;
    const now = this.now();
    if (req.ttl !== undefined) {
      if (typeof req.ttl !== 'number' || !Number.isFinite(req.ttl) || req.ttl <= 0 || req.ttl > 10 * 365 * 86400) {
        throw new OmnipushError('invalid_request', 'ttl must be a positive number of seconds');
      }
      expiresAt = now + Math.round(req.ttl * 1000);
    }
    if (req.qos !== undefined && req.qos !== 0 && req.qos !== 1 && req.qos !== 2) {
      throw new OmnipushError('invalid_request', 'qos must be 0, 1 or 2');
    }
    const input: AppendInput = { topic, payload: req.payload, retain: req.retain === true, publishedAt: now, publisher: p.id };
    if (req.contentType) input.contentType = req.contentType;
    if (req.event) input.event = req.event;
    if (req.properties && req.properties.length) input.properties = req.properties;
    if (req.receiptTo !== undefined) input.properties = [...(input.properties ?? []), [RECEIPT_PROPERTY, req.receiptTo]];
    if (expiresAt !== undefined) input.expiresAt = expiresAt;
    if (req.qos !== undefined) input.qos = req.qos;
    if (req.exclude !== undefined) input.exclude = connectionIdField('exclude', req.exclude);
    if (req.sender !== undefined) input.sender = connectionIdField('sender', req.sender);
    return input;
  }

  /**
   * Publishes one message; resolves with it (and its cursor) once it is durable and this node has
   * fanned it out — so a publisher that reads or subscribes here next sees its own write. With a
   * cluster bus that lags (catching up after an outage) it resolves after `fanOutWaitMs` anyway:
   * the message is durable and every node will fan it out in seq order.
   */
  async publish(p: Principal, req: PublishRequest): Promise<StoredMessage> {
    return this.enqueue(this.checkPublish(p, req));
  }

  /** Publishes several messages atomically with respect to validation: all are checked before any is stored. */
  async publishMany(p: Principal, reqs: PublishRequest[]): Promise<StoredMessage[]> {
    const inputs = reqs.map((r) => this.checkPublish(p, r));
    return Promise.all(inputs.map((i) => this.enqueue(i)));
  }

  /** Publishes an already-checked input (doors that validate themselves, e.g. MQTT). */
  enqueue(input: AppendInput | MessageInput): Promise<StoredMessage> {
    return new Promise((resolve, reject) => this.submit(input, { stored: resolve, failed: reject }));
  }

  /**
   * {@link enqueue} for a door's hot path: the waiter is called (never synchronously) instead of a
   * promise settling, which spares a promise and its reactions per message.
   */
  /** Publishes accepted and not yet handed to the store (for metrics). */
  get pendingPublishes(): number {
    return this.queue.length;
  }

  submit(input: AppendInput | MessageInput, waiter: PublishWaiter): void {
    if (this.closed) {
      const e = new OmnipushError('shutting_down', 'server is shutting down');
      queueMicrotask(() => waiter.failed(e));
      return;
    }
    const full: AppendInput = 'publishedAt' in input ? (input as AppendInput) : { ...input, publishedAt: this.now() };
    this.queue.push({ input: full, waiter });
    if (full.retain === true) this.queuedRetained++;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length) {
        let batch = this.queue;
        this.queue = [];
        let stored: StoredMessage[];
        const t0 = performance.now();
        try {
          if (this.retainedQuota && this.queuedRetained > 0) {
            this.queuedRetained = 0;
            batch = await this.retainedQuota.admit(batch);
            if (batch.length === 0) continue;
          }
          stored = await this.store.append(batch.map((b) => b.input));
        } catch (e) {
          for (const b of batch) b.waiter.failed(e);
          continue;
        }
        this.observer.storeLatency?.('append', (performance.now() - t0) / 1000);
        this.observer.published?.(stored.length);
        if (this.externalFanOut) {
          // the bus fans it out (here and on every node); answer the publishers once it has here
          this.afterHead(stored[stored.length - 1].seq, this.fanOutWaitMs, () => {
            for (let i = 0; i < stored.length; i++) batch[i].waiter.stored(stored[i]);
          });
          continue;
        }
        for (let i = 0; i < stored.length; i++) {
          this.fanOut(stored[i], stored.length === 1);
          batch[i].waiter.stored(stored[i]);
        }
      }
    } finally {
      this.flushing = false;
      if (this.queue.length) this.scheduleFlush();
      else this.settleIdle();
    }
  }

  private isIdle(): boolean {
    return !this.flushing && !this.flushScheduled && this.queue.length === 0 && this.headWaiters.length === 0;
  }

  private settleIdle(): void {
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Calls `done` once `head` reaches `seq`, or after `ms` whatever happened. */
  private afterHead(seq: number, ms: number, done: () => void): void {
    if (this.head >= seq) return done();
    const w = {
      seq,
      done,
      timer: setTimeout(() => {
        this.headWaiters = this.headWaiters.filter((x) => x !== w);
        done();
        this.settleIdle();
      }, ms),
    };
    w.timer.unref();
    // usually appended at the end: own publishes come in seq order
    let i = this.headWaiters.length;
    while (i > 0 && this.headWaiters[i - 1].seq > seq) i--;
    this.headWaiters.splice(i, 0, w);
  }

  private waitHead(seq: number, ms: number): Promise<void> {
    return new Promise((r) => this.afterHead(seq, ms, r));
  }

  /**
   * Fans out messages handed over by a cluster bus: strictly ascending seqs, each once, all of them
   * already durable. Seqs at or below `head` are ignored, so a bus replaying after a hole is harmless.
   */
  fanOutFromBus(batch: StoredMessage[]): void {
    for (const m of batch) if (m.seq > this.head) this.fanOut(m, batch.length === 1);
    let n = 0;
    while (n < this.headWaiters.length && this.headWaiters[n].seq <= this.head) n++;
    if (n === 0) return;
    for (const w of this.headWaiters.splice(0, n)) {
      clearTimeout(w.timer);
      w.done();
    }
    this.settleIdle();
  }

  private fanOut(m: StoredMessage, alone: boolean): void {
    this.head = m.seq;
    // saved and put back, should a subscriber's deliver ever lead to a fan-out of its own
    const outer = this.fanMessage;
    const outerDelivery = this.fanDelivery;
    const outerCount = this.fanCount;
    this.fanMessage = m;
    this.fanDelivery = new Delivery(m, alone);
    this.fanCount = 0;
    // only a message naming a connection pays for the check, once per subscriber it matches
    this.trie.match(m.topic, m.exclude === undefined && m.sender === undefined ? this.fanOutTo : this.fanOutToOthers);
    const n = this.fanCount;
    this.fanMessage = outer;
    this.fanDelivery = outerDelivery;
    this.fanCount = outerCount;
    this.observer.fannedOut?.(n, this.now() - m.publishedAt);
  }

  // the message being fanned out, for fanOutTo: one visitor for every fan-out instead of a closure each
  private fanMessage: StoredMessage | null = null;
  private fanDelivery: Delivery | null = null;
  private fanCount = 0;
  private readonly fanOutTo = (st: SubState): void => {
    const m = this.fanMessage!;
    if (st.closed || st.lastSeq >= m.seq) return;
    if (st.perMessageCheck && !canReceive(st.sub.principal, m.topic)) return;
    if (st.pending) {
      // catching up: keep it, and use lastSeq only to deduplicate overlapping filters
      if (st.pending.length && st.pending[st.pending.length - 1].seq === m.seq) return;
      st.pending.push(m);
      st.pendingBytes += messageBytes(m);
      if (st.pendingBytes > this.maxQueueBytes) this.closeSlow(st);
      return;
    }
    st.lastSeq = m.seq;
    this.fanCount++;
    st.sub.deliver(this.fanDelivery!);
  };

  private readonly fanOutToOthers = (st: SubState): void => {
    if (!skips(st.sub, this.fanMessage!)) this.fanOutTo(st);
  };

  private closeSlow(st: SubState): void {
    this.observer.slowConsumerClosed?.(st.sub.transport);
    this.detach(st);
    st.sub.close(new OmnipushError('slow_consumer', `subscriber fell more than ${this.maxQueueBytes} bytes behind; resume from your last cursor`));
  }

  /** Resolves once every publish accepted so far is stored and fanned out (or has waited `fanOutWaitMs`). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  // ---------------------------------------------------------------- subscribe

  /**
   * Validates filters and grants and works out where the subscription starts. `since` is a cursor,
   * `all` (every stored message), `now` (live only) or undefined (retained messages, then live).
   * Throws {@link OmnipushError} (invalid_filter, invalid_cursor, forbidden).
   */
  private soleList(filter: string): string[] {
    let list = this.soleLists.get(filter);
    if (!list) {
      if (this.soleLists.size >= SOLE_LISTS) this.soleLists.clear();
      list = Object.freeze([filter]) as string[];
      this.soleLists.set(filter, list);
    }
    return list;
  }

  checkSubscribe(p: Principal, filters: string[], since?: string): SubscribePlan {
    if (filters.length === 0) throw new OmnipushError('invalid_filter', 'at least one topic filter is required');
    if (filters.length > 64) throw new OmnipushError('invalid_filter', 'at most 64 topic filters per subscription');
    let perMessageCheck = false;
    const checked: string[] = [];
    for (const f of filters) {
      const filter = validateFilter(f, this.limits);
      const v = subscribeVerdict(p, filter);
      if (v === 'deny') throw new OmnipushError('forbidden', `not allowed to subscribe to ${JSON.stringify(filter)}`, { topic: filter });
      if (v === 'filter') perMessageCheck = true;
      if (!checked.includes(filter)) checked.push(filter);
    }
    // a copy at its exact size: the list grown by push has room for 17, and each subscriber keeps it
    const plan: SubscribePlan = { filters: checked.length === 1 ? this.soleList(checked[0]) : checked.slice(), perMessageCheck, mode: 'retained', afterSeq: 0 };
    if (since === undefined || since === '') return plan;
    if (since === 'now') return { ...plan, mode: 'live', afterSeq: this.head };
    if (since === 'all' || since === '0') return { ...plan, mode: 'history', afterSeq: 0 };
    const c = parseCursor(since);
    if (c.epoch !== this.store.epoch) return { ...plan, mode: 'history', afterSeq: 0, gap: { from: since, reason: 'unknown_epoch' } };
    // with a bus, a cursor from a node a little ahead of this one is valid: wait for it (`settleAhead`)
    if (this.externalFanOut && c.seq > this.head) return { ...plan, mode: 'history', afterSeq: c.seq, awaitSeq: c.seq };
    if (c.seq > this.store.lastSeq()) return { ...plan, mode: 'history', afterSeq: 0, gap: { from: since, reason: 'ahead' } };
    return { ...plan, mode: 'history', afterSeq: c.seq };
  }

  /** Resolves a plan's `awaitSeq`: this node catches up to the cursor, or the cursor is `ahead`. */
  private async settleAhead(plan: SubscribePlan): Promise<SubscribePlan> {
    const seq = plan.awaitSeq;
    if (seq === undefined) return plan;
    await this.waitHead(seq, 3_000);
    if (this.head >= seq) return { ...plan, awaitSeq: undefined };
    return { ...plan, awaitSeq: undefined, afterSeq: 0, gap: { from: formatCursor(this.store.epoch, seq), reason: 'ahead' } };
  }

  /**
   * Attaches a subscriber: replays what the plan asks for (gap signal first if history is missing),
   * then live messages, with no gap and no duplicate. Resolves once the replay is handed over.
   */
  async subscribe(sub: HubSubscriber, plan: SubscribePlan): Promise<void> {
    if (this.closed) throw new OmnipushError('shutting_down', 'server is shutting down');
    if (this.subs.has(sub)) throw new OmnipushError('invalid_request', 'already subscribed');
    if (plan.awaitSeq !== undefined) {
      plan = await this.settleAhead(plan);
      if (this.closed) throw new OmnipushError('shutting_down', 'server is shutting down');
      if (this.subs.has(sub)) throw new OmnipushError('invalid_request', 'already subscribed');
    }
    // what every fan-out reads comes first: at 10k subscribers each SubState is a fetch from memory,
    // and fields that share a cache line cost one
    const st: SubState = {
      closed: false,
      lastSeq: this.head,
      perMessageCheck: plan.perMessageCheck,
      pending: plan.mode === 'live' ? null : [],
      sub,
      filters: plan.filters,
      pendingBytes: 0,
    };
    this.subs.set(sub, st);
    for (const f of st.filters) this.trie.add(f, st);
    if (!st.pending) return;

    const upTo = this.head;
    this.catchingUp++;
    try {
      let gap = plan.gap;
      let prunedBefore = 0;
      if (!gap && plan.mode === 'history' && plan.afterSeq > 0) {
        prunedBefore = await this.store.prunedThrough(st.filters);
        if (prunedBefore > plan.afterSeq) gap = { from: formatCursor(this.store.epoch, plan.afterSeq), reason: 'pruned' };
      }
      if (st.closed) return;
      if (gap) sub.gap(gap);
      if (plan.mode === 'retained') {
        // newer ones than upTo arrive through `pending`
        const pages = retainedBySeq(this.store, st.filters, this.now(), upTo);
        let reading = 0;
        for (;;) {
          const t0 = performance.now();
          const next = await pages.next();
          reading += performance.now() - t0;
          if (next.done || st.closed) break;
          for (const m of next.value) {
            if (st.closed) return;
            this.replay(st, m);
            const wait = sub.backpressure?.();
            if (wait) await wait;
          }
        }
        this.observer.storeLatency?.('retained', reading / 1000);
      } else {
        let after = plan.afterSeq;
        for (;;) {
          const t0 = performance.now();
          const page = await this.store.history({ filters: st.filters, afterSeq: after, toSeq: upTo, limit: this.pageSize, now: this.now() });
          this.observer.storeLatency?.('history', (performance.now() - t0) / 1000);
          if (st.closed) return;
          for (const m of page) {
            this.replay(st, m);
            const wait = sub.backpressure?.();
            if (wait) await wait;
            if (st.closed) return;
          }
          if (page.length < this.pageSize) break;
          after = page[page.length - 1].seq;
        }
        // Pruning here waits for replays, but another process sharing the store may have pruned
        // part of the range while it was read: if this topic set's pruned mark moved past the
        // cursor meanwhile, pages may be missing, so say so (late, but never silently).
        if (!gap && plan.afterSeq > 0 && this.externalFanOut) {
          const prunedAfter = await this.store.prunedThrough(st.filters);
          if (st.closed) return;
          if (prunedAfter > prunedBefore && prunedAfter > plan.afterSeq) sub.gap({ from: formatCursor(this.store.epoch, plan.afterSeq), reason: 'pruned' });
        }
      }
      // closed (slow consumer, shutdown) during the last await: `pending` is gone
      if (st.closed) return;
      const pending = st.pending;
      st.pending = null;
      st.pendingBytes = 0;
      st.lastSeq = Math.max(st.lastSeq, upTo);
      for (const m of pending) {
        if (st.closed) return;
        this.replay(st, m);
      }
    } finally {
      this.catchingUp--;
    }
  }

  private replay(st: SubState, m: StoredMessage): void {
    if (st.perMessageCheck && !canReceive(st.sub.principal, m.topic)) return;
    if ((m.exclude !== undefined || m.sender !== undefined) && skips(st.sub, m)) {
      st.lastSeq = Math.max(st.lastSeq, m.seq);
      return;
    }
    st.lastSeq = Math.max(st.lastSeq, m.seq);
    st.sub.deliver(new Delivery(m));
  }

  /**
   * Re-applies grants to a live subscriber whose principal changed (its credentials were renewed):
   * each filter gets the subscribe verdict again with `sub.principal`. Filters now denied are dropped
   * at once, a deny that now overlaps a filter switches on the per-message check. Returns the filters
   * dropped; when none is left the subscriber is detached (its door tells the client). Runs once per
   * re-authentication, never on the fan-out path.
   */
  regrant(sub: HubSubscriber): string[] {
    const st = this.subs.get(sub);
    if (!st || st.closed) return [];
    const kept: string[] = [];
    const dropped: string[] = [];
    let perMessageCheck = false;
    for (const f of st.filters) {
      const v = subscribeVerdict(sub.principal, f);
      if (v === 'deny') dropped.push(f);
      else {
        kept.push(f);
        if (v === 'filter') perMessageCheck = true;
      }
    }
    if (dropped.length === 0 && perMessageCheck === st.perMessageCheck) return dropped;
    for (const f of dropped) this.trie.remove(f, st);
    st.filters = kept;
    // a replay still at work has pages in hand read with the old filters: each message is checked
    st.perMessageCheck = perMessageCheck || (dropped.length > 0 && st.pending !== null);
    if (kept.length === 0) this.detach(st);
    return dropped;
  }

  /** Detaches a subscriber (idempotent). */
  unsubscribe(sub: HubSubscriber): void {
    const st = this.subs.get(sub);
    if (st) this.detach(st);
  }

  private detach(st: SubState): void {
    if (st.closed) return;
    st.closed = true;
    st.pending = null;
    this.subs.delete(st.sub);
    for (const f of st.filters) this.trie.remove(f, st);
  }

  /**
   * Does `principalId` have a live subscriber (any transport but `exceptTransport`) that would get
   * a message on `topic`? Costs one trie match; Web Push's `offline` mode asks it per delivery.
   */
  hasLiveSubscriber(principalId: string, topic: string, exceptTransport?: string): boolean {
    let found = false;
    this.trie.match(topic, (st) => {
      if (found || st.closed || st.sub.principal.id !== principalId || st.sub.transport === exceptTransport) return;
      if (st.perMessageCheck && !canReceive(st.sub.principal, topic)) return;
      found = true;
    });
    return found;
  }

  // ---------------------------------------------------------------- history

  /**
   * Reads stored messages for `filters` after `since` (a cursor, `all`, or undefined = all), up to
   * `limit`. `gap` is true when some of that history was pruned or the cursor is unknown.
   */
  async history(p: Principal, filters: string[], since: string | undefined, limit: number): Promise<{ messages: StoredMessage[]; gap: boolean; cursor: string; more: boolean }> {
    const plan = await this.settleAhead(this.checkSubscribe(p, filters, since === undefined || since === '' || since === 'now' ? 'all' : since));
    let gap = !!plan.gap;
    const prunedBefore = plan.afterSeq > 0 ? await this.store.prunedThrough(plan.filters) : 0;
    if (!gap && plan.afterSeq > 0) gap = prunedBefore > plan.afterSeq;
    const upTo = this.head;
    const out: StoredMessage[] = [];
    let after = plan.afterSeq;
    let more = false;
    // Runs until the store has nothing more or one receivable message past `limit` proves `more`; stopping
    // as soon as `out` is full would hand back the head cursor past messages never looked at.
    for (;;) {
      const want = limit - out.length;
      const page = await this.store.history({ filters: plan.filters, afterSeq: after, toSeq: upTo, limit: want + 1, now: this.now() });
      for (const m of page) {
        if (plan.perMessageCheck && !canReceive(p, m.topic)) continue;
        if (out.length === limit) {
          more = true;
          break;
        }
        out.push(m);
      }
      if (more || page.length <= want) break;
      after = page[page.length - 1].seq;
    }
    // another process may have pruned part of the range while it was read (see subscribe)
    if (!gap && plan.afterSeq > 0 && this.externalFanOut) {
      const prunedAfter = await this.store.prunedThrough(plan.filters);
      gap = prunedAfter > prunedBefore && prunedAfter > plan.afterSeq;
    }
    const cursor = more ? out[out.length - 1].cursor : formatCursor(this.store.epoch, upTo);
    return { messages: out, gap, cursor, more };
  }

  // ---------------------------------------------------------------- doors' own durable state

  /** A door's durable record (MQTT session, Web Push subscription ...); doors ask the hub, not the store. */
  getRecord(kind: string, key: string): Promise<Buffer | undefined> {
    return this.store.getRecord(kind, key);
  }

  /** Writes and deletes (`value: null`) records atomically. */
  putRecords(changes: RecordChange[]): Promise<void> {
    return this.store.putRecords(changes);
  }

  /** Records of a kind whose key starts with `prefix` (and sorts after `after`), ascending by key. */
  listRecords(kind: string, prefix?: string, limit?: number, after?: string): Promise<Array<{ key: string; value: Buffer }>> {
    return this.store.listRecords(kind, prefix, limit, after);
  }

  // ---------------------------------------------------------------- upkeep

  /** Applies retention; skipped while a subscriber is replaying (so a replay never loses a page silently). */
  async prune(): Promise<number> {
    if (this.catchingUp > 0) return 0;
    const t0 = performance.now();
    const n = await this.store.prune(this.now(), this.retention, this.defaultRetention);
    this.observer.storeLatency?.('prune', (performance.now() - t0) / 1000);
    return n;
  }

  /** Stops taking publishes, waits for accepted ones, and closes every subscriber with `reason`. */
  async close(reason = new OmnipushError('shutting_down', 'server is shutting down')): Promise<void> {
    this.closed = true;
    await this.idle();
    for (const w of this.headWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.done();
    }
    for (const st of [...this.subs.values()]) {
      this.detach(st);
      st.sub.close(reason);
    }
  }

  /** Is `m` still deliverable now? */
  isLive(m: StoredMessage): boolean {
    return !isExpired(m, this.now());
  }
}
