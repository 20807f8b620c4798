import type { StoredMessage } from '../core/message.js';
import { isExpired } from '../core/message.js';
import { allRetained } from '../core/retained-replay.js';
import { IDEMPOTENCY_KIND, idempotencyRecord, toStored, type AppendInput, type HistoryQuery, type RecordChange, type RetainedRef, type RetentionRule, type Store } from '../core/store.js';
import { filterMatches, isWildcardFilter } from '../core/topic.js';
import { newEpoch } from './epoch.js';
import { RetainedTrie } from './retained-trie.js';
import { retentionFor } from './retention.js';

/** Topics pruned away whose exact pruned mark is kept (see MemoryStore.droppedMarks). */
const MAX_DROPPED_MARKS = 10_000;

interface TopicLog {
  messages: StoredMessage[];
  prunedThrough: number;
}

/** Everything in process memory; gone at exit. For tests, benchmarks and throwaway servers. */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  epoch = newEpoch();
  private seq = 0;
  /** Every message in seq order (across topics), for scans by wildcard filters. */
  private all: StoredMessage[] = [];
  private topics = new Map<string, TopicLog>();
  private retainedTrie = new RetainedTrie();
  /** publisher → retained topics holding a message of theirs (the quota counts it). */
  private retainedBy = new Map<string, number>();
  /**
   * Pruned marks of topics whose history was pruned away entirely (their logs are dropped), the
   * most recent {@link MAX_DROPPED_MARKS}; older ones are folded into `droppedThrough`, so memory
   * stays bounded and a resume from before a folded mark is told of a possible gap, never none.
   */
  private droppedMarks = new Map<string, number>();
  private droppedThrough = 0;
  private meta = new Map<string, string>();
  private records = new Map<string, Map<string, Buffer>>();

  async open(): Promise<void> {}

  async append(batch: AppendInput[]): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    for (const input of batch) {
      const seq = ++this.seq;
      const m = toStored(input, this.epoch, seq);
      this.all.push(m);
      let log = this.topics.get(m.topic);
      if (!log) {
        // a topic pruned away and written again takes its mark back
        const mark = this.droppedMarks.get(m.topic) ?? 0;
        if (mark) this.droppedMarks.delete(m.topic);
        this.topics.set(m.topic, (log = { messages: [], prunedThrough: mark }));
      }
      log.messages.push(m);
      if (m.retain) {
        const old = m.payload.length === 0 ? this.retainedTrie.delete(m.topic) : this.retainedTrie.set(m);
        if (old) this.countRetained(old.publisher, -1);
        if (m.payload.length) this.countRetained(m.publisher, 1);
      }
      if (input.idempotencyKey !== undefined) {
        // a record made here and held by nobody else: kept as it is, not copied
        this.recordsOf(IDEMPOTENCY_KIND).set(input.idempotencyKey, idempotencyRecord(m));
        input.idempotencyKey = undefined; // not part of the stored message (the same object)
      }
      out.push(m);
    }
    return out;
  }

  async history(q: HistoryQuery): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    if (q.filters.length === 1 && !isWildcardFilter(q.filters[0])) {
      const log = this.topics.get(q.filters[0]);
      if (!log) return out;
      collect(log.messages, q, () => true, out);
      return out;
    }
    collect(this.all, q, (m) => q.filters.some((f) => filterMatches(f, m.topic)), out);
    return out;
  }

  async range(afterSeq: number, toSeq: number, limit: number): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    // `all` is in seq order: binary-search the first seq past afterSeq
    let lo = 0;
    let hi = this.all.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.all[mid].seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.all.length && out.length < limit && this.all[i].seq <= toSeq; i++) out.push(this.all[i]);
    return out;
  }

  async prunedThrough(filters: string[]): Promise<number> {
    let max = this.droppedThrough;
    for (const [topic, log] of this.topics) {
      if (log.prunedThrough > max && filters.some((f) => filterMatches(f, topic))) max = log.prunedThrough;
    }
    for (const [topic, mark] of this.droppedMarks) {
      if (mark > max && filters.some((f) => filterMatches(f, topic))) max = mark;
    }
    return max;
  }

  async retained(filters: string[], now: number): Promise<StoredMessage[]> {
    return allRetained(this, filters, now);
  }

  async *retainedIndex(filters: string[], pageSize: number): AsyncGenerator<RetainedRef[]> {
    let page: RetainedRef[] = [];
    for (let i = 0; i < filters.length; i++) {
      const earlier = filters.slice(0, i);
      for (const m of this.retainedTrie.match(filters[i])) {
        if (m && !earlier.some((f) => filterMatches(f, m.topic))) page.push({ topic: m.topic, seq: m.seq });
        if (page.length >= pageSize || m === null) {
          yield page;
          page = [];
        }
      }
    }
    if (page.length) yield page;
  }

  async retainedOf(topics: string[], now: number): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    for (const t of topics) {
      const m = this.retainedTrie.get(t);
      if (m && !isExpired(m, now)) out.push(m);
    }
    return out;
  }

  async retainedCount(publisher: string, cap: number): Promise<number> {
    return Math.min(cap, this.retainedBy.get(publisher) ?? 0);
  }

  /** How many retained topics each publisher holds; an entry lives only while above zero. */
  private countRetained(publisher: string | undefined, d: number): void {
    const p = publisher ?? '';
    const n = (this.retainedBy.get(p) ?? 0) + d;
    if (n > 0) this.retainedBy.set(p, n);
    else this.retainedBy.delete(p);
  }

  /** Entries of the per-topic structures, for checking that memory follows the live data. */
  indexSizes(): { topics: number; retained: number; retainedNodes: number; publishers: number } {
    const t = this.retainedTrie;
    return { topics: this.topics.size + this.droppedMarks.size, retained: t.size, retainedNodes: t.nodes, publishers: this.retainedBy.size };
  }

  lastSeq(): number {
    return this.seq;
  }

  async prune(now: number, rules: RetentionRule[], fallback: Omit<RetentionRule, 'filter'>): Promise<number> {
    let removed = 0;
    const gone = new Set<number>();
    for (const [topic, log] of this.topics) {
      const r = retentionFor(topic, rules, fallback);
      const msgs = log.messages;
      let cut = Math.max(0, msgs.length - r.maxCount);
      while (cut < msgs.length && (now - msgs[cut].publishedAt > r.maxAgeMs || isExpired(msgs[cut], now))) cut++;
      if (cut === 0) continue;
      for (let i = 0; i < cut; i++) gone.add(msgs[i].seq);
      log.prunedThrough = Math.max(log.prunedThrough, msgs[cut - 1].seq);
      log.messages = msgs.slice(cut);
      removed += cut;
      if (log.messages.length === 0) {
        this.topics.delete(topic);
        this.droppedMarks.delete(topic);
        this.droppedMarks.set(topic, log.prunedThrough);
        if (this.droppedMarks.size > MAX_DROPPED_MARKS) {
          const [oldest, mark] = this.droppedMarks.entries().next().value!;
          this.droppedMarks.delete(oldest);
          this.droppedThrough = Math.max(this.droppedThrough, mark);
        }
      }
    }
    if (removed) this.all = this.all.filter((m) => !gone.has(m.seq));
    return removed;
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.meta.get(key);
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.meta.set(key, value);
  }

  async getRecord(kind: string, key: string): Promise<Buffer | undefined> {
    return this.records.get(kind)?.get(key);
  }

  async putRecords(changes: RecordChange[]): Promise<void> {
    for (const c of changes) this.putRecord(c.kind, c.key, c.value);
  }

  private putRecord(kind: string, key: string, value: Buffer | null): void {
    const m = this.recordsOf(kind);
    // a copy: the caller may reuse its buffer
    if (value === null) m.delete(key);
    else m.set(key, Buffer.from(value));
  }

  private recordsOf(kind: string): Map<string, Buffer> {
    let m = this.records.get(kind);
    if (!m) this.records.set(kind, (m = new Map()));
    return m;
  }

  async listRecords(kind: string, prefix = '', limit = Infinity, after?: string): Promise<Array<{ key: string; value: Buffer }>> {
    const m = this.records.get(kind);
    if (!m) return [];
    const keys = [...m.keys()].filter((k) => k.startsWith(prefix) && (after === undefined || k > after)).sort();
    return keys.slice(0, limit).map((key) => ({ key, value: m.get(key)! }));
  }

  async close(): Promise<void> {}
}

/** Appends messages of `list` (ascending by seq) inside the query window to `out`. */
function collect(list: StoredMessage[], q: HistoryQuery, keep: (m: StoredMessage) => boolean, out: StoredMessage[]): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].seq <= q.afterSeq) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < list.length && out.length < q.limit; i++) {
    const m = list[i];
    if (m.seq > q.toSeq) break;
    if (isExpired(m, q.now) || !keep(m)) continue;
    out.push(m);
  }
}
