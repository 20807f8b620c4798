import type { ConnectionInfo, Door } from '../../core/connections.js';
import type { Delivery } from '../../core/encoded.js';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { SocketWriter, SocketWriterOwner } from '../../wire/socket-writer.js';
import type { TransportContext } from '../context.js';
import { expiryDeadline, type Deadline } from '../deadline.js';
import type { PreAuthEnd } from '../pre-auth-pool.js';
import { WS_MESSAGE_TEXT } from './ws-frame.js';
import type { PresenceWatcher } from '../../core/presence.js';
import { presenceInfoOf } from '../../core/presence-info.js';
import { parseClientMessage, requestIdOf, type ClientMessage, type RequestId } from './ws-protocol.js';
import { WsSubscriptions } from './ws-subscriptions.js';
import { WsConnectionState } from './ws-connection-state.js';
import { NO_TOPICS, WsSubscription } from './ws-subscription.js';
import type { DoorSocketOwner } from '../../wire/ws-plain-socket.js';
import type { DoorWire } from './ws-socket.js';

/** Close codes of docs/websocket.md. */
export const CLOSE = { normal: 1000, goingAway: 1001, policy: 1008, internal: 1011, tryAgainLater: 1013, credentials: 4001, slowConsumer: 4008, disconnected: 4009 } as const;

/** The close code that says why a connection is ended for `reason`. */
export function closeCodeFor(reason: OmnipushError): number {
  switch (reason.code) {
    case 'shutting_down':
      return CLOSE.goingAway;
    case 'slow_consumer':
      return CLOSE.slowConsumer;
    case 'unauthorized':
      return CLOSE.credentials;
    case 'forbidden':
    case 'quota_exceeded':
    case 'rate_limited':
      return CLOSE.policy;
    case 'disconnected':
      return CLOSE.disconnected;
    default:
      return CLOSE.internal;
  }
}

/** Subscription ids a socket is likely to use, made once rather than per socket. */
const SUB_IDS = Array.from({ length: 16 }, (_, i) => `s${i + 1}`);

/**
 * One WebSocket: its principal, its subscriptions, and one outgoing queue. Every frame we send
 * (messages, replies) goes through that queue in order; shared message frames are written as-is
 * when permessage-deflate is off, else `ws` frames (and compresses) each send.
 */
export class WsConnection extends WsConnectionState implements SocketWriterOwner, PresenceWatcher, ConnectionInfo, DoorSocketOwner {
  private readonly writer: SocketWriter | null;
  private readonly ctx: TransportContext;
  private readonly subs = new WsSubscriptions<WsSubscription>();
  private nextSub = 1;
  private expiry: Deadline | undefined;
  /** Its id in the connection registry ('' until it first registers; kept after it leaves, for observers that read it late). */
  id = '';
  /** When it entered the registry (ms since the epoch). */
  since = 0;
  presenceState: unknown = undefined;

  constructor(
    private readonly ws: DoorWire,
    /** The socket's own queue (null on `ws` sockets, which frame and compress each send). */
    writer: SocketWriter | null,
    public principal: Principal,
    ctx: TransportContext,
    /** The door that holds this connection in its sweep slice `slice`. */
    readonly owner: { forget(conn: WsConnection): void },
    readonly slice: number,
    /** The client's address (through trusted proxies). */
    readonly address: string,
  ) {
    super();
    this.writer = writer;
    this.ctx = ctx;
    ws.attach(this);
    this.expiry = expiryDeadline(principal.expiresAt, () => this.end(CLOSE.credentials, 'credentials expired'));
  }

  /** Its pre-auth place ended: no `auth` in time (4001), or a newcomer needed the place (1013). */
  authWindowEnded(why: PreAuthEnd): void {
    this.authPlace = null;
    if (why === 'timeout') this.end(CLOSE.credentials, 'no credentials in time');
    else this.end(CLOSE.tryAgainLater, 'too many unauthenticated connections; try again later');
  }

  get door(): Door {
    return 'websocket';
  }

  /**
   * Enters the connection registry as a connection of `p` (at the upgrade, or at the first `auth`
   * of a socket that came without credentials), or moves there under renewed credentials.
   */
  register(p: Principal = this.principal): void {
    const { registry } = this.ctx;
    // the registry files a connection under its principal: it must see the old one to move it
    if (this.registered) return registry.updatePrincipal(this, p);
    this.principal = p;
    this.id = registry.nextId('websocket');
    this.since = Date.now();
    this.registered = true;
    registry.add(this);
  }

  /** The id the client is told (in `ok` and `subscribed`) once the socket is a connection of a principal. */
  get connectionId(): string | undefined {
    return this.registered ? this.ctx.registry.connectionId(this.id, this.clientId) : this.clientId;
  }


  /** Its publishes name it as their sender only while one of its subscriptions asked for no echo. */
  private get wantsNoEcho(): boolean {
    for (const s of this.subs.values()) if (s.noEcho) return true;
    return false;
  }

  subscriptionCount(): number {
    let n = 0;
    for (const s of this.subs.values()) n += s.filters.length;
    return n;
  }

  /** Filters of every subscription of this socket. */
  subscriptions(): string[] {
    const out: string[] = [];
    for (const s of this.subs.values()) out.push(...s.filters);
    return out;
  }

  /**
   * Drops the subscriptions that hold `filter` (a subscription is one request's filter list, so it
   * goes whole) and tells the client; returns how many went.
   */
  unsubscribe(filter: string): number {
    let n = 0;
    for (const sub of this.subs.values()) {
      if (!sub.filters.includes(filter)) continue;
      this.subs.delete(sub.id);
      this.ctx.hub.unsubscribe(sub);
      this.unwatch(sub);
      this.send({ type: 'unsubscribed', sub: sub.id });
      n++;
    }
    if (n && this.registered) this.ctx.registry.subscriptionsChanged(this);
    return n;
  }

  onPong(): void {
    this.alive = true;
  }

  onSocketClosed(): void {
    this.owner.forget(this);
  }

  onProtocolError(code: number, reason: string): void {
    this.end(code, reason);
  }

  overflowed(): void {
    this.ctx.metrics.slowConsumerCloses.inc({ transport: 'websocket' });
    this.end(CLOSE.slowConsumer, 'slow consumer: resume from your last cursor');
  }

  onFrame(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.send({ type: 'error', code: 'invalid_request', message: 'binary frames are not part of the protocol' });
    void this.onText(data.toString('utf8'));
  }

  /**
   * A delivery on a `ws` socket (permessage-deflate on), which frames and compresses each send. On
   * the door's own sockets a subscription writes the shared frame into the socket's queue itself.
   */
  deliverThroughWs(d: Delivery): void {
    if (this.closed) return;
    this.ws.send(d.encoded(WS_MESSAGE_TEXT));
    this.ctx.metrics.deliveryCounts.websocket++;
  }

  presenceEvent(_topic: string, type: 'join' | 'leave', json: string): void {
    if (this.closed) return;
    // the shared `{"topic",...}` becomes `{"type":"join","topic",...}` without parsing it again
    this.ws.send(`{"type":"${type}",${json.slice(1)}`);
  }

  private watch(sub: WsSubscription, topics: readonly string[]): void {
    const presence = this.ctx.presence!;
    const watched = (this.more().watched ??= new Map());
    for (const t of topics) {
      const n = watched.get(t) ?? 0;
      if (n === 0) presence.watch(t, this);
      watched.set(t, n + 1);
    }
    sub.watching = topics;
  }

  private unwatch(sub: WsSubscription): void {
    const watched = this.rare?.watched;
    if (!watched || sub.watching.length === 0) return;
    for (const t of sub.watching) {
      const n = (watched.get(t) ?? 1) - 1;
      if (n > 0) watched.set(t, n);
      else {
        watched.delete(t);
        this.ctx.presence?.unwatch(t, this);
      }
    }
    sub.watching = NO_TOPICS;
  }

  /** Sends a control/reply message in order with deliveries. */
  send(msg: Record<string, unknown>): void {
    if (this.closed) return;
    this.ws.send(JSON.stringify(msg));
  }

  backpressure(): Promise<void> | null {
    return this.writer?.waitForRoom() ?? null;
  }

  private reply(id: RequestId | undefined, msg: Record<string, unknown>): void {
    this.send(id === undefined ? msg : { ...msg, id });
  }

  private async onText(text: string): Promise<void> {
    let msg: ClientMessage | undefined;
    try {
      msg = parseClientMessage(text);
      await this.handle(msg);
    } catch (e) {
      const err = e instanceof OmnipushError ? e : new OmnipushError('internal', 'internal error');
      if (!(e instanceof OmnipushError)) this.ctx.log.error({ err: e }, 'websocket request failed');
      let id = msg?.id;
      if (id === undefined) {
        try {
          id = requestIdOf(JSON.parse(text));
        } catch {
          /* not JSON */
        }
      }
      this.reply(id, { type: 'error', code: err.code, message: err.message, ...(err.details ?? {}) });
      // acks are sent by the SDK on its own, which cannot slow down: a refused one only loses that ack, never the connection
      if ((err.code === 'rate_limited' || err.code === 'quota_exceeded') && msg?.type !== 'ack') this.refused(err);
    }
  }

  /**
   * A request was refused for a quota. A client that keeps going — `quotas.wsRefusalsBeforeClose`
   * refusals within `quotas.refusalWindow` seconds — is closed with 1008 rather than answered for ever.
   */
  private refused(err: OmnipushError): void {
    const now = Date.now();
    const q = this.ctx.config.quotas;
    const r = this.more();
    if (now - r.refusalsSince > q.refusalWindow * 1000) {
      r.refusals = 0;
      r.refusalsSince = now;
    }
    if (++r.refusals >= q.wsRefusalsBeforeClose) this.end(CLOSE.policy, `${err.code}: refused ${r.refusals} times; slow down`);
  }

  private async handle(msg: ClientMessage): Promise<void> {
    const { hub } = this.ctx;
    if (msg.type === 'ping') return this.reply(msg.id, { type: 'pong' });
    if (msg.type === 'auth') return this.authenticate(msg.token, msg.id);
    if (this.authPlace) throw new OmnipushError('unauthorized', 'send an auth message first');
    if (msg.type === 'ack') {
      const receipts = this.ctx.receipts;
      if (!receipts) throw new OmnipushError('invalid_request', 'this server takes no receipts');
      const out = await receipts.ack(this.principal, msg.cursors, 'websocket', msg.seen);
      // the SDK acks without an id: nothing to answer then
      if (msg.id !== undefined) this.reply(msg.id, { type: 'acked', ...out });
      return;
    }
    if (msg.type === 'publish') {
      if (this.wantsNoEcho) msg.request.sender = this.connectionId;
      const refusal = this.ctx.quotas.checkPublish(this.principal, this.address, 1, msg.request.payload.length);
      if (refusal) throw refusal;
      if (this.ctx.ruleHooks) {
        msg.request = await this.ctx.ruleHooks.publish(this.principal, msg.request, 'websocket');
        if (this.closed) return;
      }
      if (msg.options && this.ctx.publishWith) {
        const r = await this.ctx.publishWith.publish(this.principal, msg.request, msg.options);
        // `id` is the request's: the scheduled publish's id goes in `delayed`
        if (r.cursor === null) return this.reply(msg.id, { type: 'ack', cursor: null, delayed: r.id, due: new Date(r.due).toISOString(), ...(r.repeated ? { repeated: true } : {}) });
        return this.reply(msg.id, { type: 'ack', cursor: r.cursor, ...(r.repeated ? { repeated: true } : {}) });
      }
      const m = await hub.publish(this.principal, msg.request);
      this.ctx.metrics.publishCounts.websocket++;
      this.ctx.metrics.publishBytes.websocket += m.payload.length;
      return this.reply(msg.id, { type: 'ack', cursor: m.cursor });
    }
    if (msg.type === 'presence' || msg.type === 'presence_stats') {
      const { presence } = this.ctx;
      if (!presence) throw new OmnipushError('not_found', `no presence rule covers ${JSON.stringify(msg.topic)} (presence.rules is empty)`);
      if (msg.type === 'presence_stats') return this.reply(msg.id, { type: 'presence_stats', ...(await presence.stats(this.principal, msg.topic)) });
      return this.reply(msg.id, { type: 'presence', ...(await presence.page(this.principal, msg.topic, msg.cursor, msg.limit)) });
    }
    if (msg.type === 'subscribe') {
      const checkedFor = this.principal;
      const plan = hub.checkSubscribe(checkedFor, msg.topics, msg.since);
      const watching = msg.presence ? this.presenceTopics(plan.filters) : NO_TOPICS;
      const info = msg.info === undefined ? undefined : presenceInfoOf(msg.info, this.ctx.config.presence.maxInfoBytes, 'info', 'invalid_request');
      if (this.ctx.ruleHooks) {
        await this.ctx.ruleHooks.checkSubscribe(checkedFor, plan.filters, 'websocket');
        if (this.closed) return;
      }
      const { quotas } = this.ctx;
      let elsewhere = 0;
      if (quotas.subscriptionsShared(this.principal)) {
        elsewhere = await quotas.subscriptionsElsewhere(this.principal);
        if (this.closed) return;
      }
      quotas.checkSubscriptions(this.principal, this.subscriptionCount(), plan.filters.length, this.registered, elsewhere);
      const n = this.nextSub++;
      const sub = new WsSubscription(SUB_IDS[n - 1] ?? `s${n}`, this, plan.filters, msg.noEcho === true, this.writer, this.ctx.metrics.deliveryCounts);
      this.subs.set(sub.id, sub);
      if (info) this.presenceInfo = info;
      // events before the reply: a snapshot asked after `subscribed` is followed by every later event
      if (watching.length) this.watch(sub, watching);
      // the reply goes first: the replay and live messages queue behind it
      this.reply(msg.id, { type: 'subscribed', sub: sub.id, topics: plan.filters, connection: this.connectionId });
      if (this.registered) this.ctx.registry.subscriptionsChanged(this);
      try {
        await hub.subscribe(sub, plan);
      } catch (e) {
        this.subs.delete(sub.id);
        hub.unsubscribe(sub);
        this.unwatch(sub);
        throw e;
      }
      // credentials renewed while the subscription was being set up: the plan was checked before
      if (this.principal !== checkedFor) this.regrant(sub);
      return;
    }
    const sub = this.subs.get(msg.sub);
    if (!sub) throw new OmnipushError('not_found', `no subscription ${JSON.stringify(msg.sub)} on this socket`);
    this.subs.delete(msg.sub);
    hub.unsubscribe(sub);
    this.unwatch(sub);
    this.reply(msg.id, { type: 'unsubscribed', sub: msg.sub });
    if (this.registered) this.ctx.registry.subscriptionsChanged(this);
  }

  /** The topic names of a subscription that asked for join/leave events, each checked as a presence read. */
  private presenceTopics(filters: string[]): string[] {
    const { presence } = this.ctx;
    if (!presence) throw new OmnipushError('invalid_request', 'presence: this server has no presence rules');
    return presence.eventTopics(this.principal, filters);
  }

  /**
   * `auth`: the first one authenticates a socket that came without credentials; later ones renew
   * the same principal's credentials (new grants, new expiry). Another principal is refused and the
   * socket closed (1008): a socket keeps one identity for its life. An anonymous socket may
   * authenticate once, as if it had come without credentials.
   */
  private async authenticate(token: string, id: RequestId | undefined): Promise<void> {
    const p = await this.ctx.authenticateToken(token);
    if (this.closed) return;
    const first = this.authPlace !== null || this.principal.kind === 'anonymous';
    if (!first && p.id !== this.principal.id) {
      this.reply(id, { type: 'error', code: 'forbidden', message: 'a socket keeps the identity it authenticated with; open another socket for another principal' });
      this.end(CLOSE.policy, 'credentials of another principal');
      return;
    }
    if (!this.registered || this.principal.id !== p.id) {
      // the socket becomes a connection of this principal now: its quotas apply (the address
      // quota counted it already if it was registered as anonymous)
      const elsewhere = await this.ctx.quotas.connectionsElsewhere(p);
      if (this.closed) return;
      try {
        if (this.registered) this.ctx.quotas.checkPrincipalConnections(p, elsewhere);
        else this.ctx.quotas.checkConnection(p, this.address, elsewhere);
      } catch (e) {
        if (e instanceof OmnipushError) this.close(e);
        throw e;
      }
    }
    if (this.authPlace) {
      this.authPlace.leave();
      this.authPlace = null;
      try {
        this.ctx.connections.acquire();
        this.budgeted = true;
      } catch (e) {
        this.reply(id, { type: 'error', code: (e as OmnipushError).code, message: (e as OmnipushError).message });
        this.end(CLOSE.tryAgainLater, 'connection limit reached; try again later');
        return;
      }
    }
    this.register(p);
    this.expiry?.cancel();
    this.expiry = expiryDeadline(p.expiresAt, () => this.end(CLOSE.credentials, 'credentials expired'));
    this.reply(id, { type: 'ok', connection: this.connectionId });
    for (const sub of [...this.subs.values()]) this.regrant(sub);
  }

  /** Narrowed grants apply at once: a filter no longer allowed goes, and the client is told. */
  private regrant(sub: WsSubscription): void {
    if (this.closed || !this.subs.has(sub.id)) return;
    const dropped = this.ctx.hub.regrant(sub);
    if (dropped.length === 0) return;
    this.send({ type: 'error', code: 'forbidden', sub: sub.id, topics: dropped, message: `renewed credentials no longer allow ${dropped.map((f) => JSON.stringify(f)).join(', ')}` });
    sub.filters = sub.filters.filter((f) => !dropped.includes(f));
    if (this.registered) this.ctx.registry.subscriptionsChanged(this);
    if (sub.filters.length === 0) {
      this.unwatch(sub);
      this.subs.delete(sub.id);
      this.send({ type: 'unsubscribed', sub: sub.id });
    }
  }

  /** The sweep's turn: liveness (deadlines have timers of their own). */
  sweep(): void {
    if (this.closed) return;
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  /** The hub ended a subscription (shutdown, slow replay), or the server ends the socket: the close code says why. */
  close(reason: OmnipushError): void {
    if (reason.code === 'shutting_down') this.end(CLOSE.goingAway, 'server shutting down');
    else if (reason.code === 'slow_consumer') this.end(CLOSE.slowConsumer, 'slow consumer: resume from your last cursor');
    else {
      // an error frame first: a close reason is cut at 123 bytes and some clients never show it
      if (reason.code !== 'internal') this.send({ type: 'error', code: reason.code, message: reason.message, ...(reason.details ?? {}) });
      // the close reason must fit in a control frame (123 bytes of UTF-8)
      this.end(closeCodeFor(reason), Buffer.from(reason.message).subarray(0, 120).toString());
    }
  }

  /** Ends the socket with `code` (docs/websocket.md) and `reason`. */
  end(code: number, reason: string): void {
    if (this.closed) return;
    this.expiry?.cancel();
    this.authPlace?.leave();
    this.unregister(`server closed ${code}: ${reason}`);
    this.writer?.close(code !== CLOSE.slowConsumer);
    this.closed = true;
    this.dropSubscriptions();
    this.ws.close(code, reason);
    // a peer that does not answer the close handshake is cut
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  /** The socket is gone: forget its subscriptions. */
  onClosed(): void {
    this.closed = true;
    this.expiry?.cancel();
    this.authPlace?.leave();
    this.authPlace = null;
    this.unregister('client closed');
    this.writer?.close(false);
    this.dropSubscriptions();
  }

  private unregister(reason: string): void {
    if (!this.registered) return;
    this.registered = false;
    this.ctx.registry.remove(this, reason);
  }

  private dropSubscriptions(): void {
    for (const s of this.subs.values()) {
      this.ctx.hub.unsubscribe(s);
      this.unwatch(s);
    }
    this.subs.clear();
  }
}
