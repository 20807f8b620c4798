import type { Logger } from 'pino';
import type { UserDirectory } from '../../auth/users.js';
import type { Config } from '../../config/schema.js';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { Hub } from '../../core/hub.js';
import { formatCursor } from '../../core/message.js';
import type { TransportContext } from '../context.js';
import { Deadline, expiryDeadline } from '../deadline.js';
import type { MqttConnection } from './connection.js';
import { RetainedFeed, SessionFeed, SharedGroups } from './feed.js';
import { refuse } from './handlers/connect.js';
import { MqttProtocolError, RC } from './reason-codes.js';
import type { MqttSession, SubOptions } from './session.js';
import { SessionClaims } from './session-claims.js';
import { SessionOwners } from './session-owner.js';
import { SessionStore } from './session-store.js';
import { WillScheduler } from './will.js';
import { StringPool } from './string-pool.js';
import { ticksAt } from './registration.js';

/** Broker figures, published under `$SYS/broker/`. */
export interface MqttStats {
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  dropped: number;
  connectionsTotal: number;
}

/**
 * What every MQTT connection shares: sessions, shared groups, wills, the client-id registry,
 * authentication, and the glue between a session and its hub subscription.
 */
export class Broker {
  readonly config: Config['mqtt'];
  readonly hub: Hub;
  readonly log: Logger;
  readonly stats: MqttStats = { bytesIn: 0, bytesOut: 0, messagesIn: 0, messagesOut: 0, dropped: 0, connectionsTotal: 0 };
  readonly sessions: SessionStore;
  readonly shared: SharedGroups;
  readonly wills: WillScheduler;
  /** Which node holds each session (a cluster); alone, every claim is granted at once. */
  readonly claims: SessionClaims;
  /** Whose each session is, looked up before a CONNECT may claim it. */
  readonly owners: SessionOwners;
  /** Connected clients by client identifier (for takeover). */
  readonly live = new Map<string, MqttConnection>();
  /**
   * Every connection, CONNECT or not (for closing them all), linked through the connections
   * themselves: a set's table costs more per entry than two fields, and each time it doubles the
   * old table is garbage in the old space (a set of a few thousand is reallocated whole).
   */
  private first: MqttConnection | null = null;
  /**
   * CONNECTs at work per client identifier (from their claim on): the claim is theirs. An entry at
   * 0 is none: the sweep clears them in bulk ({@link connectingDone}), because a delete per CONNECT
   * made the map shrink and grow with every burst of connects, each new table of an old map
   * allocated in the old space (garbage on every connect, there until the next full GC).
   */
  private connecting = new Map<string, number>();
  /** Entries of {@link connecting} at 0. */
  private connectingDone = 0;
  /**
   * Bytes of packets one connection may have waiting behind a handler still at work:
   * `limits.maxQueueBytes`, the bound on its unsent bytes the other way.
   */
  readonly maxHeldBytes: number;
  private lastFlush = 0;
  /** Addresses and filters that connections share (see StringPool). */
  readonly strings = new StringPool(4096);

  constructor(
    readonly ctx: TransportContext,
    private readonly users: UserDirectory,
  ) {
    this.config = ctx.config.mqtt;
    this.maxHeldBytes = ctx.config.limits.maxQueueBytes;
    this.hub = ctx.hub;
    this.log = ctx.log;
    const cluster = ctx.cluster;
    this.sessions = new SessionStore(ctx.hub, this.config.maxQueuedMessages, ctx.log, cluster.clustered ? cluster.nodeId : undefined);
    this.shared = new SharedGroups(ctx.hub, cluster, ctx.log);
    this.wills = new WillScheduler(ctx.hub, ctx.log, cluster);
    this.claims = new SessionClaims(cluster, ctx.config.cluster.takeoverTimeout * 1000, ctx.log, {
      giveUp: (id, clean) => this.giveUp(id, clean),
      orphaned: (ids) => {
        const now = Date.now();
        for (const id of ids) this.sessions.watch(id, now);
      },
      answeredLate: (id) => this.answeredLate(id),
    });
    this.owners = new SessionOwners(cluster, ctx.hub, this.sessions, this.claims, ctx.log);
  }

  /** A new connection, CONNECT or not. */
  track(conn: MqttConnection): void {
    conn.nextConn = this.first;
    if (this.first) this.first.prevConn = conn;
    this.first = conn;
  }

  private unlink(conn: MqttConnection): void {
    const { prevConn: prev, nextConn: next } = conn;
    if (prev) prev.nextConn = next;
    else if (this.first === conn) this.first = next;
    else return;
    if (next) next.prevConn = prev;
    conn.prevConn = conn.nextConn = null;
  }

  /** Every connection, CONNECT or not, as a list of its own. */
  get connections(): MqttConnection[] {
    const all: MqttConnection[] = [];
    for (let c = this.first; c; c = c.nextConn) all.push(c);
    return all;
  }

  /** A CONNECT for `clientId` is about to claim it. */
  connectBegan(clientId: string): void {
    const n = this.connecting.get(clientId);
    if (n === 0) this.connectingDone--;
    this.connecting.set(clientId, (n ?? 0) + 1);
  }

  /**
   * A CONNECT for `clientId` is done; `attached`: its connection took the session up; `claim`: the
   * generation it claimed, `failed` when the claim itself failed (it may have been made), `none`
   * when it needed none. If the session was not taken up and no other connection here has it,
   * this node (which holds the claim, or may) looks after the session's expiry: otherwise a
   * session that the CONNECT read but never connected, or that the previous holder let go of for
   * it, would have nobody to expire it. A CONNECT that lost the claim to another node drops what
   * it read.
   */
  connectEnded(clientId: string, attached: boolean, claim: number | 'none' | 'failed'): void {
    const n = Math.max(0, (this.connecting.get(clientId) ?? 1) - 1);
    this.connecting.set(clientId, n);
    if (n === 0) this.connectingDone++;
    if (attached || claim === 'none' || n > 0 || this.live.has(clientId)) return;
    if (claim !== 'failed' && !this.claims.current(clientId, claim)) {
      const s = this.sessions.peek(clientId);
      if (s && !s.port) this.sessions.forget(s);
      return;
    }
    this.sessions.watch(clientId, Date.now());
  }

  /**
   * The node this node took a session over from answered after this node had stopped waiting,
   * and wrote the session after this node read it: held here, the session is written again (so
   * the record is this node's copy); not held, its record is looked at (its clock runs here).
   */
  private answeredLate(clientId: string): void {
    const s = this.sessions.peek(clientId);
    if (s) {
      if (s.persistent && !s.released) s.dirty = true;
    } else this.sessions.watch(clientId, Date.now());
  }

  /** The session of `clientId` is gone here: so goes its claim, unless a connection here has it (or is claiming it). */
  private releaseClaim(clientId: string): void {
    if (!this.live.has(clientId) && !this.connecting.get(clientId)) this.claims.release(clientId);
  }

  /**
   * Another node takes `clientId`'s session: the connection here ends with 0x8E, the session is
   * saved and forgotten, and its will follows the rules of a takeover on one node (published now
   * if the new connection starts clean, else void as the session carries on).
   */
  private async giveUp(clientId: string, clean: boolean): Promise<void> {
    const conn = this.live.get(clientId);
    if (conn) conn.disconnect(RC.sessionTakenOver, 'another connection took over this session');
    await this.sessions.release(clientId);
    if (clean) this.wills.fire(clientId);
    else this.wills.cancel(clientId);
    await this.wills.settled(clientId);
  }

  countDelivery(): void {
    this.ctx.metrics.deliveryCounts.mqtt++;
  }

  /**
   * Username/password → principal: a static user (scrypt), else the password as a JWT, else
   * anonymous when allowed. Throws MqttProtocolError 0x86 (bad credentials) or 0x87.
   */
  async authenticate(username: string | undefined, password: Buffer | undefined, clientId: string, address: string): Promise<Principal> {
    if (username !== undefined && this.users.has(username)) {
      const p = await this.users.verify(username, password ?? Buffer.alloc(0));
      if (!p) throw new MqttProtocolError(RC.badUsernameOrPassword, 'bad user name or password');
      return p;
    }
    try {
      return await this.ctx.authenticateMqtt(username, password, clientId, address);
    } catch (e) {
      if (e instanceof OmnipushError && e.code === 'unauthorized') {
        throw new MqttProtocolError(password?.length ? RC.badUsernameOrPassword : RC.notAuthorized, e.message);
      }
      // the app's connect hook: a 403 refusal, or no usable answer (fail closed)
      if (e instanceof OmnipushError && e.code === 'forbidden') throw new MqttProtocolError(RC.notAuthorized, e.message);
      if (e instanceof OmnipushError && e.code === 'unavailable') throw new MqttProtocolError(RC.serverUnavailable, e.message);
      throw e;
    }
  }

  /**
   * Points the session's hub subscription at its current filters. `resume`: start from the
   * session's place in history (a session that was away); otherwise live from now — unless the
   * previous subscription was still replaying, in which case the new one carries on from there.
   */
  refreshFeed(conn: MqttConnection, resume: boolean): void {
    const s = conn.session!;
    const old = conn.feed;
    const filters = s.filters();
    if (filters.length === 0) {
      if (old) this.hub.unsubscribe(old);
      conn.feed = null;
      return;
    }
    const fromHistory = (resume || old?.replaying === true) && s.epoch === this.hub.epoch;
    const plan = this.hub.checkSubscribe(conn.principal, filters, fromHistory ? formatCursor(s.epoch, s.sentSeq) : 'now');
    const feed = new SessionFeed(conn.principal, s, conn, filters.length === 1 ? filters[0] : undefined);
    if (plan.mode === 'history') {
      feed.replaying = true;
      feed.replayUpTo = this.hub.headSeq;
    }
    s.epoch = this.hub.epoch;
    // the swap happens within one tick, so no message falls between the two subscriptions
    if (old) this.hub.unsubscribe(old);
    conn.feed = feed;
    this.hub.subscribe(feed, plan).then(
      () => {
        feed.replaying = false;
      },
      (e: unknown) => {
        if (!(e instanceof OmnipushError && e.code === 'shutting_down')) this.log.error({ err: e, client: conn.clientId }, 'mqtt subscription failed');
      },
    );
  }

  /** Sends a new subscription its retained messages. */
  sendRetained(conn: MqttConnection, filter: string, opts: SubOptions): void {
    const plan = this.hub.checkSubscribe(conn.principal, [filter]);
    const rf = new RetainedFeed(conn.principal, conn.session!, opts, this.hub.headSeq);
    this.hub
      .subscribe(rf, plan)
      .catch((e: unknown) => this.log.debug({ err: e }, 'mqtt retained replay ended'))
      .finally(() => this.hub.unsubscribe(rf));
  }

  /** The hub ended the session's subscription: so ends its connection. */
  feedClosed(conn: MqttConnection, reason: OmnipushError): void {
    if (conn.feed) conn.feed = null;
    if (reason.code === 'shutting_down') conn.disconnect(RC.serverShuttingDown, 'server shutting down');
    else if (reason.code === 'disconnected') conn.disconnect(RC.administrativeAction, reason.message);
    else conn.disconnect(RC.quotaExceeded, reason.message);
  }

  /**
   * A connection's pre-auth place ended (its `mqtt.connectTimeout`, or a newcomer needed the place):
   * one still without a CONNECT is closed without a word; one whose CONNECT is at work is left to
   * its answer deadline.
   */
  connectWindowEnded(c: MqttConnection): void {
    if (c.state !== 'new') return;
    c.state = 'closed';
    this.connectionClosed(c);
    c.link.destroy();
  }

  /** CONNECT authenticated `conn`: it leaves the pre-auth pool for a slot of the connection budget. */
  admit(conn: MqttConnection): boolean {
    conn.place?.leave();
    conn.place = null;
    try {
      this.ctx.connections.acquire();
    } catch {
      return false;
    }
    conn.budgeted = true;
    this.ctx.metrics.connections.inc({ transport: 'mqtt' });
    return true;
  }

  /**
   * A whole CONNECT arrived: it is answered within {@link answerMs}; when its work (takeover,
   * session record) is not done by then, with CONNACK 0x88 Server unavailable (3.1.1: 3).
   */
  armAnswerDeadline(c: MqttConnection, connectAt: number): void {
    c.expiry = new Deadline(connectAt + this.answerMs, () => {
      if (c.state !== 'connecting') return;
      this.log.warn({ client: c.clientId, address: c.address, remote: c.link.remote, ms: Date.now() - connectAt }, 'mqtt CONNECT not answered in time; refused');
      refuse(c, RC.serverUnavailable, 'the server could not answer CONNECT in time');
    });
  }

  /** The connection is open: its credentials' expiry ends it (v5 DISCONNECT 0x87; 3.1.1 just closes). */
  armExpiry(conn: MqttConnection): void {
    conn.expiry?.cancel();
    conn.expiry = expiryDeadline(conn.principal.expiresAt, () => conn.disconnect(RC.notAuthorized, 'credentials expired'));
  }

  /** A connection ended (any way): its session stays, waits out its expiry, or ends. */
  connectionClosed(conn: MqttConnection): void {
    this.unlink(conn);
    conn.place?.leave();
    conn.place = null;
    conn.expiry?.cancel();
    // a no-op when it was never registered, or was removed already
    if (conn.id) this.ctx.registry.remove(conn, conn.closeReason);
    conn.presenceWatch?.clear();
    if (conn.budgeted) {
      conn.budgeted = false;
      this.ctx.connections.release();
      this.ctx.metrics.connections.dec({ transport: 'mqtt' });
    }
    const s = conn.session;
    if (!s || conn.superseded) return;
    conn.superseded = true;
    if (this.live.get(conn.clientId) === conn) this.live.delete(conn.clientId);
    if (conn.feed) {
      this.hub.unsubscribe(conn.feed);
      conn.feed = null;
    }
    if (s.port !== conn) return;
    this.log.debug({ client: conn.clientId, will: conn.will !== undefined, expiry: s.expiry }, 'mqtt client gone');
    s.detach(Date.now());
    if (conn.will) this.wills.schedule(s.clientId, conn.will, Math.min(conn.will.delay, s.expiry) * 1000);
    else if (conn.willArmed) this.wills.disarm(s.clientId);
    if (!s.persistent) return this.endSession(s);
    // an offline member receives nothing from its groups; it joins them again when it resumes
    if (s.sharedCount > 0) for (const name of s.shared.keys()) this.shared.leave(name, s);
    this.sessions.save(s).then(
      () => this.sessions.evict(s),
      (e: unknown) => this.log.error({ err: e }, 'mqtt session not saved'),
    );
  }

  /**
   * The session is over: shared memberships go, a waiting will is published, the record is deleted.
   * `keepClaim`: a clean CONNECT on this node ends it and goes on holding the client id.
   */
  endSession(s: MqttSession, keepClaim = false): void {
    if (s.sharedCount > 0) for (const name of s.shared.keys()) this.shared.leave(name, s);
    if (!keepClaim) this.owners.withdraw(s.clientId, s.owner);
    this.wills.fire(s.clientId);
    if (s.released) return;
    this.sessions.remove(s).then(
      () => {
        if (!keepClaim) this.releaseClaim(s.clientId);
      },
      (e: unknown) => {
        this.log.error({ err: e, client: s.clientId }, 'mqtt session not removed');
        // the record stays: it is looked at again, as an offline session of this node
        if (!keepClaim) this.sessions.watch(s.clientId, Date.now());
      },
    );
  }

  /**
   * ms a whole CONNECT may take to be answered: `mqtt.connectTimeout` again, plus in a cluster
   * `cluster.takeoverTimeout` (the longest a node holding the session is waited for).
   */
  get answerMs(): number {
    return (this.config.connectTimeout + (this.ctx.cluster.clustered ? this.ctx.config.cluster.takeoverTimeout : 0)) * 1000;
  }

  /**
   * Keepalive (1.5×), session expiry, and grouped session writes. A connection's deadlines run on
   * timers of their own: `mqtt.connectTimeout` to send a whole CONNECT (the pre-auth pool's), the
   * answer to it ({@link armAnswerDeadline}) and its credentials' expiry ({@link armExpiry}).
   */
  sweep(now: number): void {
    const ticks = ticksAt(now);
    for (const c of this.live.values()) {
      // in tenths of a second, each end rounded down: one more tick, so never early
      if (c.state === 'open' && c.keepalive > 0 && !c.holding && ticks - c.seenAt > c.keepalive * 15 + 1) c.disconnect(RC.keepAliveTimeout, 'keep alive timeout');
    }
    const expired = this.sessions.expired(now);
    for (const s of expired.sessions) this.endSession(s);
    // in a cluster only the holder of a session's claim expires it (a dead node's claim is taken)
    for (const id of expired.evicted) {
      this.sessions.expireKey(id, now, () => this.claims.hold(id)).then(
        (r) => {
          if (r === 'removed') {
            this.wills.fire(id);
            this.owners.withdraw(id, undefined);
          }
          if (r !== 'kept') this.releaseClaim(id);
        },
        (e: unknown) => this.log.error({ err: e, client: id }, 'mqtt session expiry not checked'),
      );
    }
    if (this.connectingDone > 0) {
      const still = new Map<string, number>();
      for (const [id, n] of this.connecting) if (n > 0) still.set(id, n);
      this.connecting = still;
      this.connectingDone = 0;
    }
    // grouped writes at the first sweep once a second has passed: 1 to 1.25 s apart (docs/mqtt.md)
    if (now - this.lastFlush >= 1000) {
      this.lastFlush = now;
      this.sessions.flush().catch((e: unknown) => this.log.error({ err: e }, 'mqtt sessions not saved'));
    }
  }

  /** Closes every connection (0x8B) and saves every persistent session. */
  async close(): Promise<void> {
    for (const c of this.connections) {
      if (c.state === 'open') c.disconnect(RC.serverShuttingDown, 'server shutting down');
      else {
        c.state = 'closed';
        this.connectionClosed(c);
        c.link.destroy();
      }
    }
    // wills won just now go out while the hub still takes publishes; in a cluster, waiting ones
    // stay in the cluster map and another node publishes them when due
    await this.wills.drain();
    this.wills.close();
    for (const s of this.sessions.all()) s.dirty = true;
    await this.sessions.flush();
  }
}
