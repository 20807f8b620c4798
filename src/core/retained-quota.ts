import { OmnipushError } from './errors.js';
import type { AppendInput, Store } from './store.js';

/** What the quota needs of a queued publish: its input, and someone to tell of a refusal. */
export interface QueuedRetained {
  input: AppendInput;
  waiter: { failed(e: unknown): void };
}

/**
 * Retained topics per principal. Counted in the store from the retained messages' `publisher`, so
 * the count holds across restarts and, with the Redis store, across the cluster. Only a publish
 * that sets a retained message is looked at; replacing or clearing one's own costs nothing extra.
 * Messages without a publisher (the server's own `$SYS` topics) are not counted.
 */
export class RetainedQuota {
  constructor(
    private readonly store: Store,
    readonly limit: number,
  ) {}

  /** Does this input need a look before it is stored? */
  static concerns(input: AppendInput): boolean {
    return input.retain === true && input.payload.length > 0 && input.publisher !== undefined;
  }

  /**
   * The batch without the publishes that would give their principal one retained topic too many;
   * those are failed with `quota_exceeded`. The batch is looked at in order, so two new topics in
   * one batch count as two.
   */
  async admit<T extends QueuedRetained>(batch: T[]): Promise<T[]> {
    const held = new Map<string, number>();
    const out: T[] = [];
    // told only once every look succeeded: a store error fails the whole batch, each waiter once
    const refused: Array<[T, OmnipushError]> = [];
    for (const b of batch) {
      if (!RetainedQuota.concerns(b.input)) {
        out.push(b);
        continue;
      }
      const p = b.input.publisher!;
      let n = held.get(p);
      if (n === undefined) n = await this.store.retainedCount(p, this.limit);
      if (n >= this.limit) {
        // at the limit, only a topic that is already one's own may be set again
        const [cur] = await this.store.retainedOf([b.input.topic], 0);
        if (cur?.publisher !== p) {
          refused.push([
            b,
            new OmnipushError('quota_exceeded', `principal ${JSON.stringify(p)} holds ${n} retained topics; the limit retainedTopicsPerPrincipal is ${this.limit}`, {
              limit: 'retainedTopicsPerPrincipal',
              max: this.limit,
            }),
          ]);
          continue;
        }
      } else n++; // may be a replacement: counting it anyway errs towards the ownership look above
      held.set(p, n);
      out.push(b);
    }
    for (const [b, e] of refused) b.waiter.failed(e);
    return out;
  }
}
