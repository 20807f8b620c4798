/**
 * Delay before retry number `attempts + 1`: exponential from `minMs`, capped at `maxMs`, with full
 * jitter (uniform in [0, step]) so receivers coming back from an outage are not hit in lockstep.
 * A `Retry-After` from the receiver wins when it is given.
 */
export function retryDelay(attempts: number, minMs: number, maxMs: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return retryAfterMs;
  const step = Math.min(maxMs, minMs * 2 ** Math.min(attempts, 30));
  return Math.round(Math.random() * step);
}
