import type { StoredMessage } from './message.js';
import type { RetainedRef, Store } from './store.js';

/** Refs per index page, and bodies per fetch: each a few ms at most of synchronous work. */
const INDEX_PAGE = 256;
const BODY_PAGE = 64;

/**
 * Waits for a loop iteration of its own. Replays take turns through one queue, one page per
 * iteration: with a setImmediate each, every replay that waited would run its page in the same
 * iteration (Node runs all immediates queued before the check phase), and 20 subscribes at once
 * would hold the loop for 20 pages.
 */
function turn(): Promise<void> {
  return new Promise((r) => {
    waiting.push(r);
    if (!scheduled) {
      scheduled = true;
      setImmediate(nextTurn);
    }
  });
}

const waiting: Array<() => void> = [];
let scheduled = false;

function nextTurn(): void {
  const w = waiting.shift();
  // queued from inside the check phase: the next one runs in the next iteration
  if (waiting.length) setImmediate(nextTurn);
  else scheduled = false;
  w?.();
}

/** One index page, sorted by seq; `at` is the next ref to hand out. */
interface Run {
  refs: RetainedRef[];
  at: number;
}

/**
 * The retained messages matching `filters` with seq <= `upTo`, in pages, ascending by seq (clients
 * drop what is not newer than their last cursor, so the order matters). Reads the index page by
 * page, sorting each page (refs, not bodies), then merges the pages and fetches bodies in seq
 * order. The event loop gets a turn between pages, and no step sorts or reads more than a page, so
 * a `#` subscriber over 100k retained topics never stalls the others. A topic replaced meanwhile
 * shows its newer message, which is past `upTo` and left out (it comes live); one cleared is gone.
 */
export async function* retainedBySeq(store: Store, filters: string[], now: number, upTo: number): AsyncGenerator<StoredMessage[]> {
  const heap = new RunHeap();
  await turn();
  for await (const page of store.retainedIndex(filters, INDEX_PAGE)) {
    const refs = page.filter((r) => r.seq <= upTo);
    if (refs.length) heap.push({ refs: refs.sort((a, b) => a.seq - b.seq), at: 0 });
    await turn();
  }
  while (heap.size) {
    await turn();
    const topics: string[] = [];
    while (topics.length < BODY_PAGE && heap.size) topics.push(heap.take().topic);
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

/** A min-heap of sorted runs by their next seq: a k-way merge, a ref at a time. */
class RunHeap {
  private readonly runs: Run[] = [];

  get size(): number {
    return this.runs.length;
  }

  push(r: Run): void {
    const h = this.runs;
    h.push(r);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (key(h[p]) <= key(h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  /** The smallest ref; its run moves on (and leaves when spent). */
  take(): RetainedRef {
    const h = this.runs;
    const top = h[0];
    const ref = top.refs[top.at++];
    if (top.at === top.refs.length) {
      const last = h.pop()!;
      if (h.length === 0) return ref;
      h[0] = last;
    }
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && key(h[l]) < key(h[m])) m = l;
      if (r < h.length && key(h[r]) < key(h[m])) m = r;
      if (m === i) return ref;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
}

const key = (r: Run): number => r.refs[r.at].seq;
