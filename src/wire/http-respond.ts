import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { OmnipushError, type ErrorCode } from '../core/errors.js';

const STATUS: Record<ErrorCode, number> = {
  invalid_topic: 400,
  invalid_filter: 400,
  invalid_cursor: 400,
  invalid_request: 400,
  invalid_json: 400,
  no_recipient: 400,
  payload_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  too_many_connections: 503,
  rate_limited: 429,
  quota_exceeded: 429,
  slow_consumer: 503,
  disconnected: 409,
  shutting_down: 503,
  unavailable: 503,
  internal: 500,
};

export function statusFor(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

/** Headers every response carries (CORS, discovery Link), computed per request by the server. */
export type CommonHeaders = (req: IncomingMessage) => Record<string, string>;

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Answers `body` as JSON with `headers` first. The headers go to writeHead as one flat list: a
 * spread into a fresh object cost more than the rest of a small answer (CPU profile of the
 * publish API).
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const list: Array<string | number> = [];
  if (headers) for (const name in headers) list.push(name, headers[name]);
  list.push('Content-Type', JSON_TYPE, 'Content-Length', Buffer.byteLength(text), 'Cache-Control', 'no-store');
  res.writeHead(status, list as unknown as OutgoingHttpHeaders);
  res.end(text);
}

/** The JSON error body every door's HTTP errors share: `{ "error": { "code", "message", ... } }`. */
export function errorBody(e: OmnipushError): { error: Record<string, unknown> } {
  return { error: { code: e.code, message: e.message, ...(e.details ?? {}) } };
}

export function sendError(res: ServerResponse, e: unknown, headers: Record<string, string> = {}): void {
  const { status, headers: h, body } = errorAnswer(e, headers);
  sendJson(res, status, body, h);
}

/** The status, headers (`headers` and the error's own: `WWW-Authenticate`, `Retry-After`) and JSON body of an error answer. */
export function errorAnswer(e: unknown, headers: Record<string, string> = {}): { status: number; headers: Record<string, string>; body: { error: Record<string, unknown> } } {
  const err = e instanceof OmnipushError ? e : new OmnipushError('internal', 'internal error');
  const status = statusFor(err.code);
  const h = { ...headers };
  if (err.code === 'unauthorized') h['WWW-Authenticate'] = 'Bearer realm="omnipush"';
  if (status === 503) h['Retry-After'] = '5';
  if (status === 429) h['Retry-After'] = String(Math.max(1, Math.ceil(Number(err.details?.retryAfter ?? 1))));
  return { status, headers: h, body: errorBody(err) };
}
