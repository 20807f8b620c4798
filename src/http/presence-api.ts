import type { IncomingMessage, ServerResponse } from 'node:http';
import { OmnipushError } from '../core/errors.js';
import type { TransportContext } from '../transports/context.js';
import { sendJson } from '../wire/http-respond.js';

/** `GET /v1/presence?topic=&cursor=&limit=` and `GET /v1/presence/stats?topic=` (docs/presence.md). */
export async function handlePresence(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, url: URL, stats: boolean): Promise<void> {
  const principal = await ctx.authenticate(req, url);
  const topic = url.searchParams.get('topic');
  if (!topic) throw new OmnipushError('invalid_request', 'topic is required');
  if (!ctx.presence) throw new OmnipushError('not_found', `no presence rule covers ${JSON.stringify(topic)} (presence.rules is empty)`);
  const headers = ctx.commonHeaders(req);
  if (stats) return sendJson(res, 200, await ctx.presence.stats(principal, topic), headers);
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? undefined : Number(limitText);
  if (limit !== undefined && !Number.isFinite(limit)) throw new OmnipushError('invalid_request', 'limit must be a number');
  sendJson(res, 200, await ctx.presence.page(principal, topic, url.searchParams.get('cursor') ?? undefined, limit), headers);
}
