import { OmnipushError } from '../core/errors.js';

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** A delay as seconds (a number) or a duration string (`90s`, `5m`, `2h`, `1d`, `1500ms`, `30`); in ms. */
export function parseDelay(v: unknown): number {
  let ms: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) ms = Math.round(v * 1000);
  else if (typeof v === 'string') {
    const m = DURATION_RE.exec(v.trim());
    if (m) ms = Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']);
  }
  if (ms === undefined || !Number.isFinite(ms)) throw new OmnipushError('invalid_request', 'delay must be seconds (a number ≥ 0) or a duration such as "90s", "5m", "2h"');
  return ms;
}

/** An RFC 3339 time (`2026-12-06T15:00:00Z`); ms since the epoch. */
export function parseAt(v: unknown): number {
  const t = typeof v === 'string' && RFC3339_RE.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(t)) throw new OmnipushError('invalid_request', 'at must be an RFC 3339 time such as "2026-12-06T15:00:00Z"');
  return t;
}

/** The due time (ms) that `delay` or `at` names, or undefined when neither is given. */
export function dueFrom(delay: unknown, at: unknown, now: number): number | undefined {
  if (delay !== undefined && at !== undefined) throw new OmnipushError('invalid_request', 'give delay or at, not both');
  if (delay !== undefined) return now + parseDelay(delay);
  if (at !== undefined) return parseAt(at);
  return undefined;
}
