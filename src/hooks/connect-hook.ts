import { z } from 'zod';
import type { Logger } from 'pino';
import { toGrants } from '../auth/authenticator.js';
import { grantsSchema, type Config } from '../config/schema.js';
import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import type { Metrics } from '../metrics/metrics.js';
import { AnswerCache, credentialKey } from './answer-cache.js';
import { HookClient, HookFailure } from './hook-client.js';

/** What a connecting client presented, as the app is told it (docs/hooks.md). */
export interface ConnectHookRequest {
  /** `http` for SSE, long-poll, Web Push and the publish API; `websocket`; `mqtt` (TCP or WebSocket). */
  door: 'http' | 'websocket' | 'mqtt';
  method?: string;
  path?: string;
  address?: string;
  /** Allow-listed request headers (hooks.connect.headers). */
  headers?: Record<string, string>;
  /** Allow-listed cookies (hooks.connect.cookies). */
  cookies?: Record<string, string>;
  /** A bearer token that did not verify as a JWT here (or every token, in mode `always`). */
  token?: string;
  mqtt?: { username?: string; password?: string; clientId: string };
}

const allowSchema = z
  .object({
    result: z.literal('allow'),
    sub: z.string().min(1).max(1024),
    grants: grantsSchema.default({}),
    /** seconds since the epoch, as JWT `exp` */
    expiresAt: z.number().positive().finite().optional(),
    /** seconds from now */
    ttl: z.number().positive().finite().optional(),
    info: z.record(z.unknown()).optional(),
  })
  .strip();

const denySchema = z
  .object({
    result: z.literal('deny'),
    reason: z.string().max(500).optional(),
    status: z.union([z.literal(401), z.literal(403)]).optional(),
  })
  .strip();

const answerSchema = z.discriminatedUnion('result', [allowSchema, denySchema]);

type Verdict = { principal: Principal } | { refusal: OmnipushError };

/**
 * Asks the app who a connecting client is. Answers (allow and deny alike) are reused for the same
 * credentials for `cacheTtl`; concurrent questions about the same credentials share one request.
 */
export class ConnectHook {
  private readonly client: HookClient;
  private readonly cache: AnswerCache<Verdict>;
  private readonly pending = new Map<string, Promise<Verdict>>();
  private readonly ttlMs: number;

  constructor(
    private readonly cfg: Config['hooks']['connect'] & { url: string },
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.client = new HookClient({ hook: 'connect', timeoutMs: cfg.timeout * 1000, concurrency: cfg.concurrency, maxQueued: cfg.maxQueued }, metrics);
    this.cache = new AnswerCache(cfg.cacheMax);
    this.ttlMs = cfg.cacheTtl * 1000;
  }

  get failOpen(): boolean {
    return this.cfg.failOpen;
  }

  /** The key of the credentials in `r` (not of where they were presented). */
  static keyOf(r: ConnectHookRequest): string {
    if (r.mqtt) return credentialKey(['mqtt', r.mqtt.username, r.mqtt.password, r.mqtt.clientId]);
    const parts: Array<string | undefined> = ['http', r.token];
    for (const [k, v] of Object.entries(r.headers ?? {})) parts.push(`h:${k}`, v);
    for (const [k, v] of Object.entries(r.cookies ?? {})) parts.push(`c:${k}`, v);
    return credentialKey(parts);
  }

  /**
   * The principal the app names; rejects with OmnipushError `unauthorized`/`forbidden` when the app
   * refuses, or with {@link HookFailure} when it gives no usable answer.
   */
  async ask(r: ConnectHookRequest): Promise<Principal> {
    const key = ConnectHook.keyOf(r);
    let v = this.cache.get(key);
    if (v) this.metrics.hookRequests.inc({ hook: 'connect', result: 'cached' });
    else {
      let p = this.pending.get(key);
      if (!p) {
        p = this.fetch(key, r).finally(() => this.pending.delete(key));
        this.pending.set(key, p);
      }
      v = await p;
    }
    if ('refusal' in v) throw v.refusal;
    return v.principal;
  }

  private async fetch(key: string, r: ConnectHookRequest): Promise<Verdict> {
    let raw: unknown;
    try {
      raw = await this.client.post(this.cfg.url, r);
    } catch (e) {
      const f = e instanceof HookFailure ? e : new HookFailure('unavailable', (e as Error).message);
      this.metrics.hookRequests.inc({ hook: 'connect', result: f.kind });
      this.log.warn({ hook: 'connect', result: f.kind, door: r.door }, `connect hook failed: ${f.message}`);
      throw f;
    }
    const parsed = answerSchema.safeParse(raw);
    let verdict: Verdict;
    let until = Date.now() + this.ttlMs;
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const why = `the app's answer is not valid: ${issue ? `${issue.path.join('.') || '(answer)'}: ${issue.message}` : 'bad shape'}`;
      this.metrics.hookRequests.inc({ hook: 'connect', result: 'invalid' });
      this.log.warn({ hook: 'connect', result: 'invalid', door: r.door }, `connect hook failed: ${why}`);
      throw new HookFailure('invalid', why);
    }
    const a = parsed.data;
    if (a.result === 'deny') {
      const code = a.status === 403 ? 'forbidden' : 'unauthorized';
      verdict = { refusal: new OmnipushError(code, a.reason ? `refused by the app: ${a.reason}` : 'refused by the app', { hook: 'connect' }) };
    } else {
      let grants;
      try {
        grants = toGrants(a.grants);
      } catch (e) {
        this.metrics.hookRequests.inc({ hook: 'connect', result: 'invalid' });
        throw new HookFailure('invalid', `the app's grants hold a bad filter: ${(e as Error).message}`);
      }
      const principal: Principal = { id: a.sub, kind: 'token', grants };
      const expiresAt = a.expiresAt !== undefined ? a.expiresAt * 1000 : a.ttl !== undefined ? Date.now() + a.ttl * 1000 : undefined;
      if (expiresAt !== undefined) {
        if (expiresAt <= Date.now()) {
          verdict = { refusal: new OmnipushError('unauthorized', 'the app allowed credentials that have expired already', { hook: 'connect' }) };
          this.metrics.hookRequests.inc({ hook: 'connect', result: 'deny' });
          return verdict;
        }
        principal.expiresAt = expiresAt;
        until = Math.min(until, expiresAt);
      }
      if (a.info) principal.info = a.info;
      verdict = { principal };
    }
    this.metrics.hookRequests.inc({ hook: 'connect', result: a.result });
    this.cache.set(key, verdict, until);
    return verdict;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
