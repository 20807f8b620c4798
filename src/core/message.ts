import { OmnipushError } from './errors.js';

/** An ordered list of user properties (MQTT 5 keeps their order; so do we). */
export type Properties = Array<[string, string]>;

/** What a publisher hands to the hub. */
export interface MessageInput {
  topic: string;
  payload: Buffer;
  contentType?: string;
  /** SSE event name (`event:` line). Never contains CR, LF or NUL. */
  event?: string;
  properties?: Properties;
  retain?: boolean;
  /** Absolute expiry, ms since the epoch; the message is neither delivered nor replayed after it. */
  expiresAt?: number;
  /** Principal id of the publisher. */
  publisher?: string;
  /** Requested MQTT QoS for MQTT subscribers (0..2); doors without QoS use 1. */
  qos?: 0 | 1 | 2;
  /** MQTT 5 payload format indicator: 1 = the payload is UTF-8 text. */
  payloadFormat?: 0 | 1;
  /** MQTT 5 request/response: where the answer should go, and what ties it to the request. */
  responseTopic?: string;
  correlationData?: Buffer;
  /**
   * The door connection that published it (MQTT client id), so a door can skip echoing a message
   * to its publisher (MQTT No Local). Lives with the message in memory only; stores do not keep it.
   */
  origin?: string;
  /**
   * The connection id (as its door told the client) of the live connection that published it, or
   * that the publisher says it speaks for; subscribers of that connection that asked for no echo
   * skip it. Kept by stores that keep every field (memory, Redis), so it holds across a cluster.
   */
  sender?: string;
  /** A connection id that must not receive it at all (a backend relaying a user's action). */
  exclude?: string;
}

/** A message as stored: the input plus its place in the total order. */
export interface StoredMessage extends MessageInput {
  /** Position in the store's total order; 1-based, strictly increasing. */
  seq: number;
  /** Opaque cursor string given to clients. */
  cursor: string;
  /** ms since the epoch when the hub accepted it. */
  publishedAt: number;
  retain: boolean;
}

/**
 * Cursors are `<epoch>_<seq>`: `epoch` names one store's history (a wiped or different store has
 * another), `seq` orders messages within it. Clients treat them as opaque strings.
 */
export function formatCursor(epoch: string, seq: number): string {
  return `${epoch}_${seq.toString(36)}`;
}

export interface ParsedCursor {
  epoch: string;
  seq: number;
}

const CURSOR_RE = /^([0-9a-z]{1,16})_([0-9a-z]{1,11})$/;

/** Parses a client's cursor. Throws `invalid_cursor` for anything malformed. */
export function parseCursor(cursor: string): ParsedCursor {
  const m = CURSOR_RE.exec(cursor);
  if (!m) throw new OmnipushError('invalid_cursor', `not a cursor: ${JSON.stringify(cursor.slice(0, 64))}`);
  const seq = parseInt(m[2], 36);
  if (!Number.isSafeInteger(seq)) throw new OmnipushError('invalid_cursor', 'cursor out of range');
  return { epoch: m[1], seq };
}

export function isExpired(m: { expiresAt?: number }, now: number): boolean {
  return m.expiresAt !== undefined && m.expiresAt <= now;
}

/** Rough bytes a message holds in memory; used for queue accounting. */
export function messageBytes(m: MessageInput): number {
  let n = 64 + m.topic.length + m.payload.length;
  if (m.event) n += m.event.length;
  if (m.contentType) n += m.contentType.length;
  if (m.properties) for (const [k, v] of m.properties) n += k.length + v.length + 16;
  if (m.responseTopic) n += m.responseTopic.length;
  if (m.correlationData) n += m.correlationData.length;
  return n;
}
