import type { Delivery, WireFormat } from '../../core/encoded.js';
import type { OmnipushError } from '../../core/errors.js';
import { canReceive, type Principal } from '../../core/grants.js';
import { receiptRecipient } from '../../core/receipt.js';
import type { RecordChange } from '../../core/store.js';
import { filterMatches } from '../../core/topic.js';
import type { GapInfo, HubSubscriber } from '../../core/hub.js';
import type { StoredMessage } from '../../core/message.js';
import { withLease } from '../../cluster/control.js';
import { retryDelay } from '../../outbound/backoff.js';
import { OutboundQueue, type Verdict } from '../../outbound/queue.js';
import { SenderLease } from '../../outbound/sender-lease.js';
import type { TransportContext } from '../context.js';
import { encryptWebPush } from './ece.js';
import { pushJobFor, type PushJob } from './payload.js';
import { entryKey, HEAD_KEY, META_KIND, QUEUE_KIND, type QueueEntry } from './queue.js';
import { FeedHead } from '../../outbound/feed-head.js';
import { SUB_KIND, SubscriptionRegistry, type PushSubscriptionRecord } from './registry.js';
import { readCaFiles, WebPushSender } from './sender.js';
import { VapidSigner } from './vapid.js';
import { loadOrCreateVapidKeys } from './vapid-keys.js';
import { WebPushMetrics } from './webpush-metrics.js';

export const TRANSPORT = 'webpush';
/** Cluster lease of the node that sends Web Push. */
const SENDER_LEASE = 'webpush-sender';
/** Cluster event: subscription `id` changed (registered, updated, removed); `since`: where the registering node stood. */
const SUB_EVENT = 'webpush-sub';
/** Given-up deliveries kept for the server API's view. */
const GIVEN_UP_KEPT = 100;

/** One push subscription attached to the hub: it turns each matching message into a queue entry. */
class PushHubSubscriber implements HubSubscriber {
  readonly transport = TRANSPORT;
  readonly principal: Principal;
  constructor(
    readonly rec: PushSubscriptionRecord,
    private readonly owner: WebPushTransport,
  ) {
    this.principal = { id: rec.principal.id, kind: rec.principal.kind, grants: rec.principal.grants };
  }
  deliver(d: Delivery): void {
    this.owner.offer(this, d);
  }
  gap(info: GapInfo): void {
    void info; // a push subscription has no reader to tell; the missing messages are simply not pushed
  }
  close(reason: OmnipushError): void {
    this.owner.detached(this, reason);
  }
}

/**
 * The Web Push door: keeps browsers' push subscriptions attached to the hub, queues each matching
 * message durably, and sends it encrypted (RFC 8291) and signed (RFC 8292) to the push service
 * (RFC 8030), with retries, per-origin limits and subscription clean-up.
 */
export class WebPushTransport {
  readonly registry: SubscriptionRegistry;
  /** The newest deliveries given up on by this node (expired or rejected), oldest first. */
  readonly givenUp: Array<{ subscription: string; cursor: string; attempts: number; reason: string; at: number }> = [];
  /** The durable queue; a fresh one each time this node starts sending (see {@link activate}). */
  queue: OutboundQueue<QueueEntry>;
  readonly metrics: WebPushMetrics;
  /** Told of each subscription removed because its push service said it is gone (webhooks). */
  onGone: ((rec: PushSubscriptionRecord) => void) | null = null;
  private readonly sender: WebPushSender;
  private readonly attached = new Map<string, PushHubSubscriber>();
  /** Parsed forms of each subscription's endpoint and keys, so a send does not re-parse them. */
  private readonly parsed = new WeakMap<PushSubscriptionRecord, { url: URL; origin: string; p256dh: Buffer; auth: Buffer }>();
  private readonly jobFormat: WireFormat<PushJob>;
  private readonly head: FeedHead;
  private closing = false;
  /** This node sends Web Push: always when alone; in a cluster while it holds the sender lease. */
  private active = false;
  private readonly lease: SenderLease;
  private activation: Promise<void> = Promise.resolve();

  private constructor(
    private readonly ctx: TransportContext,
    readonly vapid: VapidSigner,
  ) {
    const cfg = ctx.config.webpush;
    this.registry = new SubscriptionRegistry(ctx.hub);
    this.sender = new WebPushSender(vapid, { connectionsPerOrigin: cfg.concurrencyPerOrigin, timeoutMs: cfg.requestTimeout * 1000, ca: readCaFiles(cfg.caFiles) });
    this.head = new FeedHead(ctx.hub, META_KIND, HEAD_KEY);
    this.queue = this.newQueue();
    this.lease = new SenderLease(ctx.cluster, SENDER_LEASE, ctx.config.cluster.nodeTimeout * 1000, ctx.log, {
      // not awaited: loading a long queue must not hold up the renewals that keep the lease
      gained: () => (this.activation = this.activate().catch((e: unknown) => this.ctx.log.error({ err: e }, 'web push sending not started'))),
      lost: () => this.deactivate(),
    });
    this.metrics = new WebPushMetrics(ctx.metrics, () => this.queue.size, () => this.registry.size);
    // The push job (payload JSON, TTL, urgency, replacement key) is the same for every
    // subscription of a message: built once per message, like every other wire format.
    this.jobFormat = { name: 'webpush-job', encode: (m: StoredMessage) => pushJobFor(m, cfg.defaultTtl, Date.now()) };
  }

  private newQueue(): OutboundQueue<QueueEntry> {
    const perOrigin = this.ctx.config.webpush.concurrencyPerOrigin;
    return new OutboundQueue<QueueEntry>(this.ctx.hub, {
      kind: QUEUE_KIND,
      target: (e) => e.origin,
      group: (e) => e.sub,
      concurrency: () => perOrigin,
      attempt: (batch) => this.attempt(batch[0]),
      // the head moves durably with the entries it produced (see FeedHead)
      extra: () => this.head.changes(),
      log: this.ctx.log,
    });
  }

  /**
   * Validates the subject, loads or creates the VAPID keys and the subscriptions; alone, starts
   * sending at once; in a cluster, the node holding the sender lease sends (docs/cluster.md).
   */
  static async start(ctx: TransportContext): Promise<WebPushTransport> {
    const cfg = ctx.config.webpush;
    if (!cfg.subject) throw new Error('webpush.subject is required for Web Push');
    // nodes starting together must not each create (and store) a key pair of their own
    const { keys, source } = await withLease(ctx.cluster, 'webpush-vapid', () => loadOrCreateVapidKeys(ctx.hub, cfg));
    const t = new WebPushTransport(ctx, new VapidSigner(keys, cfg.subject));
    await t.registry.load();
    const c = ctx.cluster;
    if (!c.clustered) await t.activate();
    else {
      c.on(SUB_EVENT, (e) => {
        if (typeof e.id === 'string') void t.changed(e.id, typeof e.since === 'string' ? e.since : 'now');
      });
      c.onTick(() => void t.lead());
      await t.lead();
      await t.activation;
    }
    ctx.log.info({ subscriptions: t.registry.size, queued: t.queue.size, vapidKeys: source, sending: t.active }, 'web push ready');
    return t;
  }

  /** Takes, keeps or loses the sender lease (one node of the cluster sends, so each push goes once). */
  private lead(): Promise<void> {
    return this.lease.tick();
  }

  /**
   * Starts sending: reads the durable queue (entries a previous sender left are taken over) and
   * attaches every subscription from the stored head, so messages after it that were never queued
   * are replayed and queued now.
   */
  private async activate(): Promise<void> {
    if (this.active) return;
    this.active = true;
    this.queue = this.newQueue();
    const subs = this.ctx.cluster.clustered ? await this.registry.reload() : [...this.registry.all()];
    // Messages stored after the last head but never queued (a crash in between) are replayed to
    // every subscription; anything at or before the head was queued or deliberately skipped.
    const since = await this.head.load();
    await this.queue.load();
    for (const rec of subs) await this.attachHere(rec, since);
  }

  /** Stops sending (lease lost): detaches everything and writes the queue's state for the next sender. */
  private async deactivate(): Promise<void> {
    await this.activation;
    if (!this.active) return;
    this.active = false;
    for (const sub of this.attached.values()) this.ctx.hub.unsubscribe(sub);
    this.attached.clear();
    await this.queue.close();
  }

  /** Another node changed subscription `id`: mirror it, and as the sender attach or drop it. */
  private async changed(id: string, since: string): Promise<void> {
    try {
      const buf = await this.ctx.hub.getRecord(SUB_KIND, id);
      if (!buf) {
        this.registry.forget(id);
        if (this.active) await this.remove(id, false);
        return;
      }
      const rec = JSON.parse(buf.toString('utf8')) as PushSubscriptionRecord;
      const known = this.attached.get(id);
      this.registry.mirror(rec);
      // an unchanged record attached already (e.g. marked failing by ourselves) keeps its attachment
      if (!this.active || (known && JSON.stringify(known.rec) === buf.toString('utf8'))) return;
      // a subscription new to the sender catches up from where its registering node stood
      await this.attachHere(rec, known ? 'now' : since);
    } catch (e) {
      this.ctx.log.warn({ err: e, subscription: id }, 'web push subscription change not applied');
    }
  }

  private parse(rec: PushSubscriptionRecord): { url: URL; origin: string; p256dh: Buffer; auth: Buffer } {
    let p = this.parsed.get(rec);
    if (!p) {
      const url = new URL(rec.endpoint);
      p = { url, origin: url.origin, p256dh: Buffer.from(rec.p256dh, 'base64url'), auth: Buffer.from(rec.auth, 'base64url') };
      this.parsed.set(rec, p);
    }
    return p;
  }

  /** Whether this node sends Web Push now (alone: always; in a cluster: while it holds the lease). */
  get sending(): boolean {
    return this.active;
  }

  get publicKey(): string {
    return this.vapid.keys.publicKey;
  }

  /**
   * A subscription was registered (or changed) here: the sending node attaches it to its hub (this
   * one, or the lease holder told through the cluster, which catches up from this node's head).
   */
  async attach(rec: PushSubscriptionRecord, since = 'now'): Promise<void> {
    if (this.ctx.cluster.clustered) this.ctx.cluster.publish(SUB_EVENT, { id: rec.id, since: since === 'now' ? this.ctx.hub.headCursor() : since });
    if (this.active) await this.attachHere(rec, since);
  }

  /** Attaches a subscription to this node's hub (replacing an earlier attachment of the same id). */
  private async attachHere(rec: PushSubscriptionRecord, since = 'now'): Promise<void> {
    const old = this.attached.get(rec.id);
    if (old) this.ctx.hub.unsubscribe(old);
    const sub = new PushHubSubscriber(rec, this);
    this.attached.set(rec.id, sub);
    try {
      const plan = this.ctx.hub.checkSubscribe(sub.principal, rec.filters, since);
      await this.ctx.hub.subscribe(sub, plan.gap ? this.ctx.hub.checkSubscribe(sub.principal, rec.filters, 'now') : plan);
    } catch (e) {
      this.attached.delete(rec.id);
      this.ctx.log.warn({ err: e, subscription: rec.id }, 'web push subscription could not be attached');
    }
  }

  /** Removes a subscription everywhere: hub, memory, records, queue (and other nodes' mirrors). */
  async remove(id: string, announce = true): Promise<void> {
    const sub = this.attached.get(id);
    if (sub) {
      this.attached.delete(id);
      this.ctx.hub.unsubscribe(sub);
    }
    await this.queue.dropGroup(id, [this.registry.forget(id)]);
    if (announce && this.ctx.cluster.clustered) this.ctx.cluster.publish(SUB_EVENT, { id });
  }

  /** The hub ended an attachment (shutdown, or it fell behind during a replay). */
  detached(sub: PushHubSubscriber, reason: OmnipushError): void {
    if (this.attached.get(sub.rec.id) !== sub || this.closing || !this.active || reason.code === 'shutting_down') return;
    this.attached.delete(sub.rec.id);
    this.ctx.log.warn({ subscription: sub.rec.id, reason: reason.message }, 'web push subscription detached; re-attaching live');
    void this.attachHere(sub.rec);
  }

  /** Called by the hub, in seq order per subscription; must not throw. */
  offer(sub: PushHubSubscriber, d: Delivery): void {
    const m = d.message;
    this.head.advance(m);
    const rec = this.registry.get(sub.rec.id) ?? sub.rec;
    // a message asking its recipient for a receipt reaches the recipient's browsers only as the
    // receipt's fallback (pushFallback), if nobody acknowledged it in time
    if (m.properties !== undefined && receiptRecipient(m) === rec.principal.id) {
      this.metrics.count('-', 'skipped_receipt');
      return this.queue.touch();
    }
    if (rec.failing) {
      this.metrics.count('-', 'skipped_failing');
      return this.queue.touch();
    }
    if (rec.mode === 'offline' && this.ctx.hub.hasLiveSubscriber(rec.principal.id, m.topic, TRANSPORT)) {
      this.metrics.count('-', 'skipped_online');
      return this.queue.touch();
    }
    this.queue.add(this.entryFor(rec, m, d.encoded(this.jobFormat), Date.now()));
  }

  /** The queue entry that pushes `m` to `rec`. */
  private entryFor(rec: PushSubscriptionRecord, m: StoredMessage, job: PushJob, now: number): QueueEntry {
    return {
      key: entryKey(rec.id, m.seq),
      sub: rec.id,
      origin: this.parse(rec).origin,
      cursor: m.cursor,
      job,
      // the message's own expiry to the ms when it has one (its TTL header is rounded to seconds)
      giveUpAt: m.expiresAt ?? now + job.ttl * 1000,
      attempts: 0,
      notBefore: 0,
    };
  }

  /**
   * A receipt's fallback: queues `m` for every registration of `principalId` whose filters match its
   * topic and whose grants let it receive it, written in one transaction with `extra(n)` (the
   * receipt's state), so a crash never leaves the push without the state or the state without the
   * push. Resolves with the number of registrations it went to (0: none, or `extra` said no by
   * answering null; nothing is written then).
   */
  async pushFallback(m: StoredMessage, principalId: string, extra: (registrations: number) => RecordChange[] | null): Promise<number> {
    const entries: QueueEntry[] = [];
    const now = Date.now();
    let job: PushJob | undefined;
    for (const rec of this.registry.ofPrincipal(principalId)) {
      if (rec.failing || !rec.filters.some((f) => filterMatches(f, m.topic))) continue;
      if (!canReceive({ id: rec.principal.id, kind: rec.principal.kind, grants: rec.principal.grants }, m.topic)) continue;
      job ??= pushJobFor(m, this.ctx.config.webpush.defaultTtl, now);
      entries.push(this.entryFor(rec, m, job, now));
    }
    if (entries.length === 0) return 0;
    const changes = extra(entries.length);
    if (changes === null) return 0;
    await this.queue.addWith(entries, changes);
    this.metrics.count('-', 'receipt_fallback');
    return entries.length;
  }

  private async attempt(e: QueueEntry): Promise<Verdict> {
    const rec = this.registry.get(e.sub);
    if (!rec) return { done: true };
    const origin = e.origin;
    if (rec.failing) {
      this.metrics.count(origin, 'skipped_failing');
      return { done: true };
    }
    const now = Date.now();
    if (now >= e.giveUpAt && e.attempts > 0) {
      this.metrics.count(origin, 'expired');
      this.gaveUp(e, 'expired');
      return { done: true };
    }
    const small = e.withoutData || e.job.full === null;
    const plaintext = Buffer.from(small ? e.job.small : e.job.full!);
    let body: Buffer;
    try {
      body = encryptWebPush(plaintext, this.parse(rec).p256dh, this.parse(rec).auth);
    } catch (err) {
      this.ctx.log.warn({ err, subscription: rec.id }, 'web push encryption failed; dropping the delivery');
      this.metrics.count(origin, 'rejected');
      return { done: true };
    }
    const t0 = performance.now();
    const res = await this.sender.send({
      endpoint: this.parse(rec).url,
      body,
      ttl: Math.max(0, Math.ceil((e.giveUpAt - now) / 1000)),
      urgency: e.job.urgency,
      replaceKey: e.job.replaceKey,
    });
    this.metrics.observeSend(origin, (performance.now() - t0) / 1000);
    const s = res.status;
    const log = { subscription: rec.id, origin, cursor: e.cursor, status: s, detail: res.detail };
    if (s >= 200 && s < 300) {
      this.metrics.count(origin, small ? 'delivered_without_data' : 'delivered');
      return { done: true };
    }
    if (s === 404 || s === 410) {
      // RFC 8030 section 7.3: the subscription expired or was unsubscribed; it will never work again
      this.metrics.count(origin, 'gone');
      this.ctx.log.info(log, 'push subscription gone; removed');
      await this.remove(rec.id);
      this.onGone?.(rec);
      return { done: true };
    }
    if (s === 413 && !small) {
      this.metrics.count(origin, 'too_large');
      e.withoutData = true;
      return { done: false, delayMs: 0 };
    }
    if (s === 401 || s === 403) {
      this.metrics.count(origin, 'unauthorized');
      this.ctx.log.warn(log, 'push service refused our VAPID credentials; subscription marked failing until re-registered');
      const failing = { ...rec, failing: { status: s, reason: res.detail ?? '', at: Date.now() } };
      await this.registry.put(failing);
      if (this.ctx.cluster.clustered) this.ctx.cluster.publish(SUB_EVENT, { id: rec.id });
      return { done: true };
    }
    if (s === 0 || s === 429 || s >= 500) {
      const delayMs = retryDelay(e.attempts, this.ctx.config.webpush.retryMinDelay, this.ctx.config.webpush.retryMaxDelay, res.retryAfterMs);
      if (Date.now() + delayMs >= e.giveUpAt) {
        this.metrics.count(origin, 'expired');
        this.ctx.log.info(log, 'web push given up: TTL over before the next retry');
        this.gaveUp(e, `expired after status ${s}`);
        return { done: true };
      }
      this.metrics.count(origin, 'retry');
      return { done: false, delayMs };
    }
    // 400 and other client errors: this message is wrong for this push service, the subscription may be fine
    this.metrics.count(origin, 'rejected');
    this.ctx.log.warn(log, 'push service rejected a message');
    this.gaveUp(e, `rejected with status ${s}`);
    return { done: true };
  }

  /** Keeps the last {@link GIVEN_UP_KEPT} deliveries this node gave up on, for the server API. */
  private gaveUp(e: QueueEntry, reason: string): void {
    this.givenUp.push({ subscription: e.sub, cursor: e.cursor, attempts: e.attempts, reason, at: Date.now() });
    if (this.givenUp.length > GIVEN_UP_KEPT) this.givenUp.shift();
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.lease.stop();
    await this.activation;
    for (const sub of this.attached.values()) this.ctx.hub.unsubscribe(sub);
    this.attached.clear();
    this.active = false;
    await this.queue.close();
    // the queue is written: the next sender takes it over at its next heartbeat, not after expiry
    await this.lease.release();
    await this.sender.close();
  }
}
