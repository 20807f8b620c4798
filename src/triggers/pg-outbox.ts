import pg from 'pg';
import type { Logger } from 'pino';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import { idempotencyRecordKey, type IdempotentPublisher } from '../core/idempotency.js';
import { outboxDdl } from './pg-outbox-ddl.js';

/**
 * Who publishes outbox rows: whoever can write the table can publish to any topic, so the table's
 * grants in PostgreSQL are the permission check.
 */
export const OUTBOX_PRINCIPAL: Principal = { id: 'omnipush:outbox', kind: 'user', grants: ALLOW_ALL };

export interface PgOutboxOptions {
  url: string;
  table: string;
  createTable: boolean;
  /** seconds */
  pollInterval: number;
  batchSize: number;
  channel: string;
}

interface OutboxRow {
  /** bigint: pg hands it over as a string */
  id: string;
  topic: string;
  payload: string | null;
  event: string | null;
  content_type: string | null;
  properties: unknown;
  retain: boolean | null;
  ttl: number | null;
  idempotency_key: string | null;
  created_us: string;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/**
 * Consumes the app's outbox table: woken by LISTEN/NOTIFY, polling as the fallback. Each batch is
 * one transaction: `SELECT ... FOR UPDATE SKIP LOCKED` (so several nodes share the table, each row
 * taken by one), publish through the hub, `DELETE`, commit. A crash before the commit leaves the
 * rows to be taken again; their idempotency keys (the row's own, else `outbox:<id>:<created>`)
 * make the second publish answer the first one's cursor instead of storing a duplicate.
 */
export class PgOutbox {
  private db: pg.Client | null = null;
  private listener: pg.Client | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private draining: Promise<void> | null = null;
  private again = false;
  private closed = false;
  private backoff = BACKOFF_MIN_MS;
  private readonly selectSql: string;
  private readonly deleteSql: string;
  /** Rows published since start (for metrics and the bench). */
  published = 0;

  constructor(
    private readonly hub: Hub,
    private readonly idempotency: IdempotentPublisher,
    private readonly log: Logger,
    private readonly opts: PgOutboxOptions,
  ) {
    this.selectSql =
      `SELECT id, topic, payload, event, content_type, properties, retain, ttl, idempotency_key, ` +
      `(extract(epoch FROM created_at) * 1000000)::bigint::text AS created_us ` +
      `FROM ${opts.table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`;
    this.deleteSql = `DELETE FROM ${opts.table} WHERE id = ANY($1::bigint[])`;
  }

  /** Connects (retrying in the background if PostgreSQL is not there yet) and drains what is waiting. */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (e) {
      this.log.warn({ err: e }, 'outbox: PostgreSQL unreachable; retrying');
      this.scheduleReconnect();
      return;
    }
    this.wake();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.draining?.catch(() => undefined);
    await this.disconnect();
  }

  private async connect(): Promise<void> {
    const db = new pg.Client({ connectionString: this.opts.url });
    const listener = new pg.Client({ connectionString: this.opts.url });
    // an error event without a listener would end the process; a lost connection is handled by reconnecting
    const lost = (e: Error) => this.onLost(e);
    db.on('error', lost);
    listener.on('error', lost);
    listener.on('end', () => this.onLost(new Error('LISTEN connection ended')));
    this.db = db;
    this.listener = listener;
    await db.connect();
    await listener.connect();
    if (this.opts.createTable) await this.createTable(db);
    listener.on('notification', () => this.wake());
    await listener.query(`LISTEN ${this.opts.channel}`);
    this.pollTimer ??= setInterval(() => this.wake(), this.opts.pollInterval * 1000);
    this.pollTimer.unref();
    this.backoff = BACKOFF_MIN_MS;
    this.log.info({ table: this.opts.table, channel: this.opts.channel }, 'outbox: consuming');
  }

  private async createTable(db: pg.Client): Promise<void> {
    await db.query('BEGIN');
    try {
      // nodes starting together would race to create the same objects
      await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`omnipush:${this.opts.table}`]);
      await db.query(outboxDdl(this.opts.table, this.opts.channel));
      await db.query('COMMIT');
    } catch (e) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  private async disconnect(): Promise<void> {
    const clients = [this.db, this.listener];
    this.db = this.listener = null;
    for (const c of clients) {
      if (!c) continue;
      c.removeAllListeners('end');
      c.on('error', () => undefined);
      await c.end().catch(() => undefined);
    }
  }

  private onLost(e: Error): void {
    if (this.closed || (!this.db && !this.listener)) return;
    this.log.warn({ err: e }, 'outbox: PostgreSQL connection lost; reconnecting');
    void this.disconnect();
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect().then(
        () => this.wake(),
        (err: unknown) => {
          this.log.warn({ err }, 'outbox: reconnect failed');
          void this.disconnect();
          this.scheduleReconnect();
        },
      );
    }, wait);
    this.retryTimer.unref();
  }

  /** Drains the table now, or once the drain under way ends. */
  private wake(): void {
    if (this.closed || !this.db) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain()
      .catch((e: unknown) => {
        this.log.warn({ err: e }, 'outbox: batch failed; it will be taken again');
        this.onLost(e instanceof Error ? e : new Error(String(e)));
      })
      .finally(() => {
        this.draining = null;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async drain(): Promise<void> {
    while (!this.closed && this.db) {
      const n = await this.batch(this.db);
      if (n < this.opts.batchSize) return;
    }
  }

  /** One transaction: take up to batchSize rows, publish them, delete them. Returns how many. */
  private async batch(db: pg.Client): Promise<number> {
    await db.query('BEGIN');
    try {
      const { rows } = await db.query<OutboxRow>(this.selectSql, [this.opts.batchSize]);
      if (rows.length === 0) {
        await db.query('COMMIT');
        return 0;
      }
      const results = await this.idempotency.publishBatchUnder(
        OUTBOX_PRINCIPAL,
        rows.map((r) => ({ req: toRequest(r), recordKey: idempotencyRecordKey(OUTBOX_PRINCIPAL.id, r.idempotency_key ?? `outbox:${r.id}:${r.created_us}`) })),
      );
      results.forEach((r, i) => {
        // a row the hub refuses (bad topic, too large) can never be published: say so and drop it
        if ('code' in r) this.log.error({ id: rows[i].id, topic: rows[i].topic, err: r }, 'outbox: row refused and removed');
      });
      await db.query(this.deleteSql, [rows.map((r) => r.id)]);
      await db.query('COMMIT');
      this.published += rows.length;
      return rows.length;
    } catch (e) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }
}

function toRequest(r: OutboxRow): PublishRequest {
  const req: PublishRequest = { topic: r.topic, payload: Buffer.from(r.payload ?? '', 'utf8') };
  if (r.event) req.event = r.event;
  if (r.content_type) req.contentType = r.content_type;
  if (r.retain) req.retain = true;
  if (r.ttl !== null && r.ttl !== undefined) req.ttl = Number(r.ttl);
  const p = r.properties;
  if (Array.isArray(p)) req.properties = p as Array<[string, string]>;
  else if (p && typeof p === 'object') req.properties = Object.entries(p).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
  return req;
}
