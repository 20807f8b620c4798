import { formatCursor, type MessageInput, type StoredMessage } from './message.js';

/** How long a topic's history is kept. The first rule whose filter matches a topic applies. */
export interface RetentionRule {
  filter: string;
  /** Keep at most this many messages per topic. */
  maxCount: number;
  /** Drop messages older than this (ms). */
  maxAgeMs: number;
}

export interface HistoryQuery {
  filters: string[];
  /** Exclusive lower bound. */
  afterSeq: number;
  /** Inclusive upper bound. */
  toSeq: number;
  limit: number;
  /** Messages expired at this time (ms) are left out. */
  now: number;
}

export interface RecordChange {
  kind: string;
  key: string;
  /** null deletes the record. */
  value: Buffer | null;
}

/** A retained topic as the store's retained index knows it: enough to order and fetch, no body. */
export interface RetainedRef {
  topic: string;
  seq: number;
}

export interface AppendInput extends MessageInput {
  publishedAt: number;
  /**
   * Set by an idempotent publish: the store writes the record `IDEMPOTENCY_KIND`/this key (see
   * {@link idempotencyRecord}) with the message, so a crash can never leave one without the other.
   * Not part of the stored message.
   */
  idempotencyKey?: string;
}

/** Record kind of the idempotency keys: key `<principal> <key>`, value {@link idempotencyRecord}. */
export const IDEMPOTENCY_KIND = 'idempotency';

/** What an idempotency record holds: the first publish's cursor and topic, and when it was stored. */
export interface IdempotencyEntry {
  cursor: string;
  topic: string;
  /** ms since the epoch */
  at: number;
  /** For a delayed publish: its id and due time (ms); `cursor` is then empty. */
  delayed?: { id: string; due: number };
}

export function idempotencyRecord(m: StoredMessage): Buffer {
  const e: IdempotencyEntry = { cursor: m.cursor, topic: m.topic, at: m.publishedAt };
  return Buffer.from(JSON.stringify(e));
}

/**
 * Makes an appended input the stored message at `seq` (see {@link Store.append}: the input is the
 * store's). In place: a copy (a spread) made a large, slow object per message, twice the work to
 * allocate and to collect.
 */
export function toStored(input: AppendInput, epoch: string, seq: number): StoredMessage {
  const m = input as StoredMessage;
  m.retain = input.retain === true;
  m.seq = seq;
  m.cursor = formatCursor(epoch, seq);
  return m;
}

/**
 * Where history, retained messages and small server state live. Async so that a networked
 * store fits behind it; implementations: memory, sqlite and redis.
 */
export interface Store {
  readonly kind: string;
  /** Names this store's history; part of every cursor. Valid after open(). */
  readonly epoch: string;
  open(): Promise<void>;
  /**
   * Appends messages in order, assigning consecutive seqs, and updates retained state
   * (a retained message with an empty payload clears its topic's retained message).
   * Resolves only once the batch is durable. The inputs are the store's from then on: it may turn
   * them into the stored messages it returns.
   */
  append(batch: AppendInput[]): Promise<StoredMessage[]>;
  /** Messages with afterSeq < seq <= toSeq on topics matching any filter, ascending by seq. */
  history(q: HistoryQuery): Promise<StoredMessage[]>;
  /**
   * Messages with afterSeq < seq <= toSeq on any topic, ascending by seq, at most `limit`, expired
   * ones included: the global log, which the cluster bus reads to fill holes in what it received.
   */
  range(afterSeq: number, toSeq: number, limit: number): Promise<StoredMessage[]>;
  /** The highest seq ever pruned from a topic matching any of the filters (0 if none). */
  prunedThrough(filters: string[]): Promise<number>;
  /**
   * The retained message of every topic matching the filters, ascending by seq, expired ones left
   * out, all at once: for small sets. The hub pages through {@link retainedIndex} instead.
   */
  retained(filters: string[], now: number): Promise<StoredMessage[]>;
  /**
   * Retained topics matching any of `filters`, each once, through an index that visits only what
   * the filters can match: the cost follows the matches, not how much else is retained. In pages
   * of at most `pageSize` refs (a page may be empty), in the index's order (not by seq); each page
   * is a bounded amount of synchronous work, so a caller that yields between pages never stalls.
   */
  retainedIndex(filters: string[], pageSize: number): AsyncIterable<RetainedRef[]>;
  /** The retained messages of exactly these topics, in the order given; absent and expired ones left out. */
  retainedOf(topics: string[], now: number): Promise<StoredMessage[]>;
  /** How many topics have a retained message published by `publisher`, counted up to `cap` at most. */
  retainedCount(publisher: string, cap: number): Promise<number>;
  /** The last seq assigned (0 for an empty store). */
  lastSeq(): number;
  /** Applies retention rules; returns how many messages were removed. */
  prune(now: number, rules: RetentionRule[], fallback: Omit<RetentionRule, 'filter'>): Promise<number>;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  /**
   * Small durable records for doors' own state (MQTT sessions and their queues, Web Push
   * subscriptions and deliveries), in namespaces (`kind`). Keys sort as strings.
   */
  getRecord(kind: string, key: string): Promise<Buffer | undefined>;
  /** Writes and deletes (`value: null`) atomically, in one transaction. */
  putRecords(changes: RecordChange[]): Promise<void>;
  /** Records of a kind whose key starts with `prefix` (and sorts after `after`, when given), ascending by key, at most `limit`. */
  listRecords(kind: string, prefix?: string, limit?: number, after?: string): Promise<Array<{ key: string; value: Buffer }>>;
  close(): Promise<void>;
}
