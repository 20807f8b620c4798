import { isUtf8 } from 'node:buffer';
import type { WireFormat } from '../core/encoded.js';
import type { StoredMessage } from '../core/message.js';

/**
 * The JSON shape of a message shared by the HTTP API, long-poll, SSE `format=json` and later doors:
 * `data` when the payload is UTF-8 text, otherwise `data_base64`.
 */
export interface MessageJson {
  topic: string;
  cursor: string;
  data?: string;
  data_base64?: string;
  event?: string;
  contentType?: string;
  properties?: Array<[string, string]>;
  retain?: boolean;
  expiresAt?: number;
  publishedAt: number;
}

export function toMessageJson(m: StoredMessage): MessageJson {
  const j: MessageJson = { topic: m.topic, cursor: m.cursor, publishedAt: m.publishedAt };
  if (isUtf8(m.payload)) j.data = m.payload.toString('utf8');
  else j.data_base64 = m.payload.toString('base64');
  if (m.event) j.event = m.event;
  if (m.contentType) j.contentType = m.contentType;
  if (m.properties?.length) j.properties = m.properties;
  if (m.retain) j.retain = true;
  if (m.expiresAt !== undefined) j.expiresAt = m.expiresAt;
  return j;
}

/** The message as one JSON text, encoded once per message and shared. */
export const JSON_MESSAGE: WireFormat<Buffer> = {
  name: 'json',
  encode: (m) => Buffer.from(JSON.stringify(toMessageJson(m))),
};
