import { OmnipushError } from '../../core/errors.js';
import type { Hub } from '../../core/hub.js';
import type { Logger } from 'pino';
import type { MqttSession } from './session.js';
import { recordNode, SESSION_KIND, sessionFromRecord, sessionToRecord } from './session-record.js';

/**
 * Sessions by client identifier. Connected ones live in memory; persistent ones are also records
 * in the hub's store, so a restart keeps them. Once an offline session is saved, only its expiry
 * deadline stays in memory (many sessions may wait for clients that never return) and the session
 * is read back from its record when its client reconnects.
 * Most writes are grouped: a changed session is marked dirty and saved on the next flush. What a
 * client is told was kept — a new session (CONNACK), a change of subscriptions (SUBACK, UNSUBACK)
 * — is written at once with {@link save} before the acknowledgement goes out. A write that fails
 * marks the session dirty again, so a later flush tries again.
 */
export class SessionStore {
  private readonly sessions = new Map<string, MqttSession>();
  /** Saved offline sessions not held in memory: client id → ms when they expire. */
  private readonly waiting = new Map<string, number>();
  /** Record writes in flight per client (a session handed to another node waits for them). */
  private readonly writes = new Map<string, Promise<void>>();

  constructor(
    private readonly hub: Hub,
    private readonly maxQueued: number,
    private readonly log: Logger,
    /** This node's id in a cluster; written into each record so that only its holder expires it. */
    private readonly node?: string,
    /** Is that node alive (cluster)? The sessions of a dead node are expired by the others. */
    private readonly isLive: (node: string) => boolean = () => false,
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
      if (s) this.waiting.delete(clientId);
    }
    if (s && !s.port && s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now) {
      await this.remove(s);
      return undefined;
    }
    return s;
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
    this.waiting.delete(clientId);
    await this.track([clientId], this.hub.putRecords([{ kind: SESSION_KIND, key: clientId, value: null }]));
  }

  /**
   * An evicted session's expiry came: its record goes — unless, in a cluster, another node wrote
   * it since (the client resumed there), in which case that node keeps its clock. True when removed.
   */
  async expireKey(clientId: string, now = Date.now()): Promise<boolean> {
    if (this.node !== undefined) {
      const buf = await this.hub.getRecord(SESSION_KIND, clientId);
      if (!buf) {
        this.waiting.delete(clientId);
        return false;
      }
      const owner = recordNode(buf);
      if (owner !== undefined && owner !== this.node && this.isLive(owner)) {
        this.waiting.delete(clientId);
        return false;
      }
      // written by a node now dead (or by us): the record's own deadline counts, which may be later
      // than the one we knew (its client came and went on that node meanwhile)
      const s = sessionFromRecord(clientId, buf, this.maxQueued);
      const deadline = s?.disconnectedAt !== undefined ? s.disconnectedAt + s.expiry * 1000 : undefined;
      if (deadline !== undefined && deadline > now) {
        this.waiting.set(clientId, deadline);
        return false;
      }
    }
    await this.removeKey(clientId);
    return true;
  }

  /**
   * Another node takes the session over: waits for this node's writes of it, writes it a last
   * time, and forgets it, so nothing here can overwrite what the new holder writes.
   */
  async release(clientId: string): Promise<void> {
    for (let p = this.writes.get(clientId); p; p = this.writes.get(clientId)) await p;
    this.waiting.delete(clientId);
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
    const changes = [];
    for (const s of this.sessions.values()) {
      if (!s.dirty || !s.persistent || s.released) continue;
      s.dirty = false;
      batch.push(s);
      changes.push({ kind: SESSION_KIND, key: s.clientId, value: sessionToRecord(s, this.node) });
    }
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
    for (const s of this.sessions.values()) {
      if (!s.port && s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now) sessions.push(s);
    }
    const evicted: string[] = [];
    for (const [id, at] of this.waiting) if (at <= now) evicted.push(id);
    return { sessions, evicted };
  }

  /**
   * At start: drops records of sessions that expired while the server was down, and starts the
   * clock of the others (one that was connected when the server stopped counts from now).
   */
  async purgeExpired(now: number): Promise<void> {
    const gone = [];
    for (const { key, value } of await this.hub.listRecords(SESSION_KIND)) {
      const s = sessionFromRecord(key, value, this.maxQueued);
      const deadline = s ? (s.disconnectedAt ?? now) + s.expiry * 1000 : 0;
      if (!s || deadline <= now) gone.push({ kind: SESSION_KIND, key, value: null });
      else this.waiting.set(key, deadline);
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
