import { z } from 'zod';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/;

/**
 * `"90s"` → 90, `"5m"` → 300, `"1d"` → 86400, `"500ms"` → 0.5; a plain number string (`"90"`) is
 * seconds. Returns undefined for anything else. Compound spans (`"1h30m"`) are not taken: one unit
 * keeps a typo from silently meaning something else.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(t)) return Number(t);
  const m = DURATION.exec(t);
  if (!m) return undefined;
  // round away binary noise such as 0.1 * 3
  return Math.round(Number(m[1]) * UNIT_SECONDS[m[2]] * 1e6) / 1e6;
}

/**
 * Wraps a number schema (in seconds) so that it also takes a duration string; the output stays a
 * number of seconds, and the inner schema's bounds apply to the converted value.
 */
export function durationSeconds<T extends z.ZodTypeAny>(inner: T) {
  return z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      if (typeof v === 'number') return v;
      const n = parseDuration(v);
      if (n === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${v}" is not a duration; write seconds as a number or a string like "90s", "5m", "2h", "1d", "500ms"` });
        return z.NEVER;
      }
      return n;
    })
    .pipe(inner);
}
