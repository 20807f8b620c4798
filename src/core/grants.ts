import { filterCovers, filterMatches, filtersIntersect } from './topic.js';

/** Allow and deny filters for one action. Deny wins. */
export interface FilterRule {
  allow: string[];
  deny: string[];
}

export interface Grants {
  publish: FilterRule;
  subscribe: FilterRule;
  /** May use the server API (`/v1/admin/...`). Absent: no. */
  admin?: boolean;
  /** Topics whose presence (members, join/leave) may be read. Absent: none. */
  presence?: string[];
}

/** Who is asking. Every door turns its credentials into one of these. */
export interface Principal {
  /** Stable identity: JWT `sub`, MQTT username, or `anonymous`. */
  id: string;
  kind: 'anonymous' | 'token' | 'user';
  grants: Grants;
  /** ms since the epoch after which the credentials are no longer valid (JWT `exp`). */
  expiresAt?: number;
  /** What the app said about the client when its connect hook let it in (docs/hooks.md). */
  info?: Record<string, unknown>;
  /** What presence lists about this client: the token's `info` claim (docs/presence.md). */
  presenceInfo?: Record<string, unknown>;
}

/** Receipt events of topic T are published to `$receipts/T`; subscribing to them takes the right to publish to T. */
export const RECEIPTS_PREFIX = '$receipts/';

export const ALLOW_ALL: Grants = {
  publish: { allow: ['#'], deny: [] },
  subscribe: { allow: ['#'], deny: [] },
  presence: ['#'],
};

export const DENY_ALL: Grants = {
  publish: { allow: [], deny: [] },
  subscribe: { allow: [], deny: [] },
};

/** May `p` publish to the topic name `topic`? */
export function canPublish(p: Principal, topic: string): boolean {
  // receipt events are the server's word: no grant lets a client write one
  if (topic.charCodeAt(0) === 36 && topic.startsWith(RECEIPTS_PREFIX)) return false;
  const r = p.grants.publish;
  for (const d of r.deny) if (filterMatches(d, topic)) return false;
  for (const a of r.allow) if (filterMatches(a, topic)) return true;
  return false;
}

/**
 * The verdict on a subscription filter:
 * - `deny`: no allow filter covers it, or a deny filter covers it;
 * - `allow`: covered by an allow filter and no deny filter overlaps it;
 * - `filter`: allowed, but some deny filter overlaps part of it, so each delivery must be checked
 *   with {@link canReceive}.
 */
export type SubscribeVerdict = 'allow' | 'deny' | 'filter';

export function subscribeVerdict(p: Principal, filter: string): SubscribeVerdict {
  // receipts of a topic are for whoever may publish to it (docs/receipts.md)
  if (filter.startsWith(RECEIPTS_PREFIX)) return verdictOf(p.grants.publish, filter.slice(RECEIPTS_PREFIX.length));
  return verdictOf(p.grants.subscribe, filter);
}

function verdictOf(r: FilterRule, filter: string): SubscribeVerdict {
  let overlaps = false;
  for (const d of r.deny) {
    if (filterCovers(d, filter)) return 'deny';
    if (filtersIntersect(d, filter)) overlaps = true;
  }
  for (const a of r.allow) if (filterCovers(a, filter)) return overlaps ? 'filter' : 'allow';
  return 'deny';
}

/** May `p` receive a message on `topic`? (Per-delivery check for `filter` verdicts.) */
export function canReceive(p: Principal, topic: string): boolean {
  if (topic.charCodeAt(0) === 36 && topic.startsWith(RECEIPTS_PREFIX)) return canPublish(p, topic.slice(RECEIPTS_PREFIX.length));
  const r = p.grants.subscribe;
  for (const d of r.deny) if (filterMatches(d, topic)) return false;
  for (const a of r.allow) if (filterMatches(a, topic)) return true;
  return false;
}

/** May `p` read the presence (members, join/leave events) of the topic name `topic`? */
export function canReadPresence(p: Principal, topic: string): boolean {
  const allow = p.grants.presence;
  if (!allow) return false;
  for (const a of allow) if (filterMatches(a, topic)) return true;
  return false;
}
