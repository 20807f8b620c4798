import { OmnipushError, type ErrorCode } from './errors.js';

/**
 * What a client says about itself in member lists: a JSON object of at most `maxBytes` (UTF-8),
 * else `code` (the token's claim is refused as credentials are, a frame field as a bad request).
 */
export function presenceInfoOf(raw: unknown, maxBytes: number, what: string, code: ErrorCode): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new OmnipushError(code, `${what} must be a JSON object`);
  const size = Buffer.byteLength(JSON.stringify(raw));
  if (size > maxBytes) throw new OmnipushError(code, `${what} is ${size} bytes; presence.maxInfoBytes allows ${maxBytes}`, { limit: 'presence.maxInfoBytes' });
  return raw as Record<string, unknown>;
}

/** A client-chosen stable id (`client=`), which makes a reconnect the same member. */
export function clientIdOf(raw: string | null | undefined): string | undefined {
  if (raw === null || raw === undefined || raw === '') return undefined;
  if (raw.length > 128 || !/^[\w.:@-]+$/.test(raw)) throw new OmnipushError('invalid_request', 'client must be 1-128 characters of letters, digits, _ . : @ -');
  return raw;
}
