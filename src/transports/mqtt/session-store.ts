import type { Hub } from '../../core/hub.js';
import type { Logger } from 'pino';
import type { MqttSession } from './session.js';
import { SESSION_KIND, sessionFromRecord, sessionToRecord } from './session-record.js';

/**
 * Sessions by client identifier: connected ones and those waiting out their expiry, in memory,
 * and the persistent ones also as records in the hub's store so a restart keeps them.
 * Writes are grouped: a changed session is marked dirty and saved on the next flush.
 */
export class SessionStore {
  private readonly sessions = new Map<string, MqttSession>();

  constructor(
    private readonly hub: Hub,
    private readonly maxQueued: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.sessions.size;
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
    await this.hub.putRecords([{ kind: SESSION_KIND, key: s.clientId, value: null }]);
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
  }

  /** Offline sessions whose expiry has run out; the caller ends them. */
  expired(now: number): MqttSession[] {
    const out: MqttSession[] = [];
    for (const s of this.sessions.values()) {
      if (!s.port && s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now) out.push(s);
    }
    return out;
  }

  /** At start: drops records of sessions that expired while the server was down. */
  async purgeExpired(now: number): Promise<void> {
    const gone = [];
    for (const { key, value } of await this.hub.listRecords(SESSION_KIND)) {
      const s = sessionFromRecord(key, value, this.maxQueued);
      if (!s || (s.disconnectedAt !== undefined && s.disconnectedAt + s.expiry * 1000 <= now)) gone.push({ kind: SESSION_KIND, key, value: null });
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
