import type { Logger } from 'pino';
import type { ClusterControl } from '../../cluster/control.js';
import type { Principal } from '../../core/grants.js';
import type { Hub } from '../../core/hub.js';
import type { SessionClaims } from './session-claims.js';
import { SESSION_KIND, sessionFromRecord } from './session-record.js';
import type { SessionStore } from './session-store.js';

/**
 * Cluster map: client id → `<node> <owner>` of the session a node holds. A session without a
 * record (expiry 0) has no other trace another node could read before claiming it.
 */
const OWNERS_MAP = 'mqtt-owners';

/**
 * The identity a session belongs to. The kind is part of it: a static user `alice` and a token
 * whose `sub` is `alice` are different principals. Every anonymous client is the same one.
 */
export function ownerOf(p: Principal): string {
  // connections of one principal (anonymous ones share one) share one string, not one each
  if (p !== lastPrincipal) {
    lastPrincipal = p;
    lastOwner = `${p.kind}:${p.id}`;
  }
  return lastOwner;
}

let lastPrincipal: Principal | undefined;
let lastOwner = '';

/**
 * Finds who owns the session a client identifier names before a CONNECT claims it, so that a
 * CONNECT with other credentials is refused before any takeover request reaches the holder, and
 * before a clean start could end the session.
 */
export class SessionOwners {
  constructor(
    private readonly control: ClusterControl,
    private readonly hub: Hub,
    private readonly sessions: SessionStore,
    private readonly claims: SessionClaims,
    private readonly log: Logger,
  ) {}

  /**
   * The owner of `clientId`'s session: held here, its record, or (a cluster) what the live node
   * holding its claim announced. Undefined: no session, or a record written before owners were kept.
   */
  async find(clientId: string): Promise<string | undefined> {
    const held = this.sessions.peek(clientId);
    if (held) return held.owner;
    const buf = await this.hub.getRecord(SESSION_KIND, clientId);
    const readBack = this.sessions.peek(clientId);
    if (readBack) return readBack.owner;
    if (buf) {
      const s = sessionFromRecord(clientId, buf, 0);
      if (s) return s.owner;
    }
    if (!this.control.clustered) return undefined;
    const [entry, node] = await Promise.all([this.control.mapGet(OWNERS_MAP, clientId), this.claims.holder(clientId)]);
    if (!entry || !node) return undefined;
    const sp = entry.indexOf(' ');
    // an entry of a node that no longer holds the claim is stale: its session ended or moved
    return entry.slice(0, sp) === node ? entry.slice(sp + 1) : undefined;
  }

  /** This node took up `clientId`'s session for `owner` (a cluster: other nodes can see it). */
  announce(clientId: string, owner: string): void {
    const c = this.control;
    if (!c.clustered) return;
    c.mapSet(OWNERS_MAP, clientId, `${c.nodeId} ${owner}`).catch((e: unknown) => this.log.warn({ err: e, client: clientId }, 'mqtt session owner not announced'));
  }

  /** The session ended here: its entry goes, unless another node announced the id since. */
  withdraw(clientId: string, owner: string | undefined): void {
    const c = this.control;
    if (!c.clustered) return;
    const p = owner === undefined ? c.mapTake(OWNERS_MAP, clientId) : c.mapTake(OWNERS_MAP, clientId, `${c.nodeId} ${owner}`);
    p.catch((e: unknown) => this.log.warn({ err: e, client: clientId }, 'mqtt session owner not withdrawn'));
  }
}
