import type { IncomingMessage, ServerResponse } from 'node:http';
import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import type { AckDoor } from '../core/receipt.js';
import type { TransportContext } from '../transports/context.js';
import { sendJson } from '../wire/http-respond.js';
import { numberParam, parseJson, readBody } from '../wire/http-request.js';
import type { ReceiptLog } from './receipt-log.js';
import type { Receipts } from './receipts.js';

/** Doors an HTTP ack may name (the SDK says which stream it reads); `http` when it names none. */
const HTTP_DOORS = new Set<string>(['sse', 'longpoll', 'http']);
/** A cursor is ~20 characters; this leaves room for JSON around `maxAckCursors` of them. */
const BYTES_PER_CURSOR = 64;

function bad(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/**
 * `POST /v1/ack` `{cursors: [...], seen?: true, door?: "sse"|"longpoll"}`: the caller's clients
 * got these messages. Answers `{acked, ignored, unknown}`; acks for another principal's messages
 * are ignored (counted), unknown cursors cost no lookup.
 */
export async function handleAck(ctx: TransportContext, receipts: Receipts, req: IncomingMessage, res: ServerResponse, p: Principal): Promise<void> {
  const max = receipts.maxCursors;
  const body = parseJson(await readBody(req, 256 + max * BYTES_PER_CURSOR));
  if (typeof body !== 'object' || body === null || Array.isArray(body)) bad('body must be a JSON object {cursors, seen?}');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (k !== 'cursors' && k !== 'seen' && k !== 'door') bad(`unknown field ${JSON.stringify(k)}`);
  if (!Array.isArray(b.cursors) || b.cursors.length === 0) bad('cursors must be a non-empty array of message cursors');
  if (b.seen !== undefined && typeof b.seen !== 'boolean') bad('seen must be true or false');
  if (b.door !== undefined && (typeof b.door !== 'string' || !HTTP_DOORS.has(b.door))) bad('door must be "sse", "longpoll" or "http"');
  const out = await receipts.ack(p, b.cursors, (b.door as AckDoor | undefined) ?? 'http', b.seen === true);
  sendJson(res, 200, out, ctx.commonHeaders(req));
}

/**
 * `GET /v1/receipts?cursor=&limit=`: receipt events of the messages the caller published, in
 * time order (with the admin grant, everyone's; `publisher=` narrows them).
 */
export async function handleReceiptList(ctx: TransportContext, log: ReceiptLog, req: IncomingMessage, res: ServerResponse, p: Principal, url: URL): Promise<void> {
  const limit = Math.floor(numberParam(url, 'limit', 100, 1, 1000));
  const cursor = url.searchParams.get('cursor') ?? undefined;
  const asked = url.searchParams.get('publisher') ?? undefined;
  if (asked !== undefined && asked !== p.id && p.grants.admin !== true) {
    throw new OmnipushError('forbidden', "only the admin grant lists another publisher's receipts");
  }
  const publisher = asked ?? (p.grants.admin === true ? undefined : p.id);
  const page = await log.list(publisher, cursor, limit);
  sendJson(res, 200, { receipts: page.events, cursor: page.cursor, more: page.more }, ctx.commonHeaders(req));
}
