import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { formatCursor, parseCursor, type StoredMessage } from '../../core/message.js';
import { MAX_PLAINTEXT } from './ece.js';

/** Notification fields the service worker shows; taken from message properties, else from JSON data. */
export const NOTIFICATION_FIELDS = ['title', 'body', 'icon', 'url'] as const;
type NotificationField = (typeof NOTIFICATION_FIELDS)[number];

/** The JSON a browser's service worker receives (docs/webpush.md). */
export interface PushPayload {
  topic: string;
  cursor: string;
  publishedAt: number;
  data?: string;
  data_base64?: string;
  /** The message did not fit a push message: fetch it from the history API (`since`, `limit=1`). */
  truncated?: true;
  /** With `truncated`: the cursor just before this message, so `GET /v1/history?topic=<topic>&since=<since>&limit=1` returns it. */
  since?: string;
  title?: string;
  body?: string;
  icon?: string;
  url?: string;
}

export type Urgency = 'very-low' | 'low' | 'normal' | 'high';
const URGENCIES = new Set<string>(['very-low', 'low', 'normal', 'high']);

/** What one delivery needs, small enough to keep in the durable queue. */
export interface PushJob {
  /** Full payload JSON (UTF-8), or null when the message is too big for a push message. */
  full: string | null;
  /** Payload JSON without the data, for too-big messages and 413 answers. */
  small: string;
  ttl: number;
  urgency: Urgency;
  /** RFC 8030 `Topic` (replacement key), ≤ 32 base64url characters. */
  replaceKey?: string;
}

function property(m: StoredMessage, name: string): string | undefined {
  if (!m.properties) return undefined;
  for (const [k, v] of m.properties) if (k === name) return v;
  return undefined;
}

/** Notification fields: a message property of the same name wins over a field of a JSON object payload. */
function notificationFields(m: StoredMessage, text: string | undefined): Partial<Record<NotificationField, string>> {
  const out: Partial<Record<NotificationField, string>> = {};
  let json: Record<string, unknown> | undefined;
  if (text !== undefined && text.length > 0 && text[0] === '{' && (!m.contentType || m.contentType.includes('json'))) {
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
    } catch {
      /* plain text that starts with a brace */
    }
  }
  for (const f of NOTIFICATION_FIELDS) {
    const p = property(m, f);
    if (p !== undefined) out[f] = p;
    else if (json && typeof json[f] === 'string') out[f] = json[f];
  }
  return out;
}

/**
 * A `Topic` header value: used as given when it is already 1..32 base64url characters, else
 * hashed to 32 (so any application key works and equal keys still replace each other).
 */
export function replaceKeyFor(key: string): string {
  if (/^[A-Za-z0-9_-]{1,32}$/.test(key)) return key;
  return createHash('sha256').update(key).digest().subarray(0, 24).toString('base64url');
}

/**
 * Turns a message into a push job. Options come from message properties: `urgency`
 * (very-low|low|normal|high), `push-topic` (replacement key); TTL is what is left of the
 * message's own ttl, else `defaultTtl`.
 */
export function pushJobFor(m: StoredMessage, defaultTtl: number, now: number): PushJob {
  const text = isUtf8(m.payload) ? m.payload.toString('utf8') : undefined;
  const base: PushPayload = { topic: m.topic, cursor: m.cursor, publishedAt: m.publishedAt, ...notificationFields(m, text) };
  const fullObj: PushPayload = { ...base };
  if (text !== undefined) fullObj.data = text;
  else fullObj.data_base64 = m.payload.toString('base64');
  let full: string | null = JSON.stringify(fullObj);
  if (Buffer.byteLength(full) > MAX_PLAINTEXT) full = null;
  const since = formatCursor(parseCursor(m.cursor).epoch, m.seq - 1);
  let small = JSON.stringify({ ...base, truncated: true, since });
  // Notification fields alone may be too big; then only the pointer to the message is left.
  if (Buffer.byteLength(small) > MAX_PLAINTEXT) small = JSON.stringify({ topic: m.topic, cursor: m.cursor, publishedAt: m.publishedAt, truncated: true, since });
  const ttl = m.expiresAt !== undefined ? Math.max(0, Math.floor((m.expiresAt - now) / 1000)) : defaultTtl;
  const u = property(m, 'urgency');
  const job: PushJob = { full, small, ttl, urgency: u && URGENCIES.has(u) ? (u as Urgency) : 'normal' };
  const rk = property(m, 'push-topic');
  if (rk) job.replaceKey = replaceKeyFor(rk);
  return job;
}
