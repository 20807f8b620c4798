import type { Redis } from 'ioredis';
import type { StoredMessage } from '../core/message.js';
import { isExpired } from '../core/message.js';
import type { HistoryQuery } from '../core/store.js';
import { filterMatches, isWildcardFilter } from '../core/topic.js';
import { dec, lexRange, type RedisKeys } from './redis-keys.js';

/** Wildcard filters expanding to at most this many topics are read topic by topic; more scan the log. */
const MAX_EXPANDED_TOPICS = 200;
/** Entries of the global log read per command when scanning for wildcard matches. */
const LOG_PAGE = 1000;

/**
 * Serves `Store.history` from the Redis layout: exact topics (and wildcards that expand to few
 * topics) through the per-topic seq indexes, other wildcards by walking the global log.
 */
export class HistoryReader {
  constructor(
    private readonly redis: Redis,
    private readonly k: RedisKeys,
    private readonly toMessage: (seq: number, body: Buffer) => StoredMessage,
  ) {}

  async read(q: HistoryQuery): Promise<StoredMessage[]> {
    const topics = await this.expand(q.filters);
    return topics ? this.historyByTopics(topics, q) : this.historyByLog(q);
  }

  /**
   * Exact topics: merge the topics' seq indexes, then read the bodies. Each round asks every topic
   * for a small chunk (about twice its share of what is still wanted), not for the whole limit,
   * so many topics do not multiply the transfer; the merge is only complete up to the lowest last
   * seq of a topic that filled its chunk, so a round takes seqs up to there.
   */
  private async historyByTopics(topics: string[], q: HistoryQuery): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    if (topics.length === 0) return out;
    let after = q.afterSeq;
    while (out.length < q.limit) {
      const want = q.limit - out.length;
      const chunk = Math.min(want, Math.max(16, Math.ceil((2 * want) / topics.length)));
      const p = this.redis.pipeline();
      for (const t of topics) p.zrangebyscore(this.k.topic(t), `(${dec(after)}`, dec(q.toSeq), 'LIMIT', 0, chunk);
      const seqs: number[] = [];
      let bound = Infinity;
      for (const [err, res] of (await p.exec()) ?? []) {
        if (err) throw err;
        const members = res as string[];
        for (const m of members) seqs.push(Number(m.slice(0, m.indexOf(':'))));
        if (members.length === chunk) bound = Math.min(bound, seqs[seqs.length - 1]);
      }
      seqs.sort((a, b) => a - b);
      const taken = seqs.filter((s) => s <= bound).slice(0, want);
      await this.fill(out, taken, q);
      if (taken.length === want) after = taken[taken.length - 1];
      else if (bound === Infinity) break; // every topic is read up to toSeq
      else after = bound;
    }
    return out;
  }

  /** Every message with afterSeq < seq <= toSeq, whatever its topic, expired ones included. */
  async range(afterSeq: number, toSeq: number, limit: number): Promise<StoredMessage[]> {
    const members = await this.redis.zrangebyscore(this.k.log, `(${dec(afterSeq)}`, dec(toSeq), 'LIMIT', 0, limit);
    const out: StoredMessage[] = [];
    await this.fill(out, members.map((m) => Number(m.slice(0, m.indexOf(' ')))), { filters: [], afterSeq, toSeq, limit, now: -Infinity });
    return out;
  }

  /** Many topics: walk the global log in seq order and keep entries whose topic matches. */
  private async historyByLog(q: HistoryQuery): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    let after = q.afterSeq;
    while (out.length < q.limit) {
      const members = await this.redis.zrangebyscore(this.k.log, `(${dec(after)}`, dec(q.toSeq), 'LIMIT', 0, LOG_PAGE);
      const matched: number[] = [];
      for (const m of members) {
        const sp = m.indexOf(' ');
        const topic = m.slice(sp + 1);
        if (q.filters.some((f) => filterMatches(f, topic))) matched.push(Number(m.slice(0, sp)));
      }
      await this.fill(out, matched, q);
      if (members.length < LOG_PAGE) break;
      after = Number(members[members.length - 1].slice(0, members[members.length - 1].indexOf(' ')));
    }
    return out;
  }

  /** Reads the messages of `seqs` (ascending) into `out` until `q.limit`, skipping expired and just-pruned ones. */
  private async fill(out: StoredMessage[], seqs: number[], q: HistoryQuery): Promise<void> {
    let i = 0;
    while (i < seqs.length && out.length < q.limit) {
      const slice = seqs.slice(i, i + (q.limit - out.length));
      i += slice.length;
      const bodies = await this.redis.hmgetBuffer(this.k.msg, ...slice.map(dec));
      bodies.forEach((body, j) => {
        // null: pruned between reading the index and the body; the pruned mark announces the gap
        if (!body) return;
        const m = this.toMessage(slice[j], body);
        if (!isExpired(m, q.now)) out.push(m);
      });
    }
  }

  /**
   * The exact topics the filters stand for, found through the lexicographic topic index from each
   * wildcard filter's literal start; null when that is too many to read topic by topic.
   */
  private async expand(filters: string[]): Promise<string[] | null> {
    const found = new Set(filters.filter((f) => !isWildcardFilter(f)));
    for (const f of filters) {
      if (!isWildcardFilter(f)) continue;
      const [min, max] = lexRange(literalStart(f));
      const topics = await this.redis.zrangebylex(this.k.topics, min, max, 'LIMIT', 0, MAX_EXPANDED_TOPICS + 1);
      if (topics.length > MAX_EXPANDED_TOPICS) return null;
      for (const t of topics) if (filterMatches(f, t)) found.add(t);
      if (found.size > MAX_EXPANDED_TOPICS) return null;
    }
    return [...found];
  }
}

/**
 * The levels of a filter before its first wildcard, without a trailing `/` (`a/#` also matches
 * `a` itself). Every topic the filter matches starts with it.
 */
function literalStart(filter: string): string {
  const levels = filter.split('/');
  const lit: string[] = [];
  for (const l of levels) {
    if (l === '+' || l === '#') break;
    lit.push(l);
  }
  return lit.join('/');
}
