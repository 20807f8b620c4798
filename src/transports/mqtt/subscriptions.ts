import type { SubOptions } from './session.js';

const NONE: ReadonlyMap<string, SubOptions> = new Map();

/**
 * A session's non-shared subscriptions, filter → options, with the Map calls the broker makes.
 * Nearly every session holds one filter: that one is kept in two fields, and a Map (~180 bytes
 * even for one entry) is made only from the second filter on, and dropped again when one is left.
 */
export class Subscriptions {
  /** The filter when there is exactly one and no map. */
  private soleKey: string | undefined = undefined;
  private soleOpts: SubOptions | undefined = undefined;
  private map: Map<string, SubOptions> | undefined = undefined;

  get size(): number {
    return this.map ? this.map.size : this.soleKey === undefined ? 0 : 1;
  }

  /** The filter when it is the only one (the delivery path tests it without iterating). */
  get only(): string | undefined {
    return this.soleKey;
  }

  /** The options of {@link only}. */
  get onlyOptions(): SubOptions | undefined {
    return this.soleOpts;
  }

  /** Every filter when there are two or more; empty otherwise (then {@link only} says it). */
  get several(): ReadonlyMap<string, SubOptions> {
    return this.map ?? NONE;
  }

  has(filter: string): boolean {
    return this.map ? this.map.has(filter) : this.soleKey === filter;
  }

  get(filter: string): SubOptions | undefined {
    if (this.map) return this.map.get(filter);
    return this.soleKey === filter ? this.soleOpts : undefined;
  }

  set(filter: string, opts: SubOptions): this {
    if (this.map) this.map.set(filter, opts);
    else if (this.soleKey === undefined || this.soleKey === filter) {
      this.soleKey = filter;
      this.soleOpts = opts;
    } else {
      this.map = new Map([[this.soleKey, this.soleOpts!], [filter, opts]]);
      this.soleKey = this.soleOpts = undefined;
    }
    return this;
  }

  delete(filter: string): boolean {
    const m = this.map;
    if (!m) {
      if (this.soleKey !== filter) return false;
      this.soleKey = this.soleOpts = undefined;
      return true;
    }
    if (!m.delete(filter)) return false;
    if (m.size === 1) {
      const [[k, o]] = m;
      this.map = undefined;
      this.soleKey = k;
      this.soleOpts = o;
    }
    return true;
  }

  keys(): string[] {
    if (this.map) return [...this.map.keys()];
    return this.soleKey === undefined ? [] : [this.soleKey];
  }

  /** A copy: the subscriptions may change while it is read. */
  entries(): Array<[string, SubOptions]> {
    if (this.map) return [...this.map];
    return this.soleKey === undefined ? [] : [[this.soleKey, this.soleOpts!]];
  }

  [Symbol.iterator](): IterableIterator<[string, SubOptions]> {
    return this.entries()[Symbol.iterator]();
  }
}

const COMMON: Readonly<SubOptions>[] = [];
for (let i = 0; i < 36; i++) {
  COMMON.push(Object.freeze({ qos: (i % 3) as 0 | 1 | 2, nl: ((i / 3) | 0) % 2 === 1, rap: ((i / 6) | 0) % 2 === 1, rh: ((i / 12) | 0) as 0 | 1 | 2 }));
}

/**
 * Options without a Subscription Identifier, as one shared frozen object per combination: an
 * object per subscription cost ~56 bytes on every idle connection. Only for a session whose
 * changes are never rolled back (not persistent): a rollback tells its own options apart by identity.
 */
export function commonOptions(qos: 0 | 1 | 2, nl: boolean, rap: boolean, rh: 0 | 1 | 2): SubOptions {
  return COMMON[qos + (nl ? 3 : 0) + (rap ? 6 : 0) + rh * 12] as SubOptions;
}
