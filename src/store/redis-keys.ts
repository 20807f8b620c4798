/** Decimal without exponent, as the scripts and score ranges want it. */
export const dec = (n: number) => Math.trunc(n).toString();

/** Every key of one store (one prefix); the layout is described in `redis-scripts.ts`. */
export function redisKeys(prefix: string) {
  return {
    state: `${prefix}state`,
    meta: `${prefix}meta`,
    msg: `${prefix}msg`,
    log: `${prefix}log`,
    topics: `${prefix}topics`,
    pruned: `${prefix}pruned`,
    retained: `${prefix}retained`,
    retainedKeys: `${prefix}retained:index`,
    retainedMeta: `${prefix}retained:meta`,
    retainedCounts: `${prefix}retained:count`,
    bus: `${prefix}bus`,
    topic: (t: string) => `${prefix}t:${t}`,
    recordValues: (kind: string) => `${prefix}rv:${kind}`,
    recordKeys: (kind: string) => `${prefix}rk:${kind}`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;

/**
 * ZRANGEBYLEX bounds of every member starting with `prefix`. The upper bound appends byte 0xFF,
 * which never occurs in UTF-8, so it sorts after every string with that prefix.
 */
export function lexRange(prefix: string): [string | Buffer, string | Buffer] {
  if (prefix === '') return ['-', '+'];
  const p = Buffer.from(prefix, 'utf8');
  return [Buffer.concat([Buffer.from('['), p]), Buffer.concat([Buffer.from('('), p, Buffer.from([0xff])])];
}
