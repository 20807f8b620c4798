import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';
import type { Config } from '../config/schema.js';
import type { WebhookEventType } from '../config/webhooks-schema.js';
import type { Delivery } from '../core/encoded.js';
import type { OmnipushError } from '../core/errors.js';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import type { GapInfo, Hub, HubSubscriber } from '../core/hub.js';
import type { RecordChange } from '../core/store.js';
import { filterMatches } from '../core/topic.js';
import { retryDelay } from '../outbound/backoff.js';
import { OutboundQueue, type OutboundEntry, type Verdict } from '../outbound/queue.js';
import { SenderLease } from '../outbound/sender-lease.js';
import { FeedHead } from '../outbound/feed-head.js';
import { toMessageJson } from '../wire/json-message.js';
import { WebhookEndpoint, type WebhookEvent } from './endpoint.js';
import { WebhookMetrics } from './webhook-metrics.js';

/** Failed deliveries put back per store transaction by a retry of all. */
const RETRY_PAGE = 500;
import type { Metrics } from '../metrics/metrics.js';

export const QUEUE_KIND = 'webhooks.queue';
export const FAILED_KIND = 'webhooks.failed';
const META_KIND = 'webhooks.meta';
/** Meta record: cursor of the newest message offered to `message` endpoints, written with the entries it produced. */
const HEAD_KEY = 'head';
const SENDER_LEASE = 'webhooks-sender';
/** Cluster event: entries `keys` were written to the store by a node that does not send. */
const QUEUED_EVENT = 'webhooks-queued';

/** One event on its way to one endpoint. */
export interface WebhookEntry extends OutboundEntry {
  /** `<endpoint id>/<ms, base36>-<node>-<n>`: per-endpoint order by time. */
  key: string;
  endpoint: string;
  event: WebhookEvent;
  /** ms; the give-up age counts from here. */
  createdAt: number;
  /** Why the last attempt failed (status and a piece of the answer). */
  lastError?: string;
}

/** A given-up delivery as the server API lists it. */
export interface FailedWebhook extends WebhookEntry {
  failedAt: number;
}

export interface WebhooksContext {
  hub: Hub;
  config: Config;
  log: Logger;
  cluster: ClusterControl;
  metrics: Metrics;
}

/** Subscribes the sending node to the `message` endpoints' filters. */
class MessageFeed implements HubSubscriber {
  readonly transport = 'webhooks';
  readonly principal: Principal = { id: '$webhooks', kind: 'anonymous', grants: ALLOW_ALL };
  constructor(private readonly owner: Webhooks) {}
  deliver(d: Delivery): void {
    this.owner.message(d);
  }
  gap(info: GapInfo): void {
    void info; // history after the head was pruned: those messages are not sent, nothing to tell
  }
  close(reason: OmnipushError): void {
    this.owner.feedClosed(reason);
  }
}

/**
 * Signed webhooks (docs/webhooks.md): events become one durable queue entry per endpoint, sent at
 * least once by one node of the cluster (the holder of the sender lease), batched, retried with
 * backoff and jitter until the give-up age, then kept for the server API to list and retry.
 */
export class Webhooks {
  readonly endpoints: WebhookEndpoint[];
  private readonly byId = new Map<string, WebhookEndpoint>();
  private readonly wants = new Map<WebhookEventType, WebhookEndpoint[]>();
  private readonly messageEndpoints: WebhookEndpoint[];
  queue: OutboundQueue<WebhookEntry>;
  private readonly lease: SenderLease;
  private active = false;
  private closing = false;
  private activation: Promise<void> = Promise.resolve();
  private feed: MessageFeed | null = null;
  private readonly head: FeedHead;
  private seq = 0;
  /** Entries written here while another node sends: stored and announced once per tick. */
  private remote: WebhookEntry[] = [];
  private remoteScheduled = false;
  private remoteWriting: Promise<void> = Promise.resolve();
  private readonly metrics: WebhookMetrics;

  private constructor(private readonly ctx: WebhooksContext) {
    this.endpoints = ctx.config.webhooks.endpoints.map((c) => new WebhookEndpoint(c));
    for (const e of this.endpoints) {
      this.byId.set(e.id, e);
      for (const t of e.events) {
        let list = this.wants.get(t);
        if (!list) this.wants.set(t, (list = []));
        list.push(e);
      }
    }
    this.messageEndpoints = this.endpoints.filter((e) => e.events.has('message') && e.filters.length > 0);
    this.head = new FeedHead(ctx.hub, META_KIND, HEAD_KEY);
    this.queue = this.newQueue();
    this.metrics = new WebhookMetrics(ctx.metrics, () => this.queue.size);
    this.lease = new SenderLease(ctx.cluster, SENDER_LEASE, ctx.config.cluster.nodeTimeout * 1000, ctx.log, {
      gained: () => (this.activation = this.activate().catch((e: unknown) => ctx.log.error({ err: e }, 'webhook sending not started'))),
      lost: () => this.deactivate(),
    });
  }

  /** Starts webhooks when endpoints are configured; alone this node sends, in a cluster the lease holder does. */
  static async start(ctx: WebhooksContext): Promise<Webhooks | undefined> {
    if (ctx.config.webhooks.endpoints.length === 0) return undefined;
    const w = new Webhooks(ctx);
    const c = ctx.cluster;
    if (!c.clustered) await w.activate();
    else {
      c.on(QUEUED_EVENT, (e) => {
        if (Array.isArray(e.keys)) void w.adopt(e.keys.filter((k): k is string => typeof k === 'string'));
      });
      c.onTick(() => {
        void w.lease.tick();
        w.rescanWhenDue();
      });
      await w.lease.tick();
      await w.activation;
    }
    ctx.log.info({ endpoints: w.endpoints.length, queued: w.queue.size, sending: w.active }, 'webhooks ready');
    return w;
  }

  /** Whether any endpoint takes events of `type` (so callers skip building ones nobody wants). */
  wanted(type: WebhookEventType): boolean {
    return this.wants.has(type);
  }

  get sending(): boolean {
    return this.active;
  }

  private newQueue(): OutboundQueue<WebhookEntry> {
    return new OutboundQueue<WebhookEntry>(this.ctx.hub, {
      kind: QUEUE_KIND,
      target: (e) => e.endpoint,
      concurrency: (t) => this.byId.get(t)?.concurrency ?? 1,
      batch: (t) => {
        const ep = this.byId.get(t);
        return { maxEntries: ep?.maxEvents ?? 1, maxDelayMs: ep?.maxDelayMs ?? 0 };
      },
      attempt: (entries) => this.attempt(entries),
      // the head moves durably with the entries it produced (see FeedHead)
      extra: () => this.head.changes(),
      log: this.ctx.log,
    });
  }

  private entryFor(ep: WebhookEndpoint, event: WebhookEvent, now: number): WebhookEntry {
    return {
      key: `${ep.id}/${now.toString(36).padStart(9, '0')}-${this.ctx.cluster.nodeId}-${(++this.seq).toString(36).padStart(6, '0')}`,
      endpoint: ep.id,
      event,
      createdAt: now,
      attempts: 0,
      notBefore: 0,
    };
  }

  /** An event happened on this node: one durable entry per endpoint that wants it. */
  emit(type: Exclude<WebhookEventType, 'message'>, data: Record<string, unknown>): void {
    const eps = this.wants.get(type);
    if (!eps || this.closing) return;
    const now = Date.now();
    const event: WebhookEvent = { id: `evt_${randomBytes(12).toString('base64url')}`, type, timestamp: new Date(now).toISOString(), data };
    for (const ep of eps) this.enqueue(this.entryFor(ep, event, now));
  }

  private enqueue(e: WebhookEntry): void {
    if (this.active) return this.queue.add(e);
    // another node sends: store the entry and tell it (it also finds it when it next takes over)
    this.remote.push(e);
    if (this.remoteScheduled) return;
    this.remoteScheduled = true;
    setImmediate(() => {
      this.remoteScheduled = false;
      const batch = this.remote;
      this.remote = [];
      this.remoteWriting = this.remoteWriting.then(() => this.storeRemote(batch));
    });
  }

  private async storeRemote(batch: WebhookEntry[]): Promise<void> {
    try {
      await this.ctx.hub.putRecords(batch.map((e) => ({ kind: QUEUE_KIND, key: e.key, value: Buffer.from(JSON.stringify(e)) })));
      if (this.active) for (const e of batch) this.queue.adopt(e);
      else this.ctx.cluster.publish(QUEUED_EVENT, { keys: batch.map((e) => e.key) });
    } catch (err) {
      this.ctx.log.error({ err, events: batch.length }, 'webhook events could not be stored; they are lost');
    }
  }

  private rescanning = false;
  private rescannedAt = Date.now();

  /** The sender reads the stored queue now and then for entries whose notice it missed (`webhooks.rescanInterval`). */
  private rescanWhenDue(): void {
    const now = Date.now();
    if (!this.active || this.rescanning || now - this.rescannedAt < this.ctx.config.webhooks.rescanInterval * 1000) return;
    this.rescanning = true;
    this.rescannedAt = now;
    this.queue
      .rescan()
      .then((n) => {
        if (n) this.ctx.log.warn({ events: n }, 'webhook events stored by another node were found by the rescan: their notice was lost');
      })
      .catch((e: unknown) => this.ctx.log.warn({ err: e }, 'webhook queue rescan failed; next time'))
      .finally(() => (this.rescanning = false));
  }

  /** The sender takes entries another node stored. */
  private async adopt(keys: string[]): Promise<void> {
    if (!this.active) return;
    for (const k of keys) {
      if (this.queue.has(k)) continue;
      const buf = await this.ctx.hub.getRecord(QUEUE_KIND, k);
      if (buf && this.active) this.queue.adopt(JSON.parse(buf.toString('utf8')) as WebhookEntry);
    }
  }

  /** A message on a filter some endpoint watches (only the sending node is subscribed). */
  message(d: Delivery): void {
    const m = d.message;
    this.head.advance(m);
    const now = Date.now();
    let event: WebhookEvent | undefined;
    for (const ep of this.messageEndpoints) {
      let hit = false;
      for (const f of ep.filters) if (filterMatches(f, m.topic)) hit = true;
      if (!hit) continue;
      // the id comes from the cursor: a message replayed after a crash is recognisably the same event
      event ??= { id: `evt_m_${m.cursor}`, type: 'message', timestamp: new Date(m.publishedAt).toISOString(), data: toMessageJson(m) as unknown as Record<string, unknown> };
      this.queue.add({ ...this.entryFor(ep, event, now), key: `${ep.id}/${m.publishedAt.toString(36).padStart(9, '0')}-m-${m.cursor}` });
    }
    if (!event) this.queue.touch();
  }

  feedClosed(reason: OmnipushError): void {
    if (this.closing || !this.active || reason.code === 'shutting_down') return;
    this.ctx.log.warn({ reason: reason.message }, 'webhook message feed ended; re-attaching live');
    this.feed = null;
    void this.attachFeed('now');
  }

  private async attachFeed(since: string): Promise<void> {
    const filters = [...new Set(this.messageEndpoints.flatMap((e) => e.filters))];
    if (filters.length === 0) return;
    const feed = new MessageFeed(this);
    this.feed = feed;
    try {
      const hub = this.ctx.hub;
      const plan = hub.checkSubscribe(feed.principal, filters, since);
      await hub.subscribe(feed, plan.gap ? hub.checkSubscribe(feed.principal, filters, 'now') : plan);
    } catch (e) {
      if (this.feed === feed) this.feed = null;
      this.ctx.log.error({ err: e }, 'webhook message feed could not be attached');
    }
  }

  /** Starts sending: takes over the stored queue and replays messages after the stored head. */
  private async activate(): Promise<void> {
    if (this.active) return;
    this.active = true;
    this.queue = this.newQueue();
    const since = await this.head.load();
    await this.queue.load();
    await this.attachFeed(since);
  }

  private async deactivate(): Promise<void> {
    await this.activation;
    if (!this.active) return;
    this.active = false;
    if (this.feed) this.ctx.hub.unsubscribe(this.feed);
    this.feed = null;
    await this.queue.close();
  }

  private async attempt(entries: WebhookEntry[]): Promise<Verdict> {
    const ep = this.byId.get(entries[0].endpoint);
    if (!ep) {
      // the endpoint left the configuration: its events have nowhere to go
      this.ctx.log.warn({ endpoint: entries[0].endpoint, events: entries.length }, 'webhook endpoint no longer configured; events dropped');
      this.metrics.count('-', 'dropped', entries.length);
      return { done: true };
    }
    const res = await ep.post(entries.map((e) => e.event));
    const label = ep.url.host + ep.url.pathname;
    if (res.status >= 200 && res.status < 300) {
      this.metrics.count(label, 'delivered', entries.length);
      return { done: true };
    }
    const error = res.status ? `status ${res.status}${res.detail ? `: ${res.detail}` : ''}` : `no answer: ${res.detail ?? ''}`;
    const r = this.ctx.config.webhooks.retry;
    const delayMs = retryDelay(Math.min(...entries.map((e) => e.attempts)), r.minDelay, r.maxDelay, res.retryAfterMs);
    const now = Date.now();
    const giveUpMs = r.giveUpAfter * 1000;
    let kept = 0;
    for (const e of entries) {
      e.lastError = error;
      if (now + delayMs - e.createdAt < giveUpMs) kept++;
      else await this.giveUp(e, now);
    }
    if (kept) this.metrics.count(label, 'retry', kept);
    if (kept < entries.length) this.metrics.count(label, 'given_up', entries.length - kept);
    this.ctx.log.info({ endpoint: ep.url.origin + ep.url.pathname, events: entries.length, error, retryInMs: kept ? delayMs : undefined }, kept ? 'webhook delivery failed; will retry' : 'webhook delivery given up');
    return kept ? { done: false, delayMs } : { done: true };
  }

  private async giveUp(e: WebhookEntry, now: number): Promise<void> {
    const failed: FailedWebhook = { ...e, attempts: e.attempts + 1, failedAt: now };
    await this.queue.remove(e.key, [{ kind: FAILED_KIND, key: e.key, value: Buffer.from(JSON.stringify(failed)) }]);
  }

  /** Given-up deliveries (from the store, so any node answers for the cluster), in key order after `after`. */
  async listFailed(limit: number, after?: string): Promise<{ items: FailedWebhook[]; next?: string }> {
    const page = await this.ctx.hub.listRecords(FAILED_KIND, '', limit + 1, after || undefined);
    const items = page.slice(0, limit).map((r) => JSON.parse(r.value.toString('utf8')) as FailedWebhook);
    return { items, next: page.length > limit ? items[items.length - 1].key : undefined };
  }

  /** Puts given-up deliveries (one by key, or all) back in the queue with a fresh give-up age; how many. */
  async retry(key?: string): Promise<number> {
    if (key !== undefined) return this.retryRows(await this.one(key));
    // all of them, a page at a time: each page is read, requeued and written before the next is read
    let n = 0;
    for (;;) {
      const rows = await this.ctx.hub.listRecords(FAILED_KIND, '', RETRY_PAGE);
      n += await this.retryRows(rows);
      if (rows.length < RETRY_PAGE) return n;
    }
  }

  private async retryRows(rows: Array<{ key: string; value: Buffer }>): Promise<number> {
    const now = Date.now();
    const back: WebhookEntry[] = [];
    const changes: RecordChange[] = [];
    for (const r of rows) {
      const f = JSON.parse(r.value.toString('utf8')) as FailedWebhook;
      const e: WebhookEntry = { key: f.key, endpoint: f.endpoint, event: f.event, createdAt: now, attempts: 0, notBefore: 0 };
      back.push(e);
      changes.push({ kind: FAILED_KIND, key: f.key, value: null }, { kind: QUEUE_KIND, key: e.key, value: Buffer.from(JSON.stringify(e)) });
    }
    if (changes.length) await this.ctx.hub.putRecords(changes);
    if (this.active) for (const e of back) this.queue.adopt(e);
    else if (back.length) this.ctx.cluster.publish(QUEUED_EVENT, { keys: back.map((e) => e.key) });
    return back.length;
  }

  private async one(key: string): Promise<Array<{ key: string; value: Buffer }>> {
    const v = await this.ctx.hub.getRecord(FAILED_KIND, key);
    return v ? [{ key, value: v }] : [];
  }

  /** Resolves when nothing is in flight and every change is written (tests). */
  async idle(): Promise<void> {
    await this.remoteWriting;
    await this.queue.idle();
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.lease.stop();
    await this.activation;
    if (this.remote.length) await this.storeRemote(this.remote.splice(0));
    await this.remoteWriting;
    if (this.feed) this.ctx.hub.unsubscribe(this.feed);
    this.feed = null;
    this.active = false;
    await this.queue.close();
    await this.lease.release();
    await Promise.all(this.endpoints.map((e) => e.close()));
  }
}
