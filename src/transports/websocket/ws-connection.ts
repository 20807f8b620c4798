import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Delivery } from '../../core/encoded.js';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { GapInfo, HubSubscriber } from '../../core/hub.js';
import { SocketWriter, type SocketWriterOwner } from '../../wire/socket-writer.js';
import type { TransportContext } from '../context.js';
import { textFrame, WS_MESSAGE_FRAME, WS_MESSAGE_TEXT } from './ws-frame.js';
import { parseClientMessage, requestIdOf, type ClientMessage, type RequestId } from './ws-protocol.js';

/** Close codes of docs/websocket.md. */
export const CLOSE = { normal: 1000, goingAway: 1001, credentials: 4001, slowConsumer: 4008 } as const;

/** One subscription of a socket: a hub subscriber that writes into the socket's queue. */
class WsSubscription implements HubSubscriber {
  readonly transport = 'websocket';
  constructor(
    readonly id: string,
    readonly principal: Principal,
    private readonly conn: WsConnection,
  ) {}

  deliver(d: Delivery): void {
    this.conn.deliver(d);
  }

  gap(info: GapInfo): void {
    this.conn.send({ type: 'gap', sub: this.id, ...info });
  }

  close(reason: OmnipushError): void {
    this.conn.closeFor(reason);
  }

  backpressure(): Promise<void> | null {
    return this.conn.backpressure();
  }
}

/** Where a socket finds its connection: listeners are shared functions, not closures per socket. */
const CONN = Symbol('omnipush.connection');
type TaggedSocket = WebSocket & { [CONN]: WsConnection };

function onWsMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  (this as TaggedSocket)[CONN].onFrame(data, isBinary);
}

function onWsPong(this: WebSocket): void {
  (this as TaggedSocket)[CONN].alive = true;
}

/**
 * One WebSocket: its principal, its subscriptions, and one outgoing queue. Every frame we send
 * (messages, replies) goes through that queue in order; shared message frames are written as-is
 * when permessage-deflate is off, else `ws` frames (and compresses) each send.
 */
export class WsConnection implements SocketWriterOwner {
  private readonly subs = new Map<string, WsSubscription>();
  private nextSub = 1;
  private readonly writer: SocketWriter | null;
  private closed = false;
  /** Answered the last ping (liveness sweep). */
  alive = true;
  /** When set: the socket must authenticate by then (ms). */
  authDeadline: number | undefined;

  constructor(
    private readonly ws: WebSocket,
    socket: Socket,
    public principal: Principal,
    private readonly ctx: TransportContext,
    deflate: boolean,
    /** The door that holds this connection in its sweep slice `slice`. */
    readonly owner: { forget(conn: WsConnection): void },
    readonly slice: number,
  ) {
    this.writer = deflate ? null : new SocketWriter(socket, ctx.config.limits.maxQueueBytes, this);
    (ws as TaggedSocket)[CONN] = this;
    ws.on('message', onWsMessage);
    ws.on('pong', onWsPong);
  }

  /** The connection this socket belongs to (set by the constructor). */
  static of(ws: WebSocket): WsConnection {
    return (ws as TaggedSocket)[CONN];
  }

  overflowed(): void {
    this.ctx.metrics.slowConsumerCloses.inc({ transport: 'websocket' });
    this.close(CLOSE.slowConsumer, 'slow consumer: resume from your last cursor');
  }

  onFrame(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.send({ type: 'error', code: 'invalid_request', message: 'binary frames are not part of the protocol' });
    void this.onText(data.toString('utf8'));
  }

  get subscriptionCount(): number {
    return this.subs.size;
  }

  deliver(d: Delivery): void {
    if (this.closed) return;
    if (this.writer) {
      if (this.writer.write(d.encoded(WS_MESSAGE_FRAME))) this.ctx.metrics.deliveryCounts.websocket++;
    } else {
      this.ws.send(d.encoded(WS_MESSAGE_TEXT));
      this.ctx.metrics.deliveryCounts.websocket++;
    }
  }

  /** Sends a control/reply message in order with deliveries. */
  send(msg: Record<string, unknown>): void {
    if (this.closed) return;
    const text = JSON.stringify(msg);
    if (this.writer) this.writer.write(textFrame(Buffer.from(text)));
    else this.ws.send(text);
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
    }
  }

  private async handle(msg: ClientMessage): Promise<void> {
    const { hub } = this.ctx;
    if (msg.type === 'ping') return this.reply(msg.id, { type: 'pong' });
    if (msg.type === 'auth') {
      this.principal = await this.ctx.authenticateToken(msg.token);
      this.authDeadline = undefined;
      return this.reply(msg.id, { type: 'ok' });
    }
    if (this.authDeadline !== undefined) throw new OmnipushError('unauthorized', 'send an auth message first');
    if (msg.type === 'publish') {
      if (msg.options && this.ctx.publishWith) {
        const r = await this.ctx.publishWith.publish(this.principal, msg.request, msg.options);
        // `id` is the request's: the scheduled publish's id goes in `delayed`
        if (r.cursor === null) return this.reply(msg.id, { type: 'ack', cursor: null, delayed: r.id, due: new Date(r.due).toISOString(), ...(r.repeated ? { repeated: true } : {}) });
        return this.reply(msg.id, { type: 'ack', cursor: r.cursor, ...(r.repeated ? { repeated: true } : {}) });
      }
      const m = await hub.publish(this.principal, msg.request);
      return this.reply(msg.id, { type: 'ack', cursor: m.cursor });
    }
    if (msg.type === 'subscribe') {
      const plan = hub.checkSubscribe(this.principal, msg.topics, msg.since);
      const sub = new WsSubscription(`s${this.nextSub++}`, this.principal, this);
      this.subs.set(sub.id, sub);
      // the reply goes first: the replay and live messages queue behind it
      this.reply(msg.id, { type: 'subscribed', sub: sub.id, topics: plan.filters });
      try {
        await hub.subscribe(sub, plan);
      } catch (e) {
        this.subs.delete(sub.id);
        hub.unsubscribe(sub);
        throw e;
      }
      return;
    }
    const sub = this.subs.get(msg.sub);
    if (!sub) throw new OmnipushError('not_found', `no subscription ${JSON.stringify(msg.sub)} on this socket`);
    this.subs.delete(msg.sub);
    hub.unsubscribe(sub);
    this.reply(msg.id, { type: 'unsubscribed', sub: msg.sub });
  }

  /** The sweep's turn: expiry, pending authentication, liveness. */
  sweep(now: number): void {
    if (this.closed) return;
    if (this.authDeadline !== undefined && now >= this.authDeadline) return this.close(CLOSE.credentials, 'no credentials in time');
    if (this.principal.expiresAt !== undefined && this.principal.expiresAt <= now) return this.close(CLOSE.credentials, 'credentials expired');
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  /** The hub ended a subscription (shutdown, slow replay): the socket goes with it. */
  closeFor(reason: OmnipushError): void {
    if (reason.code === 'shutting_down') this.close(CLOSE.goingAway, 'server shutting down');
    else if (reason.code === 'slow_consumer') this.close(CLOSE.slowConsumer, 'slow consumer: resume from your last cursor');
    else this.close(1011, reason.message.slice(0, 120));
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
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
    this.writer?.close(false);
    this.dropSubscriptions();
  }

  private dropSubscriptions(): void {
    for (const s of this.subs.values()) this.ctx.hub.unsubscribe(s);
    this.subs.clear();
  }
}
