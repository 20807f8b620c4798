import { OmnipushError } from '../../core/errors.js';
import type { Hub } from '../../core/hub.js';
import type { RecordChange } from '../../core/store.js';
import type { Logger } from 'pino';
import type { MqttSession } from './session.js';
import type { Holding } from './session-claims.js';
import { SESSION_KIND, sessionFromRecord, sessionToRecord } from './session-record.js';

/**
 * Sessions by client identifier. Connected ones live in memory; persistent ones are also records
 * in the hub's store, so a restart keeps them. Once an offline session is saved, only its expiry
 * deadline stays in memory (many sessions may wait for clients that never return) and the session
 * is read back from its record when its client reconnects.
 * Most writes are grouped: a changed session is marked dirty and saved on the next flush. What a
 * client is told was kept — a new session (CONNACK), a change of subscriptions (SUBACK, UNSUBACK)
 * — is written at once with {@link save} before the acknowledgement goes out. A write that fails
 * marks the session dirty again, so a later flush tries again.
 *
 * In a cluster, a session without a connection is expired only by the node that holds its claim
 * (SessionClaims): in memory there, or through {@link expireKey}, which asks first.
 */
export class SessionStore {
  private readonly sessions = new Map<string, MqttSession>();
  /** Saved offline sessions not held in memory: client id → ms when they expire (or are looked at). */
  private readonly waiting = new Map<string, number>();
  /**
   * Ids in {@link waiting} to look at at once ({@link watch}): the record may have no deadline
   * yet (written while connected), and then its clock starts when it is looked at.
   */
  private readonly watched = new Set<string>();
  /** Ids whose {@link expireKey} is running. */
  private readonly checking = new Set<string>();
  /** Record writes in flight per client (a session handed to another node waits for them). */
  private readonly writes = new Map<string, Promise<void>>();

  constructor(
    private readonly hub: Hub,
    private readonly maxQueued: number,
    private readonly log: Logger,
    /** This node's id in a cluster; written into each record (the node that wrote it last). */
    private readonly node?: string,
  ) {}

  private track(ids: string[], p: Promise<void>): Promise<void> {
    const done = p.catch(() => undefined);
    for (const id of ids) {
      this.writes.set(id, done);
      void done.finally(() => {
        if (this.writes.get(id) === done) this.writes.delete(id);
      });
    }
    return p;
  }

  get size(): number {
    return this.sessions.size + this.waiting.size;
  }

  /** The session of `clientId`, from memory or the store; expired ones are dropped on the way. */
  async get(clientId: string, now: number): Promise<MqttSession | undefined> {
    let s = this.sessions.get(clientId);
    if (!s) {
      const buf = await this.hub.getRecord(SESSION_KIND, clientId);
      // another CONNECT for the same id may have raced us through the await
      s = this.sessions.get(clientId);
      if (!s && buf) {
        s = sessionFromRecord(clientId, buf, this.maxQueued) ?? undefined;
        if (s) this.sessions.set(clientId, s);
      }
      if (s) this.unwait(clientId);
    }
    if (s && !s.port && s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now) {
      await this.remove(s);
      return undefined;
    }
    return s;
  }

  private unwait(clientId: string): void {
    this.waiting.delete(clientId);
    this.watched.delete(clientId);
  }

  /** The session held in memory for `clientId`, if any (no store read). */
  peek(clientId: string): MqttSession | undefined {
    return this.sessions.get(clientId);
  }

  add(s: MqttSession): void {
    this.sessions.set(s.clientId, s);
  }

  /** This very session is the one held for its client identifier. */
  holds(s: MqttSession): boolean {
    return this.sessions.get(s.clientId) === s;
  }

  /** Drops a session from memory, leaving the store alone (a new session whose CONNECT was refused). */
  forget(s: MqttSession): void {
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId);
  }

  /** Forgets a session and its record. */
  async remove(s: MqttSession): Promise<void> {
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId);
    if (s.released) return;
    await this.removeKey(s.clientId);
  }

  /** Forgets a session not held in memory. */
  async removeKey(clientId: string): Promise<void> {
    this.unwait(clientId);
    await this.track([clientId], this.hub.putRecords([{ kind: SESSION_KIND, key: clientId, value: null }]));
  }

  /**
   * This node now answers for a session that may have no connection (its CONNECT here never
   * took it up, another node let go of it late, or its holder died). Held in memory without a
   * connection, it is counted down from there: one never disconnected from now (it is written
   * so, then evicted), one read unchanged from its record leaves memory at once, keeping its
   * deadline. Not held, its record is looked at, at the next sweep, unless its deadline is
   * already counted down.
   */
  watch(clientId: string, now: number): void {
    const s = this.sessions.get(clientId);
    if (s) {
      if (s.port) return;
      if (s.disconnectedAt === undefined) {
        s.disconnectedAt = now;
        s.dirty = true;
      } else this.evict(s);
      return;
    }
    if (this.waiting.has(clientId)) return;
    this.waiting.set(clientId, now);
    this.watched.add(clientId);
  }

  /**
   * An evicted session's time came (its deadline, or at once when watched). `hold` says whose it
   * is (SessionClaims): another live node's, and this node stops counting it down; else the record
   * is read: `none` when there is none, `removed` when its deadline passed, `kept` when its
   * deadline is later (another writer moved it on) or the session is no longer this node's to
   * look at. A record without a deadline (written while connected, on a node gone since) is given
   * its expiry from now when watched or just `taken`, and is removed when that runs out.
   */
  async expireKey(clientId: string, now: number, hold: () => Promise<Holding> = async () => 'held'): Promise<'none' | 'removed' | 'kept'> {
    this.checking.add(clientId);
    try {
      const whose = await hold();
      if (whose === 'elsewhere') {
        this.unwait(clientId);
        return 'kept';
      }
      const fromNow = this.watched.has(clientId) || whose === 'taken';
      const buf = await this.hub.getRecord(SESSION_KIND, clientId);
      // read back by a CONNECT meanwhile, or let go to another node: not this node's to expire
      if (this.sessions.has(clientId) || !this.waiting.has(clientId)) return 'kept';
      this.watched.delete(clientId);
      if (!buf) {
        this.waiting.delete(clientId);
        return 'none';
      }
      const s = sessionFromRecord(clientId, buf, this.maxQueued);
      const from = s?.disconnectedAt ?? (fromNow ? now : undefined);
      const deadline = s && from !== undefined ? from + s.expiry * 1000 : undefined;
      if (deadline !== undefined && deadline > now) {
        this.waiting.set(clientId, deadline);
        return 'kept';
      }
      await this.removeKey(clientId);
      return 'removed';
    } catch (e) {
      // the store or the cluster state is unreachable (the removal too): looked at again in a second
      if (!this.sessions.has(clientId)) this.waiting.set(clientId, now + 1000);
      throw e;
    } finally {
      this.checking.delete(clientId);
    }
  }

  /**
   * Another node takes the session over: waits for this node's writes of it, writes it a last
   * time, and forgets it, so nothing here can overwrite what the new holder writes.
   */
  async release(clientId: string): Promise<void> {
    for (let p = this.writes.get(clientId); p; p = this.writes.get(clientId)) await p;
    this.unwait(clientId);
    const s = this.sessions.get(clientId);
    if (!s) return;
    this.sessions.delete(clientId);
    if (s.persistent && s.dirty && !s.released) await this.save(s);
    s.released = true;
  }

  /** A saved offline session leaves memory; its deadline stays. */
  evict(s: MqttSession): void {
    if (s.port || s.dirty || s.disconnectedAt === undefined || this.sessions.get(s.clientId) !== s) return;
    this.sessions.delete(s.clientId);
    this.waiting.set(s.clientId, s.disconnectedAt + s.expiry * 1000);
  }

  /** Writes one session now (persistent ones only); rejects when the store did not take it. */
  async save(s: MqttSession): Promise<void> {
    if (!s.persistent || s.released) return;
    s.dirty = false;
    try {
      await this.track([s.clientId], this.hub.putRecords([{ kind: SESSION_KIND, key: s.clientId, value: sessionToRecord(s, this.node) }]));
    } catch (e) {
      s.dirty = true;
      throw e;
    }
  }

  /** Writes every dirty persistent session in one batch. */
  async flush(): Promise<void> {
    const batch: MqttSession[] = [];
    const changes: RecordChange[] = [];
    // forEach: this runs every sweep over every session, and a for-of here allocated a result object per session
    this.sessions.forEach((s) => {
      if (!s.dirty || !s.persistent || s.released) return;
      s.dirty = false;
      batch.push(s);
      changes.push({ kind: SESSION_KIND, key: s.clientId, value: sessionToRecord(s, this.node) });
    });
    if (changes.length) {
      try {
        await this.track(changes.map((c) => c.key), this.hub.putRecords(changes));
      } catch (e) {
        for (const s of batch) s.dirty = true;
        throw e;
      }
    }
    for (const s of [...this.sessions.values()]) if (!s.port) this.evict(s);
  }

  /** Offline sessions whose expiry has run out (in memory, and ids of evicted ones); the caller ends them. */
  expired(now: number): { sessions: MqttSession[]; evicted: string[] } {
    const sessions: MqttSession[] = [];
    this.sessions.forEach((s) => {
      if (!s.port && s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now) sessions.push(s);
    });
    const evicted: string[] = [];
    for (const [id, at] of this.waiting) if (at <= now && !this.checking.has(id)) evicted.push(id);
    return { sessions, evicted };
  }

  /**
   * At start: drops records of sessions that expired while the server was down, and starts the
   * clock of the others; one written while connected is looked at at once (a cluster: unless a
   * live node holds it, its clock starts now; alone: it starts now).
   */
  async purgeExpired(now: number): Promise<void> {
    const gone = [];
    for (const { key, value } of await this.hub.listRecords(SESSION_KIND)) {
      const s = sessionFromRecord(key, value, this.maxQueued);
      if (s && s.disconnectedAt === undefined) this.watch(key, now);
      else if (!s || s.disconnectedAt! + s.expiry * 1000 <= now) gone.push({ kind: SESSION_KIND, key, value: null });
      else this.waiting.set(key, s.disconnectedAt! + s.expiry * 1000);
    }
    if (gone.length) {
      await this.hub.putRecords(gone);
      this.log.info({ count: gone.length }, 'mqtt sessions expired while stopped');
    }
  }

  all(): IterableIterator<MqttSession> {
    return this.sessions.values();
  }
}

/** Reason string for an acknowledgement refused because the session record was not written. */
export function notSaved(e: unknown): string {
  return `session not saved: ${e instanceof OmnipushError ? `${e.code}: ${e.message}` : 'store error'}`.slice(0, 200);
}
