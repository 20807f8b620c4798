import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../core/grants.js';
import type { PublishRequest, PublishWaiter } from '../core/hub.js';
import type { StoredMessage } from '../core/message.js';
import type { PublishOptions } from '../core/publish-options.js';
import { OmnipushError } from '../core/errors.js';
import { fail, publishOptionsFromJson, publishRequestFromJson, refuseBatchOptions } from '../wire/publish-request.js';
import { dueFrom } from '../wire/publish-timing.js';
import type { TransportContext } from '../transports/context.js';
import { sendError, sendJson } from '../wire/http-respond.js';
import { flagParam, numberParam, parseJson, readBody, topicParams } from '../wire/http-request.js';
import { toMessageJson } from '../wire/json-message.js';

/** Throws `rate_limited` when the publish rates do not allow these messages now. */
function checkRate(ctx: TransportContext, req: IncomingMessage, principal: Principal, reqs: PublishRequest[]): void {
  if (!ctx.quotas.ratesOn) return;
  let bytes = 0;
  for (const r of reqs) bytes += r.payload.length;
  const refusal = ctx.quotas.checkPublish(principal, ctx.addresses.of(req), reqs.length, bytes);
  if (refusal) throw refusal;
}

const MAX_BATCH = 1000;

/**
 * `POST /v1/publish` with `{topic, data, ...}`, or a batch: a JSON array or `{messages: [...]}`.
 * Answers `{cursor, topic}` or `{cursors: [...]}` once the messages are durable.
 */
export async function handlePublishJson(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, headers = ctx.commonHeaders(req)): Promise<void> {
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
    if (req.headers['idempotency-key'] !== undefined) fail('Idempotency-Key is for single publishes, not batches');
    const reqs = batch.map((m, i) => {
      const r = publishRequestFromJson(m, `messages[${i}]: `);
      refuseBatchOptions(m, `messages[${i}]: `);
      return r;
    });
    checkRate(ctx, req, principal, reqs);
    senderOf(req, reqs);
    if (ctx.ruleHooks) for (let i = 0; i < reqs.length; i++) reqs[i] = await ctx.ruleHooks.publish(principal, reqs[i], 'http');
    const stored = await ctx.hub.publishMany(principal, reqs);
    for (const m of stored) countHttpPublish(ctx, m.payload.length);
    sendJson(res, 200, { cursors: stored.map((m) => m.cursor) }, headers);
    return;
  }
  let r = publishRequestFromJson(body);
  checkRate(ctx, req, principal, [r]);
  senderOf(req, [r]);
  if (ctx.ruleHooks) r = await ctx.ruleHooks.publish(principal, r, 'http');
  const opts = publishOptionsFromJson(body, Date.now(), headerKey(req));
  if (opts) return publishWithOptions(ctx, req, res, principal, r, opts, headers);
  ctx.hub.submit(ctx.hub.checkPublish(principal, r), new PublishAnswer(ctx, res, headers));
}

/**
 * Answers a single publish once the hub has stored (and fanned out) it: the hub calls it, which
 * spares the promises and continuations between the store's batch and the answer.
 */
class PublishAnswer implements PublishWaiter {
  constructor(
    private readonly ctx: TransportContext,
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string>,
  ) {}

  // both are called from the hub's batch loop: an answer that cannot be written must not stop the others

  stored(m: StoredMessage): void {
    countHttpPublish(this.ctx, m.payload.length);
    try {
      sendJson(this.res, 200, { cursor: m.cursor, topic: m.topic }, this.headers);
    } catch (e) {
      this.unanswered(e);
    }
  }

  failed(e: unknown): void {
    if (!(e instanceof OmnipushError)) this.ctx.log.error({ err: e, path: this.res.req.url }, 'request failed');
    try {
      sendError(this.res, e, this.headers);
    } catch (e2) {
      this.unanswered(e2);
    }
  }

  private unanswered(e: unknown): void {
    this.ctx.log.error({ err: e, path: this.res.req.url }, 'answering a publish failed');
    this.res.destroy();
  }
}

/**
 * The connection a request speaks for (`Omnipush-Connection`, the id its SSE, WebSocket or
 * long-poll connection was told): that connection's no-echo subscriptions skip what it publishes.
 */
function senderOf(req: IncomingMessage, reqs: PublishRequest[]): void {
  const v = req.headers['omnipush-connection'];
  if (v === undefined) return;
  if (Array.isArray(v)) fail('give one Omnipush-Connection header');
  for (const r of reqs) r.sender = v;
}

function countHttpPublish(ctx: TransportContext, bytes: number): void {
  ctx.metrics.publishCounts.http++;
  ctx.metrics.publishBytes.http += bytes;
}

function headerKey(req: IncomingMessage): string | undefined {
  const v = req.headers['idempotency-key'];
  if (Array.isArray(v)) fail('give one Idempotency-Key header');
  return v;
}

/** Scheduled: 202 `{cursor: null, due, id}`; published now: 200 `{cursor, topic}` (a repeat adds `repeated: true`). */
async function publishWithOptions(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, r: PublishRequest, opts: PublishOptions, common = ctx.commonHeaders(req)): Promise<void> {
  if (!ctx.publishWith) throw new OmnipushError('invalid_request', 'this server takes no delayed or idempotent publishes');
  const out = await ctx.publishWith.publish(principal, r, opts);
  if (out.cursor !== null && !out.repeated) countHttpPublish(ctx, r.payload.length);
  const headers = out.repeated ? { ...common, 'Idempotent-Replayed': 'true' } : common;
  if (out.cursor === null) {
    sendJson(res, 202, { cursor: null, due: new Date(out.due).toISOString(), id: out.id, ...(out.repeated ? { repeated: true } : {}) }, headers);
    return;
  }
  sendJson(res, 200, { cursor: out.cursor, topic: out.topic, ...(out.repeated ? { repeated: true } : {}) }, headers);
}

const IGNORED_CONTENT_TYPES = new Set(['application/x-www-form-urlencoded', 'application/octet-stream']);

/**
 * `POST|PUT /v1/topics/<topic>` with the raw body as payload (so `curl -d hello` works);
 * options as query parameters: `retain`, `event`, `ttl`, `qos`, `delay`, `at`; `Idempotency-Key` header.
 */
export async function handlePublishRaw(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, topic: string, url: URL): Promise<void> {
  const payload = await readBody(req, Math.min(ctx.config.http.maxBodyBytes, ctx.hub.maxPayloadBytes + 1));
  const r: PublishRequest = { topic, payload };
  const q = url.searchParams;
  if (q.has('retain')) r.retain = flagParam(url, 'retain');
  const event = q.get('event');
  if (event !== null) r.event = event;
  if (q.has('ttl')) r.ttl = numberParam(url, 'ttl', 0, 0.001, 10 * 365 * 86400);
  if (q.has('qos')) r.qos = numberParam(url, 'qos', 1, 0, 2) as 0 | 1 | 2;
  const exclude = q.get('exclude');
  if (exclude !== null) r.exclude = exclude;
  const ct = req.headers['content-type']?.split(';')[0].trim().toLowerCase();
  if (ct && !IGNORED_CONTENT_TYPES.has(ct)) r.contentType = req.headers['content-type'];
  checkRate(ctx, req, principal, [r]);
  senderOf(req, [r]);
  const hooked = ctx.ruleHooks ? await ctx.ruleHooks.publish(principal, r, 'http') : r;
  const due = dueFrom(q.get('delay') ?? undefined, q.get('at') ?? undefined, Date.now());
  const key = headerKey(req);
  if (due !== undefined || key !== undefined) {
    const opts: PublishOptions = {};
    if (due !== undefined) opts.due = due;
    if (key !== undefined) opts.idempotencyKey = key;
    return publishWithOptions(ctx, req, res, principal, hooked, opts);
  }
  ctx.hub.submit(ctx.hub.checkPublish(principal, hooked), new PublishAnswer(ctx, res, ctx.commonHeaders(req)));
}

/** `GET /v1/history?topic=<filter>&since=<cursor>&limit=<n>`. */
export async function handleHistory(ctx: TransportContext, req: IncomingMessage, res: ServerResponse, principal: Principal, url: URL): Promise<void> {
  const limit = numberParam(url, 'limit', 100, 1, 1000);
  const since = url.searchParams.get('since') ?? undefined;
  const r = await ctx.hub.history(principal, topicParams(url), since, Math.floor(limit));
  sendJson(res, 200, { messages: r.messages.map(toMessageJson), cursor: r.cursor, more: r.more, gap: r.gap }, ctx.commonHeaders(req));
}
