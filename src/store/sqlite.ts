import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Properties, StoredMessage } from '../core/message.js';
import { formatCursor } from '../core/message.js';
import { allRetained } from '../core/retained-replay.js';
import { IDEMPOTENCY_KIND, idempotencyRecord, toStored, type AppendInput, type HistoryQuery, type RecordChange, type RetainedRef, type RetentionRule, type Store } from '../core/store.js';
import { filterMatches, isWildcardFilter } from '../core/topic.js';
import { newEpoch } from './epoch.js';
import { DEFAULT_CHECKPOINTS, WalCheckpoints, type CheckpointCounts, type CheckpointOptions } from './sqlite-checkpoint.js';
import { MessageRows, mqttExtras, propertiesColumn } from './sqlite-rows.js';
import { retentionFor } from './retention.js';
import { levelKey, walkRetainedKeys, type KeyedRef, type KeyRange } from './retained-walk.js';

const SCHEMA_VERSION = 4;

interface Row {
  seq: number;
  topic: string;
  payload: Buffer;
  content_type: string | null;
  event: string | null;
  properties: string | null;
  retain: number;
  expires_at: number | null;
  publisher: string | null;
  qos: number | null;
  published_at: number;
  /** MQTT 5 extras (payload format, response topic, correlation data) as JSON; schema 3. */
  mqtt: string | null;
}

/** Prunes at most this many rows per transaction, so a big sweep never blocks the loop for long. */
const PRUNE_CHUNK = 1000;
/** Longest `topic IN (...)` list; more matching topics fall back to a seq-range scan. */
const MAX_IN_TOPICS = 200;
/** Rows one synchronous read takes at most where a request could otherwise ask for many. */
const READ_CHUNK = 500;
/** Synchronous work (ms) a prune sweep does before it gives the event loop a turn. */
const PRUNE_SLICE_MS = 5;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * History, retained messages and meta in one SQLite file (WAL). Each `append` is one transaction;
 * the hub groups a tick's publishes into one call. The epoch and a seq high-water mark live in
 * `meta`, so cursors survive restarts and seqs are never reused, also after `kill -9`.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  epoch = '';
  private db!: Database.Database;
  private seq = 0;
  /**
   * topic → rows currently stored, for topics that have rows (also used to expand wildcards); kept
   * in step with appends and prunes so a sweep needs no table scan. Pruned marks stay on disk in
   * `topics`, so a topic pruned away entirely takes no memory here.
   */
  private counts = new Map<string, number>();
  /**
   * topic → publishedAt of its oldest row (a lower bound), for the same topics: a sweep decides
   * from memory which topics need a look, instead of one query per topic per sweep.
   */
  private oldestAt = new Map<string, number>();
  private retainedKeys!: KeyRange<KeyedRef[]>;
  private stmts!: ReturnType<SqliteStore['prepare']>;
  private appendTx!: (batch: AppendInput[]) => StoredMessage[];
  private checkpoints: WalCheckpoints | null = null;

  constructor(
    private readonly dir: string,
    private readonly opts: { synchronous: 'normal' | 'full'; checkpoints?: CheckpointOptions } = { synchronous: 'normal' },
  ) {}

  async open(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const file = join(this.dir, 'omnipush.db');
    const db = new Database(file);
    this.db = db;
    db.pragma('journal_mode = WAL');
    const synchronous = this.opts.synchronous === 'full' ? 'FULL' : 'NORMAL';
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`store at ${this.dir} has schema ${version}; this server knows up to ${SCHEMA_VERSION}`);
    if (version < 1) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS messages (
          seq INTEGER PRIMARY KEY,
          topic TEXT NOT NULL,
          payload BLOB NOT NULL,
          content_type TEXT,
          event TEXT,
          properties TEXT,
          retain INTEGER NOT NULL DEFAULT 0,
          expires_at INTEGER,
          publisher TEXT,
          qos INTEGER,
          published_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS messages_topic_seq ON messages (topic, seq);
        CREATE TABLE IF NOT EXISTS retained (
          topic TEXT PRIMARY KEY,
          seq INTEGER NOT NULL,
          payload BLOB NOT NULL,
          content_type TEXT,
          event TEXT,
          properties TEXT,
          expires_at INTEGER,
          publisher TEXT,
          qos INTEGER,
          published_at INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, pruned_through INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        PRAGMA user_version = 1;
      `);
    }
    if (version < 2) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
        PRAGMA user_version = 2;
      `);
    }
    if (version < 3) {
      db.exec(`
        ALTER TABLE messages ADD COLUMN mqtt TEXT;
        ALTER TABLE retained ADD COLUMN mqtt TEXT;
        PRAGMA user_version = 3;
      `);
    }
    if (version < 4) {
      // the retained index (see retained-walk.ts), the quota's count by publisher, pruned marks by height
      db.transaction(() => {
        db.exec('ALTER TABLE retained ADD COLUMN lkey BLOB');
        const set = db.prepare('UPDATE retained SET lkey = ? WHERE topic = ?');
        for (const r of db.prepare('SELECT topic FROM retained').all() as Array<{ topic: string }>) set.run(levelKey(r.topic), r.topic);
        db.exec(`
          CREATE INDEX retained_lkey ON retained (lkey, seq);
          CREATE INDEX retained_publisher ON retained (publisher);
          CREATE INDEX topics_pruned ON topics (pruned_through);
          PRAGMA user_version = 4;
        `);
      })();
    }
    this.stmts = this.prepare();
    const s = this.stmts;
    let epoch = (s.getMeta.get('epoch') as { value: string } | undefined)?.value;
    if (!epoch) {
      epoch = newEpoch();
      s.setMeta.run('epoch', epoch);
    }
    this.epoch = epoch;
    const maxSeq = (s.maxSeq.get() as { m: number | null }).m ?? 0;
    const hw = Number((s.getMeta.get('seq_high_water') as { value: string } | undefined)?.value ?? 0);
    this.seq = Math.max(maxSeq, hw);
    for (const r of s.topicCounts.all() as Array<{ topic: string; n: number; oldest: number }>) {
      this.counts.set(r.topic, r.n);
      this.oldestAt.set(r.topic, r.oldest);
    }
    this.retainedKeys = (from, to, limit) => (to === null ? s.retainedFrom.all(from, limit) : s.retainedRange.all(from, to, limit)) as KeyedRef[];

    const rows = new MessageRows(db);
    this.checkpoints = new WalCheckpoints(db, file, synchronous, this.opts.checkpoints ?? DEFAULT_CHECKPOINTS);
    this.appendTx = db.transaction((batch: AppendInput[]) => {
      const out: StoredMessage[] = [];
      for (const input of batch) out.push(toStored(input, this.epoch, ++this.seq));
      rows.insert(out);
      for (let i = 0; i < out.length; i++) {
        const m = out[i];
        const n = this.counts.get(m.topic);
        if (n === undefined) {
          s.insertTopic.run(m.topic);
          this.oldestAt.set(m.topic, m.publishedAt);
        }
        this.counts.set(m.topic, (n ?? 0) + 1);
        if (m.retain) {
          if (m.payload.length === 0) s.deleteRetained.run(m.topic);
          else s.upsertRetained.run(m.topic, m.seq, m.payload, m.contentType ?? null, m.event ?? null, propertiesColumn(m), m.expiresAt ?? null, m.publisher ?? null, m.qos ?? null, m.publishedAt, mqttExtras(m), levelKey(m.topic));
        }
        const input = batch[i];
        if (input.idempotencyKey !== undefined) {
          s.putRecord.run(IDEMPOTENCY_KIND, input.idempotencyKey, idempotencyRecord(m));
          input.idempotencyKey = undefined;
        }
      }
      return out;
    });
  }

  private prepare() {
    const db = this.db;
    return {
      insertTopic: db.prepare('INSERT OR IGNORE INTO topics (topic, pruned_through) VALUES (?, 0)'),
      upsertRetained: db.prepare(
        'INSERT INTO retained (topic, seq, payload, content_type, event, properties, expires_at, publisher, qos, published_at, mqtt, lkey) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ' +
          'ON CONFLICT(topic) DO UPDATE SET seq=excluded.seq, payload=excluded.payload, content_type=excluded.content_type, event=excluded.event, properties=excluded.properties, expires_at=excluded.expires_at, publisher=excluded.publisher, qos=excluded.qos, published_at=excluded.published_at, mqtt=excluded.mqtt',
      ),
      deleteRetained: db.prepare('DELETE FROM retained WHERE topic = ?'),
      getRetained: db.prepare('SELECT topic, seq, payload, content_type, event, properties, 1 AS retain, expires_at, publisher, qos, published_at, mqtt FROM retained WHERE topic = ?'),
      retainedRange: db.prepare('SELECT lkey AS key, seq FROM retained WHERE lkey >= ? AND lkey < ? ORDER BY lkey LIMIT ?'),
      retainedFrom: db.prepare('SELECT lkey AS key, seq FROM retained WHERE lkey >= ? ORDER BY lkey LIMIT ?'),
      retainedCount: db.prepare('SELECT COUNT(*) AS n FROM (SELECT 1 FROM retained WHERE publisher = ? LIMIT ?)'),
      prunedOf: db.prepare('SELECT pruned_through AS p FROM topics WHERE topic = ?'),
      prunedBelow: db.prepare('SELECT topic, pruned_through AS p FROM topics WHERE pruned_through > ? AND pruned_through < ? ORDER BY pruned_through DESC LIMIT ?'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      maxSeq: db.prepare('SELECT MAX(seq) AS m FROM messages'),
      scan: db.prepare('SELECT * FROM messages WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
      topicCounts: db.prepare('SELECT topic, COUNT(*) AS n, MIN(published_at) AS oldest FROM messages GROUP BY topic'),
      oldest: db.prepare('SELECT published_at FROM messages WHERE topic = ? ORDER BY seq LIMIT 1'),
      nthNewest: db.prepare('SELECT seq FROM messages WHERE topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?'),
      oldBefore: db.prepare('SELECT seq FROM messages WHERE topic = ? AND published_at < ? ORDER BY seq DESC LIMIT 1'),
      nthOldest: db.prepare('SELECT seq FROM messages WHERE topic = ? ORDER BY seq LIMIT 1 OFFSET ?'),
      deleteUpTo: db.prepare('DELETE FROM messages WHERE topic = ? AND seq <= ?'),
      getRecord: db.prepare('SELECT value FROM records WHERE kind = ? AND key = ?'),
      putRecord: db.prepare('INSERT INTO records (kind, key, value) VALUES (?, ?, ?) ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value'),
      deleteRecord: db.prepare('DELETE FROM records WHERE kind = ? AND key = ?'),
      listRecords: db.prepare("SELECT key, value FROM records WHERE kind = ? AND key >= ? AND substr(key, 1, length(?)) = ? ORDER BY key LIMIT ?"),
      listRecordsAfter: db.prepare('SELECT key, value FROM records WHERE kind = ? AND key > ? AND substr(key, 1, length(?)) = ? ORDER BY key LIMIT ?'),
      setPruned: db.prepare('UPDATE topics SET pruned_through = MAX(pruned_through, ?) WHERE topic = ?'),
    };
  }

  async append(batch: AppendInput[]): Promise<StoredMessage[]> {
    if (batch.length === 0) return [];
    const out = this.appendTx(batch);
    this.checkpoints?.committed();
    return out;
  }

  async history(q: HistoryQuery): Promise<StoredMessage[]> {
    const exact = q.filters.filter((f) => !isWildcardFilter(f));
    const wild = q.filters.filter(isWildcardFilter);
    let topics: string[] | null = [...exact];
    if (wild.length) {
      let seen = 0;
      for (const t of this.counts.keys()) {
        if (wild.some((f) => filterMatches(f, t))) {
          topics.push(t);
          if (topics.length > MAX_IN_TOPICS) {
            topics = null;
            break;
          }
        }
        // many live topics: a turn for the event loop now and then (Map iteration survives changes)
        if (++seen % 5000 === 0) await turn();
      }
    }
    const out: StoredMessage[] = [];
    if (topics !== null) {
      const known = [...new Set(topics)].filter((t) => this.counts.has(t));
      if (known.length === 0) return out;
      // expired rows are skipped in JS, so read in pages until the limit is met
      let after = q.afterSeq;
      while (out.length < q.limit) {
        const want = q.limit - out.length;
        const rows = this.byTopics(known.length).all(...known, after, q.toSeq, want) as Row[];
        for (const r of rows) if (!(r.expires_at !== null && r.expires_at <= q.now)) out.push(this.toMessage(r));
        if (rows.length < want) break;
        after = rows[rows.length - 1].seq;
      }
      return out;
    }
    // many topics: scan the seq range and filter here
    let after = q.afterSeq;
    const page = Math.max(q.limit, 500);
    while (out.length < q.limit) {
      const rows = this.stmts.scan.all(after, q.toSeq, page) as Row[];
      for (const r of rows) {
        if (out.length >= q.limit) break;
        if (r.expires_at !== null && r.expires_at <= q.now) continue;
        if (q.filters.some((f) => filterMatches(f, r.topic))) out.push(this.toMessage(r));
      }
      if (rows.length < page) break;
      after = rows[rows.length - 1].seq;
      await turn();
    }
    return out;
  }

  private readonly inStatements = new Map<number, Database.Statement>();

  /** `SELECT ... WHERE topic IN (?, ?, ...)` for `n` topics, prepared once per `n`. */
  private byTopics(n: number): Database.Statement {
    let st = this.inStatements.get(n);
    if (!st) {
      const marks = Array.from({ length: n }, () => '?').join(',');
      st = this.db.prepare(`SELECT * FROM messages WHERE topic IN (${marks}) AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`);
      this.inStatements.set(n, st);
    }
    return st;
  }

  async range(afterSeq: number, toSeq: number, limit: number): Promise<StoredMessage[]> {
    if (limit <= 0 || toSeq <= afterSeq) return [];
    return (this.stmts.scan.all(afterSeq, toSeq, limit) as Row[]).map((r) => this.toMessage(r));
  }

  async prunedThrough(filters: string[]): Promise<number> {
    const s = this.stmts;
    let max = 0;
    const wild: string[] = [];
    for (const f of filters) {
      if (isWildcardFilter(f)) wild.push(f);
      else max = Math.max(max, (s.prunedOf.get(f) as { p: number } | undefined)?.p ?? 0);
    }
    if (wild.length === 0) return max;
    // highest mark first: the first topic that matches holds the answer. A topic's mark is a seq
    // of that topic, so marks are unique and paging by mark is exact.
    let below = Number.MAX_SAFE_INTEGER;
    for (;;) {
      const rows = s.prunedBelow.all(max, below, READ_CHUNK) as Array<{ topic: string; p: number }>;
      for (const r of rows) if (wild.some((f) => filterMatches(f, r.topic))) return r.p;
      if (rows.length < READ_CHUNK) return max;
      below = rows[rows.length - 1].p;
      await turn();
    }
  }

  async retained(filters: string[], now: number): Promise<StoredMessage[]> {
    return allRetained(this, filters, now);
  }

  async *retainedIndex(filters: string[], pageSize: number): AsyncGenerator<RetainedRef[]> {
    yield* walkRetainedKeys(this.retainedKeys, filters, pageSize);
  }

  async retainedOf(topics: string[], now: number): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    for (const t of topics) {
      const r = this.stmts.getRetained.get(t) as Row | undefined;
      if (r && !(r.expires_at !== null && r.expires_at <= now)) out.push(this.toMessage(r));
    }
    return out;
  }

  async retainedCount(publisher: string, cap: number): Promise<number> {
    return (this.stmts.retainedCount.get(publisher, cap) as { n: number }).n;
  }

  lastSeq(): number {
    return this.seq;
  }

  async prune(now: number, rules: RetentionRule[], fallback: Omit<RetentionRule, 'filter'>): Promise<number> {
    const s = this.stmts;
    let removed = 0;
    let slice = performance.now();
    for (const [topic, n] of this.counts) {
      if (performance.now() - slice > PRUNE_SLICE_MS) {
        await turn();
        slice = performance.now();
      }
      const r = retentionFor(topic, rules, fallback);
      const oldestAt = this.oldestAt.get(topic) ?? now;
      if (n <= r.maxCount && now - oldestAt <= r.maxAgeMs) continue;
      let cut = 0;
      if (n > r.maxCount) cut = (s.nthNewest.get(topic, r.maxCount) as { seq: number } | undefined)?.seq ?? 0;
      const old = (s.oldBefore.get(topic, now - r.maxAgeMs) as { seq: number } | undefined)?.seq ?? 0;
      cut = Math.max(cut, old);
      if (cut === 0) {
        // the remembered oldest time was only a lower bound: remember the true one
        this.oldestAt.set(topic, (s.oldest.get(topic) as { published_at: number } | undefined)?.published_at ?? now);
        continue;
      }
      for (;;) {
        // delete in seq ranges of at most PRUNE_CHUNK rows, yielding to I/O between them
        const chunkEnd = (s.nthOldest.get(topic, PRUNE_CHUNK - 1) as { seq: number } | undefined)?.seq ?? cut;
        const upTo = Math.min(cut, chunkEnd);
        const deleted = this.db.transaction(() => {
          const info = s.deleteUpTo.run(topic, upTo);
          s.setPruned.run(upTo, topic);
          return info.changes;
        })();
        this.checkpoints?.committed();
        removed += deleted;
        const left = (this.counts.get(topic) ?? deleted) - deleted;
        // a topic pruned away takes no memory: its mark is on disk (topics), its count goes
        if (left > 0) {
          this.counts.set(topic, left);
          this.oldestAt.set(topic, (s.oldest.get(topic) as { published_at: number } | undefined)?.published_at ?? now);
        } else {
          this.counts.delete(topic);
          this.oldestAt.delete(topic);
        }
        if (upTo >= cut) break;
        await turn();
        slice = performance.now();
      }
    }
    if (removed) s.setMeta.run('seq_high_water', String(this.seq));
    return removed;
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (this.stmts.getMeta.get(key) as { value: string } | undefined)?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.stmts.setMeta.run(key, value);
  }

  async getRecord(kind: string, key: string): Promise<Buffer | undefined> {
    return (this.stmts.getRecord.get(kind, key) as { value: Buffer } | undefined)?.value;
  }

  async putRecords(changes: RecordChange[]): Promise<void> {
    const s = this.stmts;
    this.db.transaction(() => {
      for (const c of changes) {
        if (c.value === null) s.deleteRecord.run(c.kind, c.key);
        else s.putRecord.run(c.kind, c.key, c.value);
      }
    })();
    this.checkpoints?.committed();
  }

  async listRecords(kind: string, prefix = '', limit = Infinity, after?: string): Promise<Array<{ key: string; value: Buffer }>> {
    const want = Number.isFinite(limit) && limit >= 0 ? limit : Infinity;
    const out: Array<{ key: string; value: Buffer }> = [];
    // in chunks with a turn between them: a namespace with many records never blocks the loop
    let rows = (
      after === undefined
        ? this.stmts.listRecords.all(kind, prefix, prefix, prefix, Math.min(want, READ_CHUNK))
        : this.stmts.listRecordsAfter.all(kind, after, prefix, prefix, Math.min(want, READ_CHUNK))
    ) as Array<{ key: string; value: Buffer }>;
    for (;;) {
      for (const r of rows) out.push(r);
      if (rows.length < READ_CHUNK || out.length >= want) return out;
      await turn();
      rows = this.stmts.listRecordsAfter.all(kind, rows[rows.length - 1].key, prefix, prefix, Math.min(want - out.length, READ_CHUNK)) as Array<{ key: string; value: Buffer }>;
    }
  }

  /** Entries of the in-memory per-topic map, for checking that memory follows the live data. */
  indexSizes(): { topics: number } {
    return { topics: Math.max(this.counts.size, this.oldestAt.size) };
  }

  /** What the WAL checkpoints did (see sqlite-checkpoint.ts). */
  checkpointCounts(): CheckpointCounts | undefined {
    return this.checkpoints?.counts;
  }

  /** For tests: the checkpoint thread ends as if it crashed. */
  async killCheckpointThread(): Promise<void> {
    await this.checkpoints?.killThread();
  }

  private closing: Promise<void> | null = null;

  async close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    if (!this.db?.open) return;
    await this.checkpoints?.close();
    this.stmts.setMeta.run('seq_high_water', String(this.seq));
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  private toMessage(r: Row): StoredMessage {
    const m: StoredMessage = {
      topic: r.topic,
      payload: r.payload,
      retain: r.retain === 1,
      seq: r.seq,
      cursor: formatCursor(this.epoch, r.seq),
      publishedAt: r.published_at,
    };
    if (r.content_type !== null) m.contentType = r.content_type;
    if (r.event !== null) m.event = r.event;
    if (r.properties !== null) m.properties = JSON.parse(r.properties) as Properties;
    if (r.expires_at !== null) m.expiresAt = r.expires_at;
    if (r.publisher !== null) m.publisher = r.publisher;
    if (r.qos !== null) m.qos = r.qos as 0 | 1 | 2;
    if (r.mqtt) {
      const x = JSON.parse(r.mqtt) as { pf?: 0 | 1; rt?: string; cd?: string };
      if (x.pf !== undefined) m.payloadFormat = x.pf;
      if (x.rt !== undefined) m.responseTopic = x.rt;
      if (x.cd !== undefined) m.correlationData = Buffer.from(x.cd, 'base64');
    }
    return m;
  }
}
