/** Latency histogram in whole milliseconds (0..MAX_MS, the last bucket holds everything above). */
export const MAX_MS = 10_000;

export class Histogram {
  counts: number[];
  constructor(counts?: number[]) {
    this.counts = counts ?? new Array<number>(MAX_MS + 1).fill(0);
  }

  add(ms: number): void {
    const i = ms < 0 ? 0 : ms > MAX_MS ? MAX_MS : Math.floor(ms);
    this.counts[i]++;
  }

  merge(other: number[]): void {
    for (let i = 0; i < other.length; i++) this.counts[i] += other[i];
  }

  get total(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  percentile(p: number): number {
    const total = this.total;
    if (total === 0) return NaN;
    const want = Math.ceil(total * p);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= want) return i;
    }
    return MAX_MS;
  }
}

/** Reads the 13-digit `<ms>` at the start of a stamped payload; NaN when it is not there. */
export function stampOf(buf: Buffer, start: number, end: number): number {
  if (end - start < 14 || buf[start + 13] !== 0x7c) return NaN;
  let ms = 0;
  for (let i = start; i < start + 13; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return NaN;
    ms = ms * 10 + d;
  }
  return ms;
}

/** The stamp of a payload somewhere inside `buf[start, end)` (e.g. in a JSON frame): the 13 digits before its first `|`. */
export function stampWithin(buf: Buffer, start: number, end: number): number {
  const bar = buf.indexOf(0x7c, start);
  if (bar < 0 || bar >= end || bar - 13 < start) return NaN;
  return stampOf(buf, bar - 13, end);
}
