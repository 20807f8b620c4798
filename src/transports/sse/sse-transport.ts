import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Delivery } from '../../core/encoded.js';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { GapInfo, HubSubscriber } from '../../core/hub.js';
import type { ConnectionInfo } from '../../core/connections.js';
import { SocketWriter, type SocketWriterOwner } from '../../wire/socket-writer.js';
import { sendError } from '../../wire/http-respond.js';
import { flagParam, topicParams } from '../../wire/http-request.js';
import { takeOverSocket } from '../../wire/http-takeover.js';
import type { TransportContext } from '../context.js';
import { expiryDeadline, type Deadline } from '../deadline.js';
import { SSE_JSON, SSE_RAW, sseEvent } from './sse-frame.js';
import type { PresenceWatcher } from '../../core/presence.js';
import { clientIdOf } from '../../core/presence-info.js';
import { BusySweep } from '../busy-sweep.js';

const HEARTBEAT = Buffer.from(':\n\n');

/** One EventSource stream, written straight to its socket. */
class SseConnection implements HubSubscriber, SocketWriterOwner, ConnectionInfo, PresenceWatcher {
  // the fields a delivery reads, first and side by side: one cache line at 10k+ streams
  readonly writer: SocketWriter;
  private readonly json: boolean;
  private readonly owner: SseTransport;
  readonly transport = 'sse';
  readonly door = 'sse';
  readonly id: string;
  readonly since = Date.now();
  presenceState: unknown = undefined;
  private ended = false;
  private readonly expiry: Deadline | undefined;
  /** Topics whose join/leave events it asked for (`presence=1`). */
  watching: string[] = [];

  constructor(
    public principal: Principal,
    private readonly socket: Socket,
    json: boolean,
    owner: SseTransport,
    private readonly filters: string[],
    readonly address: string,
    readonly noEcho: boolean,
    /** `client=`: a stable id of the client — one presence member across reconnects, and its connection id. */
    readonly clientId: string | undefined,
  ) {
    this.json = json;
    this.owner = owner;
    this.writer = new SocketWriter(socket, owner.ctx.config.limits.maxQueueBytes, this);
    this.expiry = expiryDeadline(principal.expiresAt, () => this.end(new OmnipushError('unauthorized', 'token expired')));
    this.id = owner.ctx.registry.nextId('sse');
  }

  /** Made when asked (a message naming a connection), not kept per stream. */
  get connectionId(): string {
    return this.owner.ctx.registry.connectionId(this.id, this.clientId);
  }

  subscriptions(): string[] {
    return [...this.filters];
  }

  subscriptionCount(): number {
    return this.filters.length;
  }

  overflowed(): void {
    this.owner.ctx.metrics.slowConsumerCloses.inc({ transport: 'sse' });
    this.owner.ctx.log.debug({ principal: this.principal.id }, 'sse subscriber closed: queue bound reached');
    this.end(null);
  }

  deliver(d: Delivery): void {
    if (this.writer.write(d.encoded(this.json ? SSE_JSON : SSE_RAW), d.alone)) this.owner.ctx.metrics.deliveryCounts.sse++;
  }

  backpressure(): Promise<void> | null {
    return this.writer.waitForRoom();
  }

  gap(info: GapInfo): void {
    this.writer.write(Buffer.from(sseEvent(JSON.stringify(info), undefined, 'gap')));
  }

  presenceEvent(_topic: string, type: 'join' | 'leave', json: string): void {
    this.writer.write(Buffer.from(sseEvent(json, undefined, type)));
  }

  private unwatch(): void {
    for (const t of this.watching) this.owner.ctx.presence?.unwatch(t, this);
    this.watching = [];
  }

  close(reason: OmnipushError): void {
    if (reason.code === 'slow_consumer') return this.end(null);
    this.end(reason);
  }

  heartbeat(now: number, intervalMs: number): void {
    if (now - this.writer.lastWriteAt >= intervalMs) this.writer.write(HEARTBEAT);
  }

  /**
   * Ends the stream. With a reason, a final `event: close` tells the client why before the
   * socket is ended; without one (slow consumer) the socket is dropped at once.
   */
  end(reason: OmnipushError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.expiry?.cancel();
    this.unwatch();
    this.owner.ctx.hub.unsubscribe(this);
    if (reason) {
      this.writer.write(Buffer.from(sseEvent(JSON.stringify({ code: reason.code, message: reason.message }), undefined, 'close')));
      this.writer.close(true);
      this.socket.end();
    } else {
      this.writer.close(false);
      this.socket.destroy();
    }
  }

  onSocketClosed(): void {
    this.ended = true;
    this.expiry?.cancel();
    this.unwatch();
    this.writer.close(false);
    this.owner.ctx.hub.unsubscribe(this);
  }
}

/**
 * The topics whose join/leave events a stream asked for with `presence=1`: its topic names (its
 * wildcard filters have no single member list), each checked as a presence read.
 */
function presenceTopics(ctx: TransportContext, principal: Principal, filters: string[], flag: string | null): string[] {
  if (flag === null || flag === '' || flag === '0' || flag === 'false') return [];
  if (!ctx.presence) throw new OmnipushError('invalid_request', 'presence=1: this server has no presence rules');
  return ctx.presence.eventTopics(principal, filters);
}

/**
 * `GET /v1/sse?topic=<filter>&topic=...` — Server-Sent Events. Resumes from `Last-Event-ID` or
 * `?since=`; `?format=json` sends JSON envelopes instead of the raw payload.
 */
export class SseTransport {
  private readonly conns = new Set<SseConnection>();
  private readonly sweep: BusySweep;
  private readonly heartbeatMs: number;

  constructor(readonly ctx: TransportContext) {
    this.heartbeatMs = ctx.config.sse.heartbeat * 1000;
    // one sweep for every stream: heartbeats for idle ones (credential expiry has a timer per stream)
    this.sweep = new BusySweep(() => this.tick(), Math.max(50, Math.min(this.heartbeatMs / 4, 1000)));
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  private tick(): void {
    const now = Date.now();
    for (const c of this.conns) c.heartbeat(now, this.heartbeatMs);
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { ctx } = this;
    const headers = ctx.commonHeaders(req);
    let acquired = false;
    try {
      if (ctx.draining()) {
        // An EventSource treats any non-200 answer as final; dropping the connection instead makes a
        // browser retry after `retry` ms (elsewhere or once we are back). Other clients get a 503.
        if (String(req.headers.accept ?? '').includes('text/event-stream')) {
          req.socket.destroy();
          return;
        }
        throw new OmnipushError('shutting_down', 'server is shutting down; retry shortly');
      }
      const principal = await ctx.authenticate(req, url);
      const lastEventId = req.headers['last-event-id'];
      const since = (typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : undefined) ?? url.searchParams.get('since') ?? undefined;
      const format = url.searchParams.get('format') ?? 'raw';
      const noEcho = flagParam(url, 'noEcho');
      if (format !== 'raw' && format !== 'json') throw new OmnipushError('invalid_request', 'format must be raw or json');
      const plan = ctx.hub.checkSubscribe(principal, topicParams(url), since);
      if (ctx.ruleHooks) await ctx.ruleHooks.checkSubscribe(principal, plan.filters, 'sse');
      const clientId = clientIdOf(url.searchParams.get('client'));
      const watching = presenceTopics(ctx, principal, plan.filters, url.searchParams.get('presence'));
      const address = ctx.addresses.of(req);
      const [conns, subs] = await Promise.all([ctx.quotas.connectionsElsewhere(principal), ctx.quotas.subscriptionsElsewhere(principal)]);
      // from here to the registration nothing awaits: no other connection can slip in between
      ctx.quotas.checkConnection(principal, address, conns);
      ctx.quotas.checkSubscriptions(principal, 0, plan.filters.length, false, subs);
      ctx.connections.acquire();
      acquired = true;

      const socket = req.socket;
      socket.setNoDelay(true);
      socket.setTimeout(0);
      let head = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache, no-store, no-transform\r\nX-Accel-Buffering: no\r\nConnection: close\r\n';
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      head += `\r\nretry: ${ctx.config.sse.retry}\n: ok\n\n`;
      const conn = new SseConnection(principal, socket, format === 'json', this, plan.filters, address, noEcho, clientId);
      // told to a client that asked about connections: the id to name as its publishes' sender, or for a backend to exclude
      if (noEcho || clientId !== undefined) head += sseEvent(JSON.stringify({ id: conn.connectionId }), undefined, 'connection');
      // The response is ours from here: the socket carries a close-delimited event stream.
      socket.write(head);
      takeOverSocket(req, res, socket);

      this.conns.add(conn);
      this.sweep.count(this.conns.size);
      // events first, then membership: a client that reads the list after `: ok` misses nothing
      for (const t of watching) ctx.presence!.watch(t, conn);
      conn.watching = watching;
      ctx.registry.add(conn);
      ctx.metrics.connections.inc({ transport: 'sse' });
      socket.once('close', () => {
        this.conns.delete(conn);
        this.sweep.count(this.conns.size);
        ctx.registry.remove(conn);
        ctx.metrics.connections.dec({ transport: 'sse' });
        ctx.connections.release();
        conn.onSocketClosed();
      });
      socket.on('error', () => socket.destroy());
      ctx.hub.subscribe(conn, plan).catch((e: unknown) => {
        ctx.log.warn({ err: e }, 'sse subscribe failed');
        conn.end(e instanceof OmnipushError ? e : new OmnipushError('internal', 'subscription failed'));
      });
    } catch (e) {
      if (acquired) ctx.connections.release();
      sendError(res, e, headers);
    }
  }

  /** Ends every stream (shutdown): the hub has already closed their subscriptions. */
  close(): void {
    this.sweep.close();
    for (const c of this.conns) c.end(new OmnipushError('shutting_down', 'server is shutting down'));
  }
}
