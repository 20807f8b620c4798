import { createHash } from 'node:crypto';

/**
 * The key of a set of credentials: a SHA-256 over their parts, so passwords, cookies and tokens
 * are never held as map keys (a heap dump shows digests only).
 */
export function credentialKey(parts: ReadonlyArray<string | undefined>): string {
  const h = createHash('sha256');
  for (const p of parts) {
    // lengths first: ("ab","c") and ("a","bc") must not collide
    h.update(p === undefined ? '-1:' : `${Buffer.byteLength(p)}:`);
    if (p !== undefined) h.update(p);
  }
  return h.digest('base64url');
}

/** Answers kept until their time is up, at most `max` of them; the oldest entry goes first. */
export class AnswerCache<T> {
  private readonly entries = new Map<string, { value: T; until: number }>();

  constructor(private readonly max: number) {}

  get(key: string, now = Date.now()): T | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: T, until: number): void {
    if (this.max === 0 || until <= Date.now()) return;
    this.entries.delete(key);
    // a Map iterates in insertion order: its first key is the oldest
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { value, until });
  }

  get size(): number {
    return this.entries.size;
  }
}
