import { createHash } from 'node:crypto';
import { OmnipushError } from '../../core/errors.js';
import type { Grants, Principal } from '../../core/grants.js';
import type { Hub } from '../../core/hub.js';
import { parseUaPublicKey } from './ece.js';

export const SUB_KIND = 'webpush.sub';

export type DeliveryMode = 'always' | 'offline';

/** A browser's push subscription as we keep it. */
export interface PushSubscriptionRecord {
  /** Derived from the endpoint: one record per browser subscription, whoever registers it. */
  id: string;
  endpoint: string;
  /** base64url P-256 point (the browser's `p256dh`). */
  p256dh: string;
  /** base64url 16 bytes. */
  auth: string;
  filters: string[];
  mode: DeliveryMode;
  /** The principal that registered it, with the grants it had then (deliveries are checked against them). */
  principal: { id: string; kind: Principal['kind']; grants: Grants };
  createdAt: number;
  /** Set when the push service refused our VAPID credentials (401/403); nothing is sent until re-registered. */
  failing?: { status: number; reason: string; at: number };
}

/** The id of the subscription at `endpoint`. */
export function subscriptionId(endpoint: string): string {
  return createHash('sha256').update(endpoint).digest().subarray(0, 16).toString('base64url');
}

export interface ParsedRegistration {
  endpoint: URL;
  p256dh: string;
  auth: string;
  filters: string[];
  mode: DeliveryMode;
}

/** Is `host` one of `patterns` (exact names, `*.suffix`, or `*` for any)? */
export function hostAllowed(host: string, patterns: readonly string[]): boolean {
  const h = host.toLowerCase();
  for (const p of patterns) {
    const q = p.toLowerCase();
    if (q === '*' || q === h || (q.startsWith('*.') && h.endsWith(q.slice(1)))) return true;
  }
  return false;
}

function bad(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/**
 * Checks `POST /v1/webpush/subscriptions` bodies: `{subscription: PushSubscriptionJSON, topics, mode}`.
 * Topic filters are checked by the hub (grants) afterwards.
 */
export function parseRegistration(body: unknown, allowHttp: boolean, endpointHosts: readonly string[]): ParsedRegistration {
  if (!body || typeof body !== 'object' || Array.isArray(body)) bad('body must be a JSON object {subscription, topics, mode}');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['subscription', 'topics', 'mode'].includes(k)) bad(`unknown field ${JSON.stringify(k)}`);
  const s = b.subscription as Record<string, unknown> | undefined;
  if (!s || typeof s !== 'object' || Array.isArray(s)) bad('subscription must be the browser\'s PushSubscription JSON {endpoint, keys: {p256dh, auth}}');
  if (typeof s.endpoint !== 'string' || s.endpoint.length > 2048) bad('subscription.endpoint must be a URL string (≤ 2048 characters)');
  let endpoint: URL;
  try {
    endpoint = new URL(s.endpoint);
  } catch {
    bad('subscription.endpoint is not a URL');
  }
  if (endpoint.protocol !== 'https:' && !(allowHttp && endpoint.protocol === 'http:')) bad('subscription.endpoint must be an https: URL');
  if (endpoint.username || endpoint.password || endpoint.hash) bad('subscription.endpoint must not carry credentials or a fragment');
  if (!hostAllowed(endpoint.hostname, endpointHosts)) {
    throw new OmnipushError('forbidden', `push endpoints on ${JSON.stringify(endpoint.hostname)} are not accepted here (webpush.endpointHosts)`);
  }
  const keys = s.keys as Record<string, unknown> | undefined;
  if (!keys || typeof keys !== 'object' || typeof keys.p256dh !== 'string' || typeof keys.auth !== 'string') bad('subscription.keys must hold p256dh and auth strings');
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(keys.p256dh) || !parseUaPublicKey(keys.p256dh)) bad('subscription.keys.p256dh must be a base64url P-256 public key (65 bytes, uncompressed)');
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(keys.auth) || Buffer.from(keys.auth, 'base64url').length !== 16) bad('subscription.keys.auth must be 16 bytes, base64url');
  const topics = b.topics;
  if (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => typeof t !== 'string')) bad('topics must be a non-empty array of topic filters');
  const mode = b.mode ?? 'always';
  if (mode !== 'always' && mode !== 'offline') bad('mode must be "always" or "offline"');
  return {
    endpoint,
    p256dh: Buffer.from(keys.p256dh, 'base64url').toString('base64url'),
    auth: Buffer.from(keys.auth, 'base64url').toString('base64url'),
    filters: topics as string[],
    mode,
  };
}

/** The public view of a subscription (keys are never echoed back). */
export function describeSubscription(r: PushSubscriptionRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { id: r.id, endpoint: r.endpoint, topics: r.filters, mode: r.mode, createdAt: r.createdAt };
  if (r.failing) out.failing = r.failing;
  return out;
}

/**
 * Push subscriptions: durable in the hub's records, mirrored in memory (every one of them is
 * attached to the hub while the server runs, so they are all loaded anyway).
 */
export class SubscriptionRegistry {
  private readonly byId = new Map<string, PushSubscriptionRecord>();

  constructor(private readonly hub: Hub) {}

  async load(): Promise<PushSubscriptionRecord[]> {
    const rows = await this.hub.listRecords(SUB_KIND);
    for (const row of rows) {
      const r = JSON.parse(row.value.toString('utf8')) as PushSubscriptionRecord;
      this.byId.set(r.id, r);
    }
    return [...this.byId.values()];
  }

  /** Reads every subscription again, dropping ones deleted meanwhile (another node may have changed them). */
  async reload(): Promise<PushSubscriptionRecord[]> {
    this.byId.clear();
    return this.load();
  }

  all(): IterableIterator<PushSubscriptionRecord> {
    return this.byId.values();
  }

  /** Takes a record another node wrote. */
  mirror(r: PushSubscriptionRecord): void {
    this.byId.set(r.id, r);
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): PushSubscriptionRecord | undefined {
    return this.byId.get(id);
  }

  ofPrincipal(principalId: string): PushSubscriptionRecord[] {
    const out: PushSubscriptionRecord[] = [];
    for (const r of this.byId.values()) if (r.principal.id === principalId) out.push(r);
    return out;
  }

  async put(r: PushSubscriptionRecord): Promise<void> {
    await this.hub.putRecords([{ kind: SUB_KIND, key: r.id, value: Buffer.from(JSON.stringify(r)) }]);
    this.byId.set(r.id, r);
  }

  /** Forgets the subscription in memory and returns the record change that deletes it durably. */
  forget(id: string): { kind: string; key: string; value: null } {
    this.byId.delete(id);
    return { kind: SUB_KIND, key: id, value: null };
  }
}
