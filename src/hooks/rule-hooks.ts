import { z } from 'zod';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { OmnipushError } from '../core/errors.js';
import { canPublish, type Principal } from '../core/grants.js';
import type { PublishRequest } from '../core/hub.js';
import { filterMatches, filtersIntersect, validateFilter } from '../core/topic.js';
import type { Metrics } from '../metrics/metrics.js';
import { HookClient, HookFailure } from './hook-client.js';

type RuleConfig = Config['hooks']['subscribe'][number];

interface Rule {
  filter: string;
  url: string;
  failOpen: boolean;
  client: HookClient;
}

const subscribeAnswer = z.discriminatedUnion('result', [
  z.object({ result: z.literal('allow') }).strip(),
  z.object({ result: z.literal('deny'), reason: z.string().max(500).optional() }).strip(),
]);

const publishAnswer = z.discriminatedUnion('result', [
  z.object({ result: z.literal('allow') }).strip(),
  z.object({ result: z.literal('deny'), reason: z.string().max(500).optional() }).strip(),
  z
    .object({
      result: z.literal('replace'),
      /** the new payload, as text (UTF-8) or, with `encoding: "base64"`, bytes */
      payload: z.string().optional(),
      encoding: z.enum(['utf8', 'base64']).default('utf8'),
      contentType: z.string().max(256).optional(),
      properties: z.array(z.tuple([z.string(), z.string()])).max(64).optional(),
    })
    .strip(),
]);

/** Which door a subscribe or publish came by, as the app is told. */
export type HookDoor = 'http' | 'sse' | 'longpoll' | 'websocket' | 'mqtt';

/**
 * Subscribe and publish hooks, each bound to a topic filter so that topics no rule covers never
 * wait for the app. The first rule whose filter matches (publish) or overlaps (subscribe) is asked;
 * doors call {@link publishRule}/{@link subscribeRule} first, synchronously, and await the app only
 * when one applies.
 */
export class RuleHooks {
  private readonly subscribeRules: Rule[];
  private readonly publishRules: Rule[];

  constructor(
    cfg: Config['hooks'],
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    const build = (hook: string) => (r: RuleConfig) => ({
      filter: validateFilter(r.filter),
      url: r.url,
      failOpen: r.failOpen,
      client: new HookClient({ hook, timeoutMs: r.timeout * 1000, concurrency: r.concurrency, maxQueued: r.maxQueued }, metrics),
    });
    this.subscribeRules = cfg.subscribe.map(build('subscribe'));
    this.publishRules = cfg.publish.map(build('publish'));
  }

  /** Null when no rule is configured: doors then skip every check. */
  static create(cfg: Config['hooks'], metrics: Metrics, log: Logger): RuleHooks | undefined {
    return cfg.subscribe.length || cfg.publish.length ? new RuleHooks(cfg, metrics, log) : undefined;
  }

  subscribeRule(filter: string): Rule | undefined {
    for (const r of this.subscribeRules) if (filtersIntersect(r.filter, filter)) return r;
    return undefined;
  }

  publishRule(topic: string): Rule | undefined {
    for (const r of this.publishRules) if (filterMatches(r.filter, topic)) return r;
    return undefined;
  }

  /** Filters of `filters` the app refuses (empty: all allowed); rejects with `unavailable` when a hook fails closed. */
  async refusedFilters(p: Principal, filters: readonly string[], door: HookDoor): Promise<Map<string, string>> {
    const refused = new Map<string, string>();
    for (const filter of filters) {
      const rule = this.subscribeRule(filter);
      if (!rule) continue;
      const a = await this.ask(rule, 'subscribe', { door, sub: p.id, filter }, subscribeAnswer);
      if (a?.result === 'deny') refused.set(filter, a.reason ?? 'refused by the app');
    }
    return refused;
  }

  /** Rejects with `forbidden` naming the first filter the app refuses. */
  async checkSubscribe(p: Principal, filters: readonly string[], door: HookDoor): Promise<void> {
    const refused = await this.refusedFilters(p, filters, door);
    for (const [filter, reason] of refused) throw new OmnipushError('forbidden', `subscription to "${filter}" refused by the app: ${reason}`, { hook: 'subscribe' });
  }

  /**
   * The publish as the app wants it: unchanged, or with its payload and properties replaced.
   * Rejects with `forbidden` when the app refuses, `unavailable` when the hook fails closed. A
   * publish the grants refuse is not shown to the app (the hub refuses it next).
   */
  async publish(p: Principal, req: PublishRequest, door: HookDoor): Promise<PublishRequest> {
    const rule = this.publishRule(req.topic);
    if (!rule || !canPublish(p, req.topic)) return req;
    const body: Record<string, unknown> = { door, sub: p.id, topic: req.topic, payload: req.payload.toString('base64'), encoding: 'base64' };
    if (req.contentType !== undefined) body.contentType = req.contentType;
    if (req.properties) body.properties = req.properties;
    const a = await this.ask(rule, 'publish', body, publishAnswer);
    if (!a || a.result === 'allow') return req;
    if (a.result === 'deny') throw new OmnipushError('forbidden', `publish to "${req.topic}" refused by the app: ${a.reason ?? 'no reason given'}`, { hook: 'publish' });
    const out: PublishRequest = { ...req };
    if (a.payload !== undefined) out.payload = Buffer.from(a.payload, a.encoding);
    if (a.contentType !== undefined) out.contentType = a.contentType;
    if (a.properties !== undefined) out.properties = a.properties;
    return out;
  }

  /** The app's valid answer; undefined when it failed and the rule fails open. */
  private async ask<T extends { result: string }>(rule: Rule, hook: string, body: unknown, schema: z.ZodType<T, z.ZodTypeDef, unknown>): Promise<T | undefined> {
    let why: HookFailure;
    try {
      const parsed = schema.safeParse(await rule.client.post(rule.url, body));
      if (parsed.success) {
        this.metrics.hookRequests.inc({ hook, result: parsed.data.result });
        return parsed.data;
      }
      const issue = parsed.error.issues[0];
      why = new HookFailure('invalid', `the app's answer is not valid: ${issue ? `${issue.path.join('.') || '(answer)'}: ${issue.message}` : 'bad shape'}`);
    } catch (e) {
      if (!(e instanceof HookFailure)) throw e;
      why = e;
    }
    this.metrics.hookRequests.inc({ hook, result: why.kind });
    this.log.warn({ hook, rule: rule.filter, result: why.kind }, `${hook} hook failed: ${why.message}`);
    if (rule.failOpen) return undefined;
    throw new OmnipushError('unavailable', `could not ask the app about this ${hook}: ${why.message}`, { hook, retryAfter: 5 });
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscribeRules, ...this.publishRules].map((r) => r.client.close()));
  }
}
