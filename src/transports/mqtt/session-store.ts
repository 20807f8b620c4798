import type { Hub } from '../../core/hub.js';
import type { Logger } from 'pino';
import type { MqttSession } from './session.js';
import { SESSION_KIND, sessionFromRecord, sessionToRecord } from './session-record.js';

/**
 * Sessions by client identifier. Connected ones live in memory; persistent ones are also records
 * in the hub's store, so a restart keeps them. Once an offline session is saved, only its expiry
 * deadline stays in memory (many sessions may wait for clients that never return) and the session
 * is read back from its record when its client reconnects.
 * Writes are grouped: a changed session is marked dirty and saved on the next flush.
 */
export class SessionStore {
  private readonly sessions = new Map<string, MqttSession>();
  /** Saved offline sessions not held in memory: client id → ms when they expire. */
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly hub: Hub,
    private readonly maxQueued: number,
    private readonly log: Logger,
  ) {}

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

  /** Forgets a session and its record. */
  async remove(s: MqttSession): Promise<void> {
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId);
    await this.removeKey(s.clientId);
  }

  /** Forgets a session not held in memory. */
  async removeKey(clientId: string): Promise<void> {
    this.waiting.delete(clientId);
    await this.hub.putRecords([{ kind: SESSION_KIND, key: clientId, value: null }]);
  }

  /** A saved offline session leaves memory; its deadline stays. */
  evict(s: MqttSession): void {
    if (s.port || s.dirty || s.disconnectedAt === undefined || this.sessions.get(s.clientId) !== s) return;
    this.sessions.delete(s.clientId);
    this.waiting.set(s.clientId, s.disconnectedAt + s.expiry * 1000);
  }

  /** Writes one session now (persistent ones only). */
  async save(s: MqttSession): Promise<void> {
    if (!s.persistent) return;
    s.dirty = false;
    await this.hub.putRecords([{ kind: SESSION_KIND, key: s.clientId, value: sessionToRecord(s) }]);
  }

  /** Writes every dirty persistent session in one batch. */
  async flush(): Promise<void> {
    const changes = [];
    for (const s of this.sessions.values()) {
      if (!s.dirty || !s.persistent) continue;
      s.dirty = false;
      changes.push({ kind: SESSION_KIND, key: s.clientId, value: sessionToRecord(s) });
    }
    if (changes.length) await this.hub.putRecords(changes);
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
