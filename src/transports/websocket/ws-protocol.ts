import { OmnipushError } from '../../core/errors.js';
import type { PublishRequest } from '../../core/hub.js';
import type { PublishOptions } from '../../core/publish-options.js';
import { publishOptionsFromJson, publishRequestFromJson } from '../../wire/publish-request.js';

/** Client → server messages of docs/websocket.md. */
export type ClientMessage =
  | { type: 'auth'; id?: RequestId; token: string }
  | { type: 'subscribe'; id?: RequestId; topics: string[]; since?: string; noEcho?: boolean; presence?: boolean; info?: unknown }
  | { type: 'presence'; id?: RequestId; topic: string; cursor?: string; limit?: number }
  | { type: 'presence_stats'; id?: RequestId; topic: string }
  | { type: 'unsubscribe'; id?: RequestId; sub: string }
  | { type: 'publish'; id?: RequestId; request: PublishRequest; options?: PublishOptions }
  | { type: 'ping'; id?: RequestId }
  /** Receipts: these messages arrived (`seen`: the user looked, too); `seen` frames are acks with `seen`. */
  | { type: 'ack'; id?: RequestId; cursors: unknown[]; seen: boolean };

export type RequestId = string | number;

function bad(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/** Reads the request id of a raw message, if it has a usable one (for error replies). */
export function requestIdOf(raw: unknown): RequestId | undefined {
  const id = (raw as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : undefined;
}

/** Parses and checks one text frame. Throws `invalid_json` / `invalid_request`. */
export function parseClientMessage(text: string): ClientMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new OmnipushError('invalid_json', 'a message must be one JSON object');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('a message must be a JSON object');
  const { type, id, ...rest } = raw as Record<string, unknown>;
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') bad('id must be a string or a number');
  const rid = id as RequestId | undefined;
  switch (type) {
    case 'auth':
      if (typeof rest.token !== 'string' || rest.token === '') bad('auth needs a token');
      return { type, id: rid, token: rest.token };
    case 'subscribe': {
      const topics = rest.topics;
      if (!Array.isArray(topics) || !topics.every((t) => typeof t === 'string')) bad('subscribe needs topics: an array of filters');
      if (rest.since !== undefined && typeof rest.since !== 'string') bad('since must be a string');
      if (rest.presence !== undefined && typeof rest.presence !== 'boolean') bad('presence must be true or false');
      if (rest.noEcho !== undefined && typeof rest.noEcho !== 'boolean') bad('noEcho must be true or false');
      const m: ClientMessage = { type, id: rid, topics, since: rest.since as string | undefined };
      if (rest.noEcho) m.noEcho = true;
      if (rest.presence) m.presence = true;
      if (rest.info !== undefined) m.info = rest.info;
      return m;
    }
    case 'presence':
    case 'presence_stats': {
      if (typeof rest.topic !== 'string' || rest.topic === '') bad(`${type} needs topic`);
      if (type === 'presence_stats') return { type, id: rid, topic: rest.topic };
      if (rest.cursor !== undefined && typeof rest.cursor !== 'string') bad('cursor must be a string');
      if (rest.limit !== undefined && typeof rest.limit !== 'number') bad('limit must be a number');
      return { type, id: rid, topic: rest.topic, cursor: rest.cursor as string | undefined, limit: rest.limit as number | undefined };
    }
    case 'unsubscribe':
      if (typeof rest.sub !== 'string') bad('unsubscribe needs sub');
      return { type, id: rid, sub: rest.sub };
    case 'publish':
      return { type, id: rid, request: publishRequestFromJson(rest), options: publishOptionsFromJson(rest, Date.now()) };
    case 'ping':
      return { type, id: rid };
    case 'ack':
    case 'seen':
      if (!Array.isArray(rest.cursors) || rest.cursors.length === 0) bad(`${type} needs cursors: a non-empty array of message cursors`);
      if (rest.seen !== undefined && typeof rest.seen !== 'boolean') bad('seen must be true or false');
      return { type: 'ack', id: rid, cursors: rest.cursors, seen: type === 'seen' || rest.seen === true };
    default:
      return bad(`unknown message type ${JSON.stringify(type)}`);
  }
}
