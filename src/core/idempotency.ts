import { OmnipushError } from './errors.js';
import { formatCursor } from './message.js';
import type { Principal } from './grants.js';
import type { Hub, PublishRequest } from './hub.js';
import { IDEMPOTENCY_KIND, type IdempotencyEntry } from './store.js';

const KEY_RE = /^[\x21-\x7e]{1,200}$/;

/** Checks a client's idempotency key: 1..200 printable ASCII characters, no spaces. */
export function checkIdempotencyKey(key: unknown): string {
  if (typeof key !== 'string' || !KEY_RE.test(key)) {
    throw new OmnipushError('invalid_request', 'an idempotency key is 1..200 printable ASCII characters without spaces');
  }
  return key;
}

/**
 * The record key of `key` for principal `p`: keys are per principal, so one publisher can never
 * answer (or block) another's publish by guessing its key. The principal id is escaped so the
 * space separating them is unambiguous.
 */
export function idempotencyRecordKey(principalId: string, key: string): string {
  return `${encodeURIComponent(principalId)} ${key}`;
}

export interface IdempotentResult {
  cursor: string;
  topic: string;
  /** true when the key was seen within the window: nothing new was stored. */
  repeated: boolean;
}

/**
 * Publishes with an idempotency key: within `windowMs` of the first publish with a key, a repeat
 * answers the first cursor and stores nothing. The key lives in the store (written with the message
 * itself), so a repeat after a restart or on another node sharing the store is caught too. Repeats
 * arriving at one node at the same time share the first one's outcome.
 *
 * Publishes without a key never come here: the normal path pays nothing for this.
 */
export class IdempotentPublisher {
  private readonly inFlight = new Map<string, Promise<IdempotentResult>>();

  constructor(
    private readonly hub: Hub,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The entry of a key still inside the window, if any. */
  async lookup(recordKey: string): Promise<IdempotencyEntry | undefined> {
    const raw = await this.hub.getRecord(IDEMPOTENCY_KIND, recordKey);
    if (!raw) return undefined;
    let e: IdempotencyEntry;
    try {
      e = JSON.parse(raw.toString('utf8')) as IdempotencyEntry;
    } catch {
      return undefined;
    }
    if (e.seq !== undefined && !e.cursor) e.cursor = formatCursor(this.hub.epoch, e.seq);
    return this.now() - e.at < this.windowMs ? e : undefined;
  }

  async publish(p: Principal, req: PublishRequest, key: string): Promise<IdempotentResult> {
    const rk = idempotencyRecordKey(p.id, checkIdempotencyKey(key));
    const running = this.inFlight.get(rk);
    if (running) return running.then((r) => ({ ...r, repeated: true }));
    const run = this.run(p, req, rk);
    this.inFlight.set(rk, run);
    try {
      return await run;
    } finally {
      this.inFlight.delete(rk);
    }
  }

  /**
   * Publishes under a record key the caller made (triggers: `outbox:<id>`, `delayed:<id>`), with
   * no sharing of in-flight repeats: a trigger publishes one item at a time.
   */
  publishUnder(p: Principal, req: PublishRequest, recordKey: string): Promise<IdempotentResult> {
    return this.run(p, req, recordKey);
  }

  /**
   * Publishes a trigger's batch in order, each under its record key: the keys are looked up
   * together, then every new one is handed to the hub in one go (one store append). Settles with
   * one outcome per item, in order; an item the hub refuses comes back as its error, so one bad
   * row never holds the rest.
   */
  async publishBatchUnder(p: Principal, items: Array<{ req: PublishRequest; recordKey: string }>): Promise<Array<IdempotentResult | OmnipushError>> {
    const seen = await Promise.all(items.map((it) => this.lookup(it.recordKey)));
    const firstOf = new Map<string, number>();
    const out: Array<Promise<IdempotentResult | OmnipushError>> = items.map((it, i) => {
      const e = seen[i];
      if (e) return Promise.resolve({ cursor: e.cursor, topic: e.topic, repeated: true });
      const earlier = firstOf.get(it.recordKey);
      if (earlier !== undefined) return Promise.resolve(null as unknown as IdempotentResult); // filled in below
      firstOf.set(it.recordKey, i);
      let input;
      try {
        input = this.hub.checkPublish(p, it.req);
      } catch (err) {
        if (err instanceof OmnipushError) return Promise.resolve(err);
        throw err;
      }
      input.idempotencyKey = it.recordKey;
      return this.hub.enqueue(input).then((m) => ({ cursor: m.cursor, topic: m.topic, repeated: false }));
    });
    const results = await Promise.all(out);
    // a key repeated inside the batch answers its first occurrence
    return results.map((r, i) => r ?? { ...(results[firstOf.get(items[i].recordKey)!] as IdempotentResult), repeated: true });
  }

  private async run(p: Principal, req: PublishRequest, rk: string): Promise<IdempotentResult> {
    const seen = await this.lookup(rk);
    if (seen) {
      if (seen.delayed) throw new OmnipushError('invalid_request', 'this idempotency key was used for a delayed publish', { id: seen.delayed.id });
      return { cursor: seen.cursor, topic: seen.topic, repeated: true };
    }
    const input = this.hub.checkPublish(p, req);
    input.idempotencyKey = rk;
    const m = await this.hub.enqueue(input);
    return { cursor: m.cursor, topic: m.topic, repeated: false };
  }

  /**
   * Deletes keys past the window (a delayed publish's key counts from its due time); returns how
   * many. Looks at `max` keys per run: the stale ones go, so later runs reach further.
   */
  async sweep(max = 50_000): Promise<number> {
    const now = this.now();
    const stale: string[] = [];
    for (const r of await this.hub.listRecords(IDEMPOTENCY_KIND, '', max)) {
      let until = 0;
      try {
        const e = JSON.parse(r.value.toString('utf8')) as IdempotencyEntry;
        until = e.delayed ? Math.max(e.at, e.delayed.due) : e.at;
      } catch {
        /* unreadable: remove it */
      }
      if (now - until >= this.windowMs) stale.push(r.key);
    }
    for (let i = 0; i < stale.length; i += 500) {
      await this.hub.putRecords(stale.slice(i, i + 500).map((key) => ({ kind: IDEMPOTENCY_KIND, key, value: null })));
    }
    return stale.length;
  }
}
