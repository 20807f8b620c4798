import type { RetainedRef } from '../core/store.js';
import { filterMatches } from '../core/topic.js';

/**
 * Retained topics indexed as sorted byte keys, for the sqlite and Redis stores: a topic's key is
 * its UTF-8 bytes with every `/` made 0x00. NUL never occurs in a topic and 0x00 sorts first, so
 * a level's subtree is one contiguous key range ([P 0x00, P 0x01) holds every topic below P), and
 * a filter can be walked level by level with range seeks: a `+` level jumps from child to child,
 * a literal level is one step down, `#` is one range. The walk visits the trie's nodes on paths
 * the filter can match and nothing beside them, whatever else is retained.
 */

/** One entry of the sorted index. `seq` < 0 when the source cannot tell it (the store fills it in). */
export interface KeyedRef {
  key: Buffer;
  seq: number;
}

/** A sorted index of retained topics' keys: entries with from <= key < to (to null: no upper bound), ascending bytewise, at most `limit`. */
export type KeyRange<R> = (from: Buffer, to: Buffer | null, limit: number) => R;

/** What the walk asks for: a range read, or that a page be handed out. */
type Step = { seek: [Buffer, Buffer | null, number] } | { page: RetainedRef[] };

const SEP = Buffer.from([0]);
const ONE = Buffer.from([1]);
const EMPTY = Buffer.alloc(0);
const DOLLAR = Buffer.from('$');
const AFTER_DOLLAR = Buffer.from('%');
/** Index seeks per page at most, so a walk through many non-matching children still yields often. */
const SEEKS_PER_PAGE = 128;

export function levelKey(topic: string): Buffer {
  return Buffer.from(topic.replaceAll('/', '\0'), 'utf8');
}

export function topicOfKey(key: Buffer): string {
  return key.toString('utf8').replaceAll('\0', '/');
}

/**
 * Pages of retained topics matching any of `filters` (each topic once), read through a synchronous
 * index (sqlite). A page may be empty (the seek budget ran out first). The walk is one synchronous
 * generator driven here: no promise per seek.
 */
export function* walkRetainedKeys(range: KeyRange<KeyedRef[]>, filters: string[], pageSize: number): Generator<RetainedRef[]> {
  const g = walk(filters, pageSize);
  for (let r = g.next(); !r.done; ) {
    const step = r.value;
    if ('seek' in step) r = g.next(range(...step.seek));
    else {
      yield step.page;
      r = g.next([]);
    }
  }
}

/** {@link walkRetainedKeys} through an index that answers asynchronously (Redis). */
export async function* walkRetainedKeysAsync(range: KeyRange<Promise<KeyedRef[]>>, filters: string[], pageSize: number): AsyncGenerator<RetainedRef[]> {
  const g = walk(filters, pageSize);
  for (let r = g.next(); !r.done; ) {
    const step = r.value;
    if ('seek' in step) r = g.next(await range(...step.seek));
    else {
      yield step.page;
      r = g.next([]);
    }
  }
}

function* walk(filters: string[], pageSize: number): Generator<Step, void, KeyedRef[]> {
  const w = new Walk(pageSize);
  for (let i = 0; i < filters.length; i++) {
    w.levels = filters[i].split('/');
    w.earlier = filters.slice(0, i);
    yield* w.visit(null, 0);
  }
  if (w.page.length) yield { page: w.page };
}

class Walk {
  page: RetainedRef[] = [];
  levels: string[] = [];
  /** Filters already walked: a topic they match was emitted by them. */
  earlier: string[] = [];
  private seeks = 0;

  constructor(private readonly pageSize: number) {}

  private emit(e: KeyedRef): void {
    const topic = topicOfKey(e.key);
    for (const f of this.earlier) if (filterMatches(f, topic)) return;
    this.page.push({ topic, seq: e.seq });
  }

  private *seek(from: Buffer, to: Buffer | null, limit: number): Generator<Step, KeyedRef[], KeyedRef[]> {
    this.seeks++;
    return yield { seek: [from, to, limit] };
  }

  /** The page, if it is due (full, or the seek budget is spent); the caller yields it. */
  private due(): Step | null {
    if (this.page.length < this.pageSize && this.seeks < SEEKS_PER_PAGE) return null;
    const p = this.page;
    this.page = [];
    this.seeks = 0;
    return { page: p };
  }

  /** Topics below `prefix` (null: the root) matching levels[i..]. */
  *visit(prefix: Buffer | null, i: number): Generator<Step, void, KeyedRef[]> {
    const levels = this.levels;
    if (i === levels.length) {
      // prefix is a whole topic name: present or not
      const [e] = yield* this.seek(prefix!, Buffer.concat([prefix!, SEP]), 1);
      if (e) this.emit(e);
      const p = this.due();
      if (p) yield p;
      return;
    }
    const f = levels[i];
    if (f === '#') {
      // `a/#` matches `a` itself as well (MQTT 4.7.1.2)
      if (prefix) yield* this.visit(prefix, levels.length);
      if (prefix) yield* this.scan(Buffer.concat([prefix, SEP]), Buffer.concat([prefix, ONE]));
      else {
        // a leading wildcard does not match `$` topics: skip the one range they sort in
        yield* this.scan(EMPTY, DOLLAR);
        yield* this.scan(AFTER_DOLLAR, null);
      }
      return;
    }
    if (f === '+') {
      let from = prefix ? Buffer.concat([prefix, SEP]) : EMPTY;
      const to = prefix ? Buffer.concat([prefix, ONE]) : null;
      const base = from.length;
      const last = i === levels.length - 1;
      for (;;) {
        const [e] = yield* this.seek(from, to, 1);
        if (!e) return;
        let end = e.key.indexOf(0, base);
        if (end < 0) end = e.key.length;
        if (prefix === null && e.key[0] === 0x24) {
          // a leading `+` does not match `$` topics: jump past all of them
          from = AFTER_DOLLAR;
          continue;
        }
        const child = Buffer.from(e.key.subarray(0, end));
        {
          // the child's block starts with the child's own key when that topic exists
          if (last) {
            if (end === e.key.length) this.emit(e);
          } else yield* this.visit(child, i + 1);
        }
        const p = this.due();
        if (p) yield p;
        from = Buffer.concat([child, ONE]);
      }
    }
    const lit = Buffer.from(f, 'utf8');
    yield* this.visit(prefix ? Buffer.concat([prefix, SEP, lit]) : lit, i + 1);
  }

  /** Every key in [from, to), in pages. */
  private *scan(from: Buffer, to: Buffer | null): Generator<Step, void, KeyedRef[]> {
    for (;;) {
      const want = Math.max(1, this.pageSize - this.page.length);
      const rows = yield* this.seek(from, to, want);
      for (const e of rows) this.emit(e);
      const p = this.due();
      if (p) yield p;
      if (rows.length < want) return;
      // the smallest key after the last one read
      from = Buffer.concat([rows[rows.length - 1].key, SEP]);
    }
  }
}
