/** Edit distance counting a swap of two neighbours as one edit (typos swap letters); above `max` it gives up. */
function distance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      let d = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      cur[j] = d;
      if (d < best) best = d;
    }
    if (best > max) return max + 1;
    before = prev;
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The allowed key a mistyped one most likely meant: case and `_`/`-` are ignored (env-style and
 * kebab-case spellings), then up to a third of the letters may differ. Undefined when nothing is close.
 */
export function closestKey(typed: string, allowed: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const t = norm(typed);
  const max = Math.max(1, Math.floor(t.length / 3));
  let best: string | undefined;
  let bestD = max + 1;
  for (const k of allowed) {
    const d = distance(t, norm(k), max);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}
