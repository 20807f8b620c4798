import type { IncomingMessage, ServerResponse } from 'node:http';
import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import type { PublishRequest } from '../core/hub.js';
import type { TransportContext } from '../transports/context.js';
import { sendJson } from '../wire/http-respond.js';
import { numberParam, parseJson, readBody, topicParams } from '../wire/http-request.js';
import { toMessageJson } from '../wire/json-message.js';

const FIELDS = new Set(['topic', 'data', 'data_base64', 'encoding', 'event', 'retain', 'ttl', 'properties', 'contentType', 'qos']);
const MAX_BATCH = 1000;

function fail(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/** Turns one JSON publish object into a hub request; strict about fields and types. */
export function publishRequestFromJson(o: unknown, where = ''): PublishRequest {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) fail(`${where}a message must be a JSON object`);
  const m = o as Record<string, unknown>;
  for (const k of Object.keys(m)) if (!FIELDS.has(k)) fail(`${where}unknown field ${JSON.stringify(k)}`);
  if (typeof m.topic !== 'string') fail(`${where}topic must be a string`);
  let payload: Buffer;
  if (m.data_base64 !== undefined) {
    if (m.data !== undefined) fail(`${where}give data or data_base64, not both`);
    if (typeof m.data_base64 !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(m.data_base64)) fail(`${where}data_base64 must be base64`);
    payload = Buffer.from(m.data_base64, 'base64');
  } else if (m.data === undefined || m.data === null) {
    payload = Buffer.alloc(0);
  } else if (typeof m.data === 'string') {
    if (m.encoding === 'base64') {
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(m.data)) fail(`${where}data is not base64`);
      payload = Buffer.from(m.data, 'base64');
    } else if (m.encoding === undefined || m.encoding === 'utf8' || m.encoding === 'text') payload = Buffer.from(m.data, 'utf8');
    else fail(`${where}encoding must be "text" or "base64"`);
  } else {
    // any other JSON value is published as its JSON text
    payload = Buffer.from(JSON.stringify(m.data), 'utf8');
  }
  const req: PublishRequest = { topic: m.topic, payload };
  if (m.event !== undefined) {
    if (typeof m.event !== 'string') fail(`${where}event must be a string`);
    req.event = m.event;
  }
  if (m.contentType !== undefined) {
    if (typeof m.contentType !== 'string') fail(`${where}contentType must be a string`);
    req.contentType = m.contentType;
  }
  if (m.retain !== undefined) {
    if (typeof m.retain !== 'boolean') fail(`${where}retain must be true or false`);
    req.retain = m.retain;
  }
  if (m.ttl !== undefined) {
    if (typeof m.ttl !== 'number') fail(`${where}ttl must be a number of seconds`);
    req.ttl = m.ttl;
  }
  if (m.qos !== undefined) {
    if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) fail(`${where}qos must be 0, 1 or 2`);
    req.qos = m.qos;
  }
  if (m.properties !== undefined) {
    const p = m.properties;
    if (Array.isArray(p)) req.properties = p as Array<[string, string]>;
    else if (typeof p === 'object' && p !== null) {
      req.properties = Object.entries(p).map(([k, v]) => {
        if (typeof v !== 'string') fail(`${where}property ${JSON.stringify(k)} must be a string`);
        return [k, v];
      });
    } else fail(`${where}properties must be an object or a list of [name, value] pairs`);
  }
  return req;
}

/**
 * `POST /v1/publish` with `{topic, data, ...}`, or a batch: a JSON array or `{messages: [...]}`.
 * Answers `{cursor, topic}` or `{cursors: [...]}` once the messages are durable.
 */
export async function handlePublishJson(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void> {
  const body = parseJson(await readBody(req, ctx.config.http.maxBodyBytes));
  let batch: unknown[] | null = null;
  if (Array.isArray(body)) batch = body;
  else if (typeof body === 'object' && body !== null && 'messages' in body) {
    const keys = Object.keys(body);
    if (keys.length !== 1) fail('a batch body holds only "messages"');
    const list = (body as { messages: unknown }).messages;
    if (!Array.isArray(list)) fail('messages must be an array');
    batch = list;
  }
  if (batch) {
    if (batch.length === 0 || batch.length > MAX_BATCH) fail(`a batch holds 1..${MAX_BATCH} messages`);
    const reqs = batch.map((m, i) => publishRequestFromJson(m, `messages[${i}]: `));
    const stored = await ctx.hub.publishMany(principal, reqs);
    sendJson(res, 200, { cursors: stored.map((m) => m.cursor) }, ctx.commonHeaders(req));
    return;
  }
  const m = await ctx.hub.publish(principal, publishRequestFromJson(body));
  sendJson(res, 200, { cursor: m.cursor, topic: m.topic }, ctx.commonHeaders(req));
}

const IGNORED_CONTENT_TYPES = new Set(['application/x-www-form-urlencoded', 'application/octet-stream']);

/**
 * `POST|PUT /v1/topics/<topic>` with the raw body as payload (so `curl -d hello` works);
 * options as query parameters: `retain`, `event`, `ttl`, `qos`.
 */
export async function handlePublishRaw(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, topic: string, url: URL): Promise<void> {
  const payload = await readBody(req, Math.min(ctx.config.http.maxBodyBytes, ctx.hub.maxPayloadBytes + 1));
  const r: PublishRequest = { topic, payload };
  const q = url.searchParams;
  const retain = q.get('retain');
  if (retain !== null) {
    if (!['', '1', 'true', '0', 'false'].includes(retain)) fail('retain must be true or false');
    r.retain = retain === '' || retain === '1' || retain === 'true';
  }
  const event = q.get('event');
  if (event !== null) r.event = event;
  if (q.has('ttl')) r.ttl = numberParam(url, 'ttl', 0, 0.001, 10 * 365 * 86400);
  if (q.has('qos')) r.qos = numberParam(url, 'qos', 1, 0, 2) as 0 | 1 | 2;
  const ct = req.headers['content-type']?.split(';')[0].trim().toLowerCase();
  if (ct && !IGNORED_CONTENT_TYPES.has(ct)) r.contentType = req.headers['content-type'];
  const m = await ctx.hub.publish(principal, r);
  sendJson(res, 200, { cursor: m.cursor, topic: m.topic }, ctx.commonHeaders(req));
}

/** `GET /v1/history?topic=<filter>&since=<cursor>&limit=<n>`. */
export async function handleHistory(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, url: URL): Promise<void> {
  const limit = numberParam(url, 'limit', 100, 1, 1000);
  const since = url.searchParams.get('since') ?? undefined;
  const r = await ctx.hub.history(principal, topicParams(url), since, Math.floor(limit));
  sendJson(res, 200, { messages: r.messages.map(toMessageJson), cursor: r.cursor, more: r.more, gap: r.gap }, ctx.commonHeaders(req));
}
