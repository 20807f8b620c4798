import type { IncomingMessage, ServerResponse } from 'node:http';
import { ClusterCalls, type NodeAnswer } from '../cluster/cluster-calls.js';
import { OmnipushError } from '../core/errors.js';
import { ALLOW_ALL, type Principal } from '../core/grants.js';
import { validateFilter } from '../core/topic.js';
import type { TransportContext } from '../transports/context.js';
import { SESSION_KIND } from '../transports/mqtt/session-record.js';
import type { WebPushTransport } from '../transports/webpush/webpush-transport.js';
import type { Webhooks } from '../webhooks/webhooks.js';
import { numberParam, parseJson, readBody } from '../wire/http-request.js';
import { sendError, sendJson } from '../wire/http-respond.js';
import { toMessageJson } from '../wire/json-message.js';
import { fail, publishRequestFromJson } from '../wire/publish-request.js';
import { AdminAuth, type AdminCaller } from './admin-auth.js';
import { registerNodeCalls, type ConnectionView, type NodeStats } from './node-calls.js';

export const ADMIN_PREFIX = '/v1/admin/';
const MAX_LIMIT = 1000;
const MAX_TOPICS_PER_PUBLISH = 1000;
const BODY_LIMIT = 64 * 1024;

/** The nodes' pages of one listing, merged into one page sorted by `key`, and the cursor of the next. */
export function mergePages<T>(answers: Array<NodeAnswer<T[]>>, key: (x: T) => string, limit: number, combine?: (a: T, b: T) => T): { items: T[]; next?: string } {
  const byKey = new Map<string, T>();
  let full = false;
  for (const a of answers) {
    if (!a.result) continue;
    if (a.result.length >= limit) full = true;
    for (const x of a.result) {
      const k = key(x);
      const had = byKey.get(k);
      byKey.set(k, had && combine ? combine(had, x) : x);
    }
  }
  const items = [...byKey.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).slice(0, limit);
  // a node cut its page at `limit`: there may be more after the last key shown
  const more = full || byKey.size > limit;
  return { items: items.map((e) => e[1]), next: more && items.length ? items[items.length - 1][0] : undefined };
}

function problems<T>(answers: Array<NodeAnswer<T>>): Array<{ node: string; error: string }> {
  return answers.filter((a) => a.error).map((a) => ({ node: a.node, error: a.error! }));
}

/**
 * The server API (docs/http-api.md): cluster-wide listings and actions for backends and the
 * console, behind admin credentials. It acts through the same hub calls and connection registry
 * the doors use.
 */
export class AdminApi {
  readonly auth: AdminAuth;
  private readonly calls: ClusterCalls;
  private readonly principalOf = new Map<string, Principal>();

  constructor(
    private readonly ctx: TransportContext,
    private readonly webpush?: WebPushTransport,
    private readonly webhooks?: Webhooks,
  ) {
    this.auth = new AdminAuth(ctx.config, (t) => ctx.authenticateToken(t), ctx.hub);
    this.calls = new ClusterCalls(ctx.cluster, ctx.log);
    registerNodeCalls(this.calls, ctx, ctx.cluster.nodeId);
  }

  handles(path: string): boolean {
    return path.startsWith(ADMIN_PREFIX);
  }

  /** Answers one `/v1/admin/...` request; never CORS-enabled, so no other origin reads it. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    const route = url.pathname.slice(ADMIN_PREFIX.length);
    try {
      const post = method === 'POST';
      if (!post && method !== 'GET' && method !== 'HEAD') throw new OmnipushError('method_not_allowed', `${method} is not allowed here`);
      // a cross-site form can post url-encoded or text bodies without a preflight, never JSON
      if (post && !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
        throw new OmnipushError('invalid_request', 'send the body as application/json');
      }
      if (route === 'login') return await this.only(post, () => this.login(req, res));
      const caller = await this.auth.caller(req, post);
      const body = post ? parseJson(await readBody(req, BODY_LIMIT)) : undefined;
      const answer = await this.dispatch(route, post, caller, url, body, req, res);
      if (answer !== undefined) sendJson(res, 200, answer);
    } catch (e) {
      if (!(e instanceof OmnipushError)) this.ctx.log.error({ err: e, path: url.pathname }, 'server API request failed');
      sendError(res, e);
    }
  }

  private async only<T>(ok: boolean, run: () => Promise<T>): Promise<T> {
    if (!ok) throw new OmnipushError('method_not_allowed', 'use POST here');
    return run();
  }

  private async dispatch(route: string, post: boolean, caller: AdminCaller, url: URL, body: unknown, req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const get = !post;
    const timeout = this.ctx.config.admin.clusterTimeout;
    switch (route) {
      case 'session':
        if (!get) break;
        return { who: caller.who, via: caller.via, csrf: caller.csrf, node: this.ctx.cluster.nodeId };
      case 'logout':
        if (!post) break;
        await this.auth.logout(req);
        res.setHeader('Set-Cookie', this.auth.cookie(req, null));
        return { ok: true };
      case 'stats': {
        if (!get) break;
        const answers = await this.calls.call<NodeStats>('stats', {}, timeout);
        return { nodes: answers.filter((a) => a.result).map((a) => a.result), problems: problems(answers), bus: this.ctx.config.bus.kind, store: this.ctx.config.store.kind };
      }
      case 'topics': {
        if (!get) break;
        const limit = this.limit(url);
        const answers = await this.calls.call<Array<{ filter: string; subscribers: number }>>('topics', { prefix: url.searchParams.get('prefix') ?? '', after: url.searchParams.get('after') ?? '', limit }, timeout);
        const page = mergePages(answers, (t) => t.filter, limit, (a, b) => ({ filter: a.filter, subscribers: a.subscribers + b.subscribers }));
        return { topics: page.items, next: page.next, problems: problems(answers) };
      }
      case 'connections': {
        if (!get) break;
        const limit = this.limit(url);
        const answers = await this.calls.call<ConnectionView[]>('connections', { principal: url.searchParams.get('principal') ?? '', after: url.searchParams.get('after') ?? '', limit }, timeout);
        const page = mergePages(answers, (c) => `${c.node}/${c.id}`, limit);
        return { connections: page.items, next: page.next, problems: problems(answers) };
      }
      case 'disconnect': {
        if (!post) break;
        const { principal, reason } = this.fields(body, { principal: true, reason: false });
        if (reason.length > 200) fail('reason holds at most 200 characters');
        this.ctx.log.info({ admin: caller.who, principal, reason }, 'server API: disconnect');
        const answers = await this.calls.call<{ disconnected: number }>('disconnect', { principal, reason }, timeout);
        return { disconnected: answers.reduce((n, a) => n + (a.result?.disconnected ?? 0), 0), problems: problems(answers) };
      }
      case 'unsubscribe': {
        if (!post) break;
        const { principal, filter } = this.fields(body, { principal: true, filter: true });
        validateFilter(filter);
        this.ctx.log.info({ admin: caller.who, principal, filter }, 'server API: unsubscribe');
        const answers = await this.calls.call<{ removed: number; unsupported: number }>('unsubscribe', { principal, filter }, timeout);
        return {
          removed: answers.reduce((n, a) => n + (a.result?.removed ?? 0), 0),
          unsupported: answers.reduce((n, a) => n + (a.result?.unsupported ?? 0), 0),
          problems: problems(answers),
        };
      }
      case 'publish':
        if (!post) break;
        return this.publish(caller, body);
      case 'history': {
        if (!get) break;
        const filter = url.searchParams.get('topic');
        if (!filter) fail('topic (a topic or filter) is required');
        const r = await this.ctx.hub.history(this.principal(caller), [filter], url.searchParams.get('since') ?? undefined, this.limit(url));
        return { messages: r.messages.map(toMessageJson), cursor: r.cursor, more: r.more, gap: r.gap };
      }
      case 'retained': {
        if (!get) break;
        const filter = url.searchParams.get('topic');
        if (!filter) fail('topic (a topic or filter) is required');
        const list = await this.ctx.hub.retainedMessages(filter, this.limit(url));
        return { messages: list.map(toMessageJson) };
      }
      case 'mqtt/sessions':
        if (!get) break;
        return this.mqttSessions(url);
      case 'webpush':
        if (!get) break;
        return this.webpushView(url);
      case 'webhooks/failed': {
        if (!get) break;
        const page = await this.hooks().listFailed(this.limit(url), url.searchParams.get('after') ?? '');
        return { failed: page.items, next: page.next };
      }
      case 'webhooks/retry': {
        if (!post) break;
        const b = (body ?? {}) as Record<string, unknown>;
        if (typeof b !== 'object' || Array.isArray(b) || Object.keys(b).some((k) => k !== 'id' && k !== 'all')) fail('body is {"id": "<key of a failed delivery>"} or {"all": true}');
        if (b.all === true && b.id === undefined) {
          this.ctx.log.info({ admin: caller.who }, 'server API: retry every failed webhook');
          return { retried: await this.hooks().retry() };
        }
        if (typeof b.id !== 'string' || b.all !== undefined) fail('body is {"id": "<key of a failed delivery>"} or {"all": true}');
        const n = await this.hooks().retry(b.id);
        if (n === 0) throw new OmnipushError('not_found', `no failed webhook delivery ${JSON.stringify(b.id)}`);
        this.ctx.log.info({ admin: caller.who, id: b.id }, 'server API: retry a failed webhook');
        return { retried: n };
      }
    }
    throw new OmnipushError('not_found', `no server API call ${post ? 'POST' : 'GET'} ${ADMIN_PREFIX}${route}`);
  }

  private hooks(): Webhooks {
    if (!this.webhooks) throw new OmnipushError('not_found', 'webhooks are off: no webhooks.endpoints configured');
    return this.webhooks;
  }

  private limit(url: URL): number {
    return Math.floor(numberParam(url, 'limit', 100, 1, MAX_LIMIT));
  }

  /** String fields of a JSON object body, required or optional; anything else is refused. */
  private fields<K extends string>(body: unknown, spec: Record<K, boolean>): Record<K, string> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('the body must be a JSON object');
    const b = body as Record<string, unknown>;
    for (const k of Object.keys(b)) if (!(k in spec)) fail(`unknown field ${JSON.stringify(k)}`);
    const out = {} as Record<K, string>;
    for (const k of Object.keys(spec) as K[]) {
      const v = b[k];
      if (v === undefined && !spec[k]) out[k] = '';
      else if (typeof v !== 'string' || v === '') fail(`${k} must be a non-empty string`);
      else out[k] = v;
    }
    return out;
  }

  /** The hub principal an admin caller acts as: may publish and read anywhere. */
  private principal(caller: AdminCaller): Principal {
    const id = `admin:${caller.who}`;
    let p = this.principalOf.get(id);
    if (!p) {
      if (this.principalOf.size > 1000) this.principalOf.clear();
      this.principalOf.set(id, (p = { id, kind: 'token', grants: { ...ALLOW_ALL, admin: true } }));
    }
    return p;
  }

  /** `{topics: [...], data, ...}`: one message, the same for each topic, stored as one batch. */
  private async publish(caller: AdminCaller, body: unknown): Promise<unknown> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('the body must be a JSON object');
    const { topics, ...rest } = body as Record<string, unknown>;
    if (!Array.isArray(topics) || topics.length === 0 || topics.length > MAX_TOPICS_PER_PUBLISH) fail(`topics must be a list of 1..${MAX_TOPICS_PER_PUBLISH} topic names`);
    if ('topic' in rest) fail('give "topics", not "topic"');
    const reqs = topics.map((t, i) => {
      if (typeof t !== 'string') fail(`topics[${i}] must be a string`);
      return publishRequestFromJson({ ...rest, topic: t });
    });
    const stored = await this.ctx.hub.publishMany(this.principal(caller), reqs);
    return { messages: stored.map((m) => ({ topic: m.topic, cursor: m.cursor })) };
  }

  private async mqttSessions(url: URL): Promise<unknown> {
    const limit = this.limit(url);
    const rows = await this.ctx.hub.listRecords(SESSION_KIND, url.searchParams.get('prefix') ?? '', limit + 1);
    const sessions = rows.slice(0, limit).map(({ key, value }) => {
      try {
        const r = JSON.parse(value.toString('utf8')) as { node?: string; expiry: number; gone?: number; subs?: Array<[string, unknown]>; shared?: Array<[string, unknown]>; inflight?: unknown[] };
        return {
          clientId: key,
          connected: r.gone === undefined,
          node: r.node,
          expiry: r.expiry,
          disconnectedAt: r.gone,
          subscriptions: [...(r.subs ?? []), ...(r.shared ?? [])].map((s) => s[0]).slice(0, 100),
          inflight: r.inflight?.length ?? 0,
        };
      } catch {
        return { clientId: key, error: 'unreadable session record' };
      }
    });
    return { sessions, more: rows.length > limit };
  }

  private webpushView(url: URL): unknown {
    const w = this.webpush;
    if (!w) return { enabled: false, subscriptions: [], pending: [], givenUp: [] };
    const limit = this.limit(url);
    const subsAfter = url.searchParams.get('subscriptionsAfter') ?? '';
    const subscriptions = [...w.registry.all()]
      .filter((s) => s.id > subsAfter)
      .sort((x, y) => (x.id < y.id ? -1 : 1))
      .slice(0, limit)
      .map((s) => ({
      id: s.id,
      origin: safeOrigin(s.endpoint),
      principal: s.principal.id,
      filters: s.filters,
      mode: s.mode,
      createdAt: s.createdAt,
      failing: s.failing,
    }));
    const pending = w.queue.list(limit, url.searchParams.get('after') ?? '').map((e) => ({
      key: e.key,
      subscription: e.sub,
      origin: e.origin,
      cursor: e.cursor,
      attempts: e.attempts,
      notBefore: e.notBefore,
      giveUpAt: e.giveUpAt,
    }));
    return { enabled: true, node: this.ctx.cluster.nodeId, total: { subscriptions: w.registry.size, pending: w.queue.size }, subscriptions, pending, givenUp: w.givenUp.slice(-limit).reverse() };
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseJson(await readBody(req, 4096));
    const address = this.ctx.addresses.of(req);
    const s = await this.auth.login(body, address);
    this.ctx.log.info({ admin: s.who, address }, 'console login');
    res.setHeader('Set-Cookie', this.auth.cookie(req, s.id));
    sendJson(res, 200, { who: s.who, csrf: s.csrf, expiresAt: s.expiresAt });
  }
}

/** Only the push service's origin: the endpoint's path is the browser's capability, not for display. */
function safeOrigin(endpoint: string): string {
  try {
    return new URL(endpoint).origin;
  } catch {
    return '';
  }
}
