import type { IncomingMessage, ServerResponse } from 'node:http';
import { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import { parseJson, readBody } from '../../wire/http-request.js';
import { sendJson } from '../../wire/http-respond.js';
import type { TransportContext } from '../context.js';
import { describeSubscription, parseRegistration, subscriptionId, type PushSubscriptionRecord } from './registry.js';
import { SERVICE_WORKER_JS } from './service-worker.js';
import type { WebPushTransport } from './webpush-transport.js';

export const WEBPUSH_PREFIX = '/v1/webpush/';
const SUBSCRIPTIONS = '/v1/webpush/subscriptions';
const MAX_REGISTRATION_BYTES = 16 * 1024;

/**
 * The Web Push HTTP surface: `GET vapid-public-key`, `GET sw.js`, and the caller's own push
 * subscriptions (`POST`, `GET`, `DELETE` on `subscriptions`). Throws {@link OmnipushError}s; the
 * HTTP door turns them into JSON errors.
 */
export class WebPushHttp {
  constructor(
    private readonly ctx: TransportContext,
    private readonly t: WebPushTransport,
  ) {}

  get publicKey(): string {
    return this.t.publicKey;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { ctx } = this;
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const headers = ctx.commonHeaders(req);
    if (path === `${WEBPUSH_PREFIX}vapid-public-key`) {
      allow(method, ['GET']);
      return sendJson(res, 200, { publicKey: this.t.publicKey }, headers);
    }
    if (path === `${WEBPUSH_PREFIX}sw.js`) {
      allow(method, ['GET']);
      res.writeHead(200, {
        ...headers,
        'Content-Type': 'text/javascript; charset=utf-8',
        'Content-Length': Buffer.byteLength(SERVICE_WORKER_JS),
        'Cache-Control': 'no-cache',
        // lets a page on this origin register it for the whole origin, not just /v1/webpush/
        'Service-Worker-Allowed': '/',
      });
      res.end(SERVICE_WORKER_JS);
      return;
    }
    if (path === SUBSCRIPTIONS || path.startsWith(`${SUBSCRIPTIONS}/`)) {
      const id = path.length > SUBSCRIPTIONS.length + 1 ? decodeId(path.slice(SUBSCRIPTIONS.length + 1)) : undefined;
      allow(method, id ? ['GET', 'DELETE'] : ['GET', 'POST', 'DELETE']);
      const principal = await ctx.authenticate(req, url);
      if (method === 'POST') return this.register(req, res, principal, headers);
      const selected = this.select(principal, url, id);
      if (method === 'GET') {
        if (id) return sendJson(res, 200, describeSubscription(selected[0]), headers);
        return sendJson(res, 200, { subscriptions: selected.map(describeSubscription) }, headers);
      }
      if (selected.length === 0) throw new OmnipushError('not_found', 'no such push subscription of yours');
      for (const r of selected) await this.t.remove(r.id);
      return sendJson(res, 200, { deleted: selected.map((r) => r.id) }, headers);
    }
    throw new OmnipushError('not_found', `no route for ${method} ${path}`);
  }

  /**
   * The caller's subscriptions, narrowed by id (path) or `?endpoint=`. Anonymous callers share one
   * identity, so they must name the endpoint (a secret only the browser knows) to see or delete one.
   */
  private select(p: Principal, url: URL, id: string | undefined): PushSubscriptionRecord[] {
    const raw = url.searchParams.get('endpoint');
    if (id || raw) {
      let endpoint: string | undefined;
      if (raw) {
        try {
          endpoint = new URL(raw).href;
        } catch {
          throw new OmnipushError('invalid_request', 'endpoint must be a URL');
        }
      }
      const r = this.t.registry.get(id ?? subscriptionId(endpoint!));
      if (!r || r.principal.id !== p.id || (endpoint && r.endpoint !== endpoint)) {
        if (id) throw new OmnipushError('not_found', 'no such push subscription of yours');
        return [];
      }
      return [r];
    }
    if (p.kind === 'anonymous') throw new OmnipushError('invalid_request', 'anonymous callers must name their subscription: ?endpoint=<push endpoint>');
    return this.t.registry.ofPrincipal(p.id);
  }

  private async register(req: IncomingMessage, res: ServerResponse, p: Principal, headers: Record<string, string>): Promise<void> {
    const { ctx } = this;
    const reg = parseRegistration(parseJson(await readBody(req, MAX_REGISTRATION_BYTES)), ctx.config.webpush.allowHttpEndpoints, ctx.config.webpush.endpointHosts);
    // the same checks as any subscribe: filter syntax, limits, grants
    const plan = ctx.hub.checkSubscribe(p, reg.filters, 'now');
    const id = subscriptionId(reg.endpoint.href);
    const existing = this.t.registry.get(id);
    if (!existing || existing.principal.id !== p.id) {
      const max = ctx.config.webpush.maxSubscriptionsPerPrincipal;
      if (this.t.registry.ofPrincipal(p.id).length >= max) throw new OmnipushError('forbidden', `at most ${max} push subscriptions per principal`, { limit: max });
    }
    const rec: PushSubscriptionRecord = {
      id,
      endpoint: reg.endpoint.href,
      p256dh: reg.p256dh,
      auth: reg.auth,
      filters: plan.filters,
      mode: reg.mode,
      principal: { id: p.id, kind: p.kind, grants: p.grants },
      createdAt: existing?.createdAt ?? Date.now(),
    };
    // the browser's subscription belongs to whoever holds it now; re-registering clears `failing`
    await this.t.registry.put(rec);
    await this.t.attach(rec);
    sendJson(res, existing ? 200 : 201, describeSubscription(rec), headers);
  }
}

function decodeId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new OmnipushError('invalid_request', 'subscription id in the path is not valid percent-encoding');
  }
}

function allow(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) throw new OmnipushError('method_not_allowed', `${method} is not allowed here; use ${allowed.join(' or ')}`);
}
