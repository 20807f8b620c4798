import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Delivery } from '../../core/encoded.js';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { GapInfo, HubSubscriber } from '../../core/hub.js';
import type { ConnectionInfo } from '../../core/connections.js';
import { JSON_MESSAGE } from '../../wire/json-message.js';
import { errorAnswer, sendError } from '../../wire/http-respond.js';
import { answerParked, parkExchange } from '../../wire/http-park.js';
import { flagParam, numberParam, topicParams } from '../../wire/http-request.js';
import type { TransportContext } from '../context.js';
import { Deadline } from '../deadline.js';
import { BusySweep } from '../busy-sweep.js';
import { clientIdOf } from '../../core/presence-info.js';

const OPEN = Buffer.from('{"messages":[');
const EXPIRED = new OmnipushError('unauthorized', 'token expired');
const COMMA = Buffer.from(',');

/** Bits of {@link HeldPoll.flags}: one small integer rather than a field (8 bytes) per boolean. */
const SCHEDULED = 1;
const DONE = 2;
/** The hub has replayed everything up to its head: then the head is a safe next cursor. */
const CAUGHT_UP = 4;
/** Its deadline is its token's expiry (answered 401), not its timeout. */
const EXPIRES = 8;
const NO_ECHO = 16;
/** Its connection is parked (out of node's HTTP machinery): it answers on the socket itself. */
const PARKED = 32;
/** Parked, and the request allows the connection to serve another one after the answer. */
const KEEP_ALIVE = 64;

/** What the HTTP door does for the long-poll door's answers. */
export interface PollHost {
  /** Told just before a response that node still holds is written (the door counts it when it finishes). */
  answering(res: ServerResponse): void;
  /** A parked poll was answered with `status`. */
  answered(status: number): void;
  /** node's keep-alive timeout (ms), or null when the server is closing (a parked connection then closes after its answer). */
  keepAliveMs(): number | null;
  /** Hands a parked connection back to the HTTP server, answered, for its next request. */
  resume(socket: Socket): void;
}

/**
 * One held poll — also what the connection registry counts as a long-poll connection: between
 * polls a client holds nothing on the server, so only a request being held is live.
 * It subscribes like any other subscriber (so replay and live delivery meet with
 * no gap) and answers as soon as it has something — after letting the current tick's messages in —
 * or when its limit or timeout is reached. It is its own deadline (its timeout, or its token's
 * expiry if that comes first), and every field it holds is paid for by each of many waiting polls.
 */
class HeldPoll extends Deadline implements HubSubscriber, ConnectionInfo {
  readonly id: string;
  readonly since = Date.now();
  presenceState: unknown = undefined;
  /** Encoded messages collected for the answer (made at the first one: most held polls wait with none). */
  private frames: Buffer[] | null = null;
  private lastCursor: string | undefined;
  private gapInfo: GapInfo | undefined;
  private flags: number;
  /** Where the client already was, until the replay is handed over (then the head is the next cursor). */
  private sinceCursor: string;
  /** The request's response while node holds it; its socket once parked. */
  private out: ServerResponse | Socket;
  /** The request's `Origin` (all the common response headers need) once parked: the request is gone then. */
  private origin: string | undefined = undefined;
  /** The socket's byte count when the request head was read (parking checks that nothing came after). */
  readAtHead = 0;

  constructor(
    public principal: Principal,
    res: ServerResponse,
    private readonly limit: number,
    private readonly filters: string[],
    readonly address: string,
    // the door itself rather than a closure: held polls are many and each should hold little
    readonly owner: LongPollTransport,
    /** `client=`: the id the client keeps across its polls — one presence member, and its connection id. */
    readonly clientId: string | undefined,
    noEcho: boolean,
    sinceCursor: string,
    /** When it answers anyway (Infinity: only once the replay is handed over), and whether that is its token's expiry. */
    at: number,
    expires: boolean,
  ) {
    super(at);
    this.flags = (noEcho ? NO_ECHO : 0) | (expires ? EXPIRES : 0);
    this.sinceCursor = sinceCursor;
    this.out = res;
    this.id = owner.ctx.registry.nextId('longpoll');
  }

  get transport(): string {
    return 'longpoll';
  }

  get door(): 'longpoll' {
    return 'longpoll';
  }

  get noEcho(): boolean {
    return (this.flags & NO_ECHO) !== 0;
  }

  /**
   * A long-poll client's connection outlives each poll: the id its first poll was told, passed back
   * on every later one. It only ever names this client's own deliveries (what to leave out of them),
   * so a client naming another's id takes nothing from anyone but itself.
   */
  get connectionId(): string {
    return this.owner.ctx.registry.connectionId(this.id, this.clientId);
  }

  subscriptions(): string[] {
    return [...this.filters];
  }

  subscriptionCount(): number {
    return this.filters.length;
  }

  override fire(): void {
    if (this.flags & EXPIRES) this.fail(EXPIRED);
    else this.finish();
  }

  deliver(d: Delivery): void {
    if (this.flags & DONE) return;
    (this.frames ??= []).push(d.encoded(JSON_MESSAGE));
    this.lastCursor = d.message.cursor;
    this.owner.ctx.metrics.deliveryCounts.longpoll++;
    if (this.frames!.length >= this.limit) this.finish();
    else this.soon();
  }

  gap(info: GapInfo): void {
    // Not an answer by itself: answered before the replay's first page (a networked store takes
    // a few ticks), it would carry the old cursor, and the client would poll into the same gap again.
    this.gapInfo = info;
  }

  get hasGap(): boolean {
    return this.gapInfo !== undefined;
  }

  /** The replay is handed over: from now on the hub's head is where the client goes on from. */
  caughtUp(): void {
    this.flags |= CAUGHT_UP;
    this.sinceCursor = '';
  }

  close(reason: OmnipushError): void {
    if (reason.code === 'shutting_down') this.finish();
    else this.fail(reason);
  }

  private soon(): void {
    if (this.flags & SCHEDULED) return;
    this.flags |= SCHEDULED;
    setImmediate(() => this.finish());
  }

  /** Answers with what is collected and the cursor to poll from next. */
  finish(): void {
    if (this.flags & DONE) return;
    this.flags |= DONE;
    const { ctx } = this.owner;
    ctx.hub.unsubscribe(this);
    // Complete up to the head only when every message up to it has been offered to us.
    const frames = this.frames ?? [];
    const full = frames.length >= this.limit;
    const caughtUp = (this.flags & CAUGHT_UP) !== 0;
    const cursor = !full && caughtUp ? ctx.hub.headCursor() : (this.lastCursor ?? this.sinceCursor);
    const parts: Buffer[] = [OPEN];
    frames.forEach((f, i) => {
      if (i) parts.push(COMMA);
      parts.push(f);
    });
    let tail = `],"cursor":${JSON.stringify(cursor)},"more":${full || !caughtUp},"connection":${JSON.stringify(this.connectionId)}`;
    if (this.gapInfo) tail += `,"gap":${JSON.stringify(this.gapInfo)}`;
    parts.push(Buffer.from(tail + '}'));
    this.answer(200, this.headers(), Buffer.concat(parts));
    this.owner.pollDone(this);
  }

  fail(e: unknown): void {
    if (this.flags & DONE) return;
    this.flags |= DONE;
    this.owner.ctx.hub.unsubscribe(this);
    const a = errorAnswer(e, this.headers());
    this.answer(a.status, a.headers, Buffer.from(JSON.stringify(a.body)));
    this.owner.pollDone(this);
  }

  /** Writes a JSON answer, on node's response or, parked, on the socket (then handed back to the HTTP server). */
  private answer(status: number, headers: Record<string, string>, body: Buffer): void {
    const all = { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length, 'Cache-Control': 'no-store' };
    const { host } = this.owner;
    if (this.flags & PARKED) {
      const socket = this.out as Socket;
      const keepAlive = this.flags & KEEP_ALIVE ? host.keepAliveMs() : null;
      const again = answerParked(socket, status, all, body, keepAlive, parkedClosed);
      host.answered(status);
      if (again) host.resume(socket);
      return;
    }
    const res = this.out as ServerResponse;
    if (res.destroyed) return;
    host.answering(res);
    if (res.headersSent) return void res.destroy();
    res.writeHead(status, all);
    res.end(body);
  }

  /** The common response headers, made when the answer goes out rather than held while the poll waits. */
  private headers(): Record<string, string> {
    const req = this.flags & PARKED ? ({ headers: this.origin === undefined ? {} : { origin: this.origin } } as IncomingMessage) : (this.out as ServerResponse).req;
    return this.owner.ctx.commonHeaders(req);
  }

  /**
   * Takes the connection out of node's HTTP machinery while the poll waits (see parkExchange), unless
   * its answer is already on its way.
   */
  park(): void {
    if (this.flags & (DONE | SCHEDULED | PARKED)) return;
    const res = this.out as ServerResponse;
    const origin = res.req.headers.origin;
    const keepAlive = res.shouldKeepAlive;
    const socket = parkExchange(res.req, res, this.readAtHead, parkedClosed);
    if (!socket) return;
    (res as PollResponse)[POLL] = undefined;
    (socket as PollSocket)[POLL] = this;
    this.out = socket;
    this.origin = origin;
    this.flags |= PARKED | (keepAlive ? KEEP_ALIVE : 0);
  }

  abandon(): void {
    if (this.flags & DONE) return;
    this.flags |= DONE;
    this.owner.ctx.hub.unsubscribe(this);
    this.owner.pollDone(this);
  }
}

/** Where a response (or a parked socket) finds its held poll: the close listener is one function for every poll, not a closure each. */
const POLL = Symbol('omnipush.heldPoll');
type PollResponse = ServerResponse & { [POLL]?: HeldPoll };
type PollSocket = Socket & { [POLL]?: HeldPoll };

function responseClosed(this: PollResponse): void {
  this[POLL]?.abandon();
}

function parkedClosed(this: PollSocket): void {
  const poll = this[POLL];
  this[POLL] = undefined;
  poll?.abandon();
}

/**
 * `GET /v1/poll?topic=<filter>&since=<cursor>&timeout=<s>&limit=<n>` — answers at once when
 * messages after the cursor exist, else holds until one arrives or the timeout passes. Always
 * returns the cursor to pass next time, so a client that does loses nothing between polls.
 */
export class LongPollTransport {
  /** Held polls now; they themselves are found through the registry (a set of them cost an entry each). */
  private held = 0;
  /**
   * Held polls not parked yet, by when they began. Parking costs a connection set-up when the poll
   * answers: a poll answered within `longpoll.parkAfter` (a busy topic) stays with node, one that
   * waits longer (where memory is spent) is parked by a sweep.
   */
  private readonly unparked = new Set<HeldPoll>();
  /** One sweep for every waiting poll, as often as polls should be parked; it runs while some wait unparked. */
  private readonly parking: BusySweep;

  constructor(
    readonly ctx: TransportContext,
    readonly host: PollHost,
  ) {
    this.parking = new BusySweep(() => this.parkDue(), Math.max(100, ctx.config.longpoll.parkAfter * 500));
  }

  get connectionCount(): number {
    return this.held;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { ctx } = this;
    const readAtHead = req.socket.bytesRead;
    const headers = ctx.commonHeaders(req);
    try {
      if (ctx.draining()) throw new OmnipushError('shutting_down', 'server is shutting down; retry shortly');
      const principal = await ctx.authenticate(req, url);
      const cfg = ctx.config.longpoll;
      const timeout = numberParam(url, 'timeout', cfg.defaultTimeout, 0, cfg.maxTimeout);
      const limit = numberParam(url, 'limit', cfg.maxMessages, 1, cfg.maxMessages);
      const since = url.searchParams.get('since') ?? undefined;
      const noEcho = flagParam(url, 'noEcho');
      const plan = ctx.hub.checkSubscribe(principal, topicParams(url), since);
      if (ctx.ruleHooks) await ctx.ruleHooks.checkSubscribe(principal, plan.filters, 'longpoll');
      const address = ctx.addresses.of(req);
      const clientId = clientIdOf(url.searchParams.get('client'));
      const [conns, subs] = await Promise.all([ctx.quotas.connectionsElsewhere(principal), ctx.quotas.subscriptionsElsewhere(principal)]);
      // from here to the registration nothing awaits: no other poll can slip in between
      ctx.quotas.checkConnection(principal, address, conns);
      ctx.quotas.checkSubscriptions(principal, 0, plan.filters.length, false, subs);
      ctx.connections.acquire();
      ctx.metrics.connections.inc({ transport: 'longpoll' });

      // a held poll outlives no token: past `exp` it is answered 401, as a new poll would be
      const now = Date.now();
      const expiresIn = principal.expiresAt === undefined ? Infinity : principal.expiresAt - now;
      const expires = expiresIn < timeout * 1000;
      // timeout 0 answers once the replay is handed over (below), not at a timer that may fire first
      const at = expires ? now + Math.max(0, expiresIn) : timeout > 0 ? now + timeout * 1000 : Infinity;
      const sinceCursor = since && plan.mode === 'history' && !plan.gap ? since : ctx.hub.headCursor();
      const poll = new HeldPoll(principal, res, Math.floor(limit), plan.filters, address, this, clientId, noEcho, sinceCursor, at, expires);
      this.held++;
      ctx.registry.add(poll);
      (res as PollResponse)[POLL] = poll;
      res.on('close', responseClosed);
      poll.readAtHead = readAtHead;
      await ctx.hub.subscribe(poll, plan);
      poll.caughtUp();
      if (timeout === 0 || poll.hasGap) poll.finish();
      else this.parkLater(poll);
    } catch (e) {
      // (a parked exchange has no socket on its response: it can throw no more)
      if (res.socket) {
        this.host.answering(res);
        sendError(res, e, headers);
      }
    }
  }

  private parkLater(poll: HeldPoll): void {
    if (this.ctx.config.longpoll.parkAfter === 0) return poll.park();
    this.unparked.add(poll);
    this.parking.count(this.unparked.size);
  }

  /** Parks the polls that have waited `longpoll.parkAfter`; the sweep stops once none waits unparked. */
  private parkDue(): void {
    const old = Date.now() - this.ctx.config.longpoll.parkAfter * 1000;
    for (const p of this.unparked) {
      if (p.since > old) break;
      this.unparked.delete(p);
      p.park();
    }
    this.parking.count(this.unparked.size);
  }

  /** A held poll was answered or abandoned: it holds nothing any more. */
  pollDone(poll: HeldPoll): void {
    this.unparked.delete(poll);
    poll.cancel();
    this.held--;
    this.ctx.registry.remove(poll);
    this.ctx.connections.release();
    this.ctx.metrics.connections.dec({ transport: 'longpoll' });
  }

  /** Answers every held poll (shutdown). */
  close(): void {
    this.parking.close();
    this.unparked.clear();
    const polls: HeldPoll[] = [];
    for (const c of this.ctx.registry.all()) if (c instanceof HeldPoll && c.owner === this) polls.push(c);
    for (const p of polls) p.finish();
  }
}
