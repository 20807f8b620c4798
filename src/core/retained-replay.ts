import type { StoredMessage } from './message.js';
import type { Store } from './store.js';

/** Refs per index page, and bodies per fetch. */
const INDEX_PAGE = 512;
const BODY_PAGE = 256;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * The retained messages matching `filters` with seq <= `upTo`, in pages, ascending by seq (clients
 * drop what is not newer than their last cursor, so the order matters). Reads the index page by
 * page, sorts the seqs (small: refs, not bodies), then fetches bodies in seq order; gives the event
 * loop a turn between pages, so a `#` subscriber over 100k retained topics never stalls the others.
 * A topic replaced meanwhile shows its newer message, which is past `upTo` and left out (it comes
 * live); one cleared meanwhile is gone.
 */
export async function* retainedBySeq(store: Store, filters: string[], now: number, upTo: number): AsyncGenerator<StoredMessage[]> {
  const topicOf = new Map<number, string>();
  let seqs = new Float64Array(64);
  let n = 0;
  for await (const page of store.retainedIndex(filters, INDEX_PAGE)) {
    for (const r of page) {
      if (r.seq > upTo) continue;
      if (n === seqs.length) {
        const bigger = new Float64Array(n * 2);
        bigger.set(seqs);
        seqs = bigger;
      }
      seqs[n++] = r.seq;
      topicOf.set(r.seq, r.topic);
    }
    await turn();
  }
  if (n === 0) return;
  const order = seqs.subarray(0, n).sort();
  for (let i = 0; i < n; i += BODY_PAGE) {
    if (i > 0) await turn();
    const topics: string[] = [];
    for (let j = i; j < Math.min(n, i + BODY_PAGE); j++) topics.push(topicOf.get(order[j])!);
    const out: StoredMessage[] = [];
    for (const m of await store.retainedOf(topics, now)) if (m.seq <= upTo) out.push(m);
    if (out.length) yield out;
  }
}

/** Every retained message matching `filters`, ascending by seq ({@link Store.retained}). */
export async function allRetained(store: Store, filters: string[], now: number): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for await (const page of retainedBySeq(store, filters, now, Infinity)) for (const m of page) out.push(m);
  return out;
}
