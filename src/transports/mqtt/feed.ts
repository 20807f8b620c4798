import type { Delivery } from '../../core/encoded.js';
import type { OmnipushError } from '../../core/errors.js';
import { canReceive, type Principal } from '../../core/grants.js';
import type { GapInfo, Hub, HubSubscriber, SubscribePlan } from '../../core/hub.js';
import type { Logger } from 'pino';
import type { ClusterControl } from '../../cluster/control.js';
import type { MqttSession, OutMsg, SubOptions } from './session.js';

/**
 * A session's one hub subscription, covering all its non-shared filters; the hub delivers each
 * message once however many filters overlap, and the session works out QoS and identifiers.
 * Replaced as a whole when the filter set changes.
 */
export class SessionFeed implements HubSubscriber {
  // on the prototype: one field fewer in every idle connection's feed
  get transport(): string {
    return 'mqtt';
  }

  /** Messages up to this seq come from history (a resumed session), the rest are live. */
  replayUpTo = 0;
  replaying = false;

  constructor(
    readonly principal: Principal,
    private readonly session: MqttSession,
    /** Told when the hub ends the subscription (an object, not a closure: one fewer per connection). */
    private readonly owner: { feedClosed(reason: OmnipushError): void },
    /** The subscription's filter, when it has just one. */
    private readonly only?: string,
  ) {}

  deliver(d: Delivery): void {
    const m = d.message;
    this.session.offer(m, d, m.seq <= this.replayUpTo, this.only);
  }

  gap(_info: GapInfo): void {
    // history after the session's position was pruned: MQTT has no signal for it (docs/mqtt.md)
  }

  close(reason: OmnipushError): void {
    this.owner.feedClosed(reason);
  }

  backpressure(): Promise<void> | null {
    return this.session.room();
  }
}

/** Sends one new subscription its retained messages, then goes away; live traffic is the feed's. */
export class RetainedFeed implements HubSubscriber {
  readonly transport = 'mqtt';

  constructor(
    readonly principal: Principal,
    private readonly session: MqttSession,
    private readonly opts: SubOptions,
    private readonly upTo: number,
  ) {}

  deliver(d: Delivery): void {
    const m = d.message;
    if (m.seq > this.upTo || !m.retain) return;
    this.session.push({ m, qos: Math.min(this.opts.qos, m.qos ?? 1) as 0 | 1 | 2, retain: true, ids: this.opts.id !== undefined ? [this.opts.id] : undefined }, false);
  }

  gap(): void {}

  close(): void {}

  backpressure(): Promise<void> | null {
    return this.session.room();
  }
}

interface Member {
  session: MqttSession;
  opts: SubOptions;
  /**
   * Its UNSUBSCRIBE of the group waits for the session's record write: it takes a message only
   * when no other member does, and holds it until the write is answered (docs/mqtt.md, Sessions).
   */
  leaving?: boolean;
}

/**
 * `$share/<group>/<filter>`: one hub subscription; each message goes to one connected member.
 * Alone, members take turns. In a cluster every node's hub sees every message, so every node with
 * members of the group agrees on one taker without asking anyone: member `seq mod n` of the
 * group's cluster-wide member list sorted by client id (`view`); only the node holding that member
 * delivers (to it, or — if it just went away — to the next member on the same node).
 * A member that is leaving is not counted (nor in the cluster's list) while another can take the
 * message; it gets it only when the group has no one else.
 */
class SharedGroup implements HubSubscriber {
  readonly transport = 'mqtt';
  readonly principal: Principal = { id: 'mqtt-shared-group', kind: 'user', grants: { publish: { allow: [], deny: [] }, subscribe: { allow: [], deny: [] } } };
  readonly members: Member[] = [];
  private turn = 0;
  /** Cluster: client ids of every member on every live node, sorted; null when alone. */
  view: string[] | null = null;
  /** Numbers the view reads so that an older read never replaces a newer one. */
  reads = 0;

  constructor(readonly name: string) {}

  deliver(d: Delivery): void {
    if (this.view) return this.deliverClustered(d);
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const mb = this.members[(this.turn + i) % n];
      if (mb.leaving || !this.offer(mb, d)) continue;
      this.turn = (this.turn + i + 1) % n;
      return;
    }
    this.offerLeaving(d);
  }

  /** No one else takes the message: a member that is leaving holds it. */
  private offerLeaving(d: Delivery): void {
    for (const mb of this.members) if (mb.leaving && this.offer(mb, d)) return;
  }

  private deliverClustered(d: Delivery): void {
    const view = this.view!;
    const n = view.length;
    if (n === 0) return this.offerLeaving(d);
    const start = d.message.seq % n;
    for (let i = 0; i < n; i++) {
      const id = view[(start + i) % n];
      const mb = this.members.find((x) => x.session.clientId === id);
      // the taker is on another node: that node delivers (it can only redirect among its own)
      if (!mb) {
        if (i === 0) return;
        continue;
      }
      if (this.offer(mb, d)) return;
    }
  }

  private offer(mb: Member, d: Delivery): boolean {
    const m = d.message;
    const port = mb.session.port;
    if (!port || !canReceive(port.principal, m.topic)) return false;
    const out: OutMsg = { m, qos: Math.min(mb.opts.qos, m.qos ?? 1) as 0 | 1 | 2, retain: mb.opts.rap && m.retain, ids: mb.opts.id !== undefined ? [mb.opts.id] : undefined, d };
    if (mb.leaving) return mb.session.holdShared(this.name, out);
    mb.session.push(out, false);
    return true;
  }

  gap(): void {}

  close(): void {}
}

/** Heartbeats between two reads of a group's member list when nothing was announced. */
const REREAD_TICKS = 5;

/** Cluster event: the members of a shared group changed (`name`). */
const SHARE_EVENT = 'mqtt-share';
const shareMap = (name: string) => `mqtt-share:${name}`;

/**
 * Every shared subscription group of the broker. In a cluster, membership is also kept in a
 * cluster map per group (client id → node), re-read by every node holding members of the group
 * when another node announces a change, when the node list changes, and every few heartbeats.
 */
export class SharedGroups {
  private readonly groups = new Map<string, SharedGroup>();

  constructor(
    private readonly hub: Hub,
    private readonly cluster?: ClusterControl,
    private readonly log?: Logger,
  ) {
    const c = cluster;
    if (c?.clustered) {
      c.on(SHARE_EVENT, (e) => {
        if (typeof e.name === 'string' && this.groups.has(e.name)) this.refresh(e.name);
      });
      // events may be missed: the lists are read again when the node list changes, and every few heartbeats
      let ticks = 0;
      c.onTick((_nodes, changed) => {
        if (!changed && ++ticks % REREAD_TICKS !== 0) return;
        for (const name of this.groups.keys()) this.refresh(name);
      });
    }
  }

  /** Re-reads a group's cluster-wide members; entries of dead nodes are dropped from the map. */
  private refresh(name: string): void {
    const c = this.cluster!;
    const g = this.groups.get(name);
    if (!g) return;
    const read = ++g.reads;
    c.mapAll(shareMap(name)).then(
      (all) => {
        if (g.reads !== read || this.groups.get(name) !== g) return;
        const ids: string[] = [];
        for (const [id, node] of all) {
          if (c.isLive(node)) ids.push(id);
          else void c.mapTake(shareMap(name), id, node).catch(() => undefined);
        }
        // our own members count even before their write is read back (not those leaving)
        for (const mb of g.members) if (!mb.leaving && !ids.includes(mb.session.clientId)) ids.push(mb.session.clientId);
        g.view = ids.sort();
      },
      (e: unknown) => this.log?.warn({ err: e, group: name }, 'mqtt shared group members not read'),
    );
  }

  private announce(name: string, write: Promise<unknown>): void {
    write.then(
      () => {
        this.cluster!.publish(SHARE_EVENT, { name });
        this.refresh(name);
      },
      (e: unknown) => this.log?.warn({ err: e, group: name }, 'mqtt shared group membership not recorded'),
    );
  }

  /** Client ids of the group's members as this node sees them: cluster-wide in a cluster, else its own. */
  members(shareName: string): string[] {
    const g = this.groups.get(shareName);
    if (!g) return [];
    return g.view ?? g.members.map((m) => m.session.clientId);
  }

  /** Adds (or updates) a member; `filter` was validated and granted by the caller. A member leaving stays. */
  join(shareName: string, session: MqttSession, opts: SubOptions): void {
    let g = this.groups.get(shareName);
    if (!g) {
      g = new SharedGroup(shareName);
      if (this.cluster?.clustered) g.view = [];
      this.groups.set(shareName, g);
      const plan: SubscribePlan = { filters: [sharedFilter(shareName)], perMessageCheck: false, mode: 'live', afterSeq: this.hub.headSeq };
      void this.hub.subscribe(g, plan).catch(() => undefined);
    }
    const existing = g.members.find((x) => x.session === session);
    if (existing) {
      existing.opts = opts;
      if (existing.leaving) {
        existing.leaving = false;
        this.listed(g, session, true);
      }
    } else {
      g.members.push({ session, opts });
      this.listed(g, session, true);
    }
  }

  /**
   * A member's UNSUBSCRIBE of the group waits for its record write: until {@link leave} or
   * {@link join} decides, it takes messages only when no other member does (the session holds
   * them), and in a cluster it is out of the group's list. False when it is not a member.
   */
  leaving(shareName: string, session: MqttSession): boolean {
    const mb = this.groups.get(shareName)?.members.find((x) => x.session === session);
    if (!mb) return false;
    if (!mb.leaving) {
      mb.leaving = true;
      this.listed(this.groups.get(shareName)!, session, false);
    }
    return true;
  }

  /** In a cluster, adds the member to the group's list or takes it out (only our own entry). */
  private listed(g: SharedGroup, session: MqttSession, on: boolean): void {
    const c = this.cluster;
    if (!c?.clustered) return;
    const id = session.clientId;
    if (on) {
      if (!g.view!.includes(id)) g.view = [...g.view!, id].sort();
      this.announce(g.name, c.mapSet(shareMap(g.name), id, c.nodeId));
    } else {
      g.view = g.view!.filter((x) => x !== id);
      // only our own entry: the client may already be a member through another node
      this.announce(g.name, c.mapTake(shareMap(g.name), id, c.nodeId));
    }
  }

  /**
   * Removes a member; the group's hub subscription ends with its last member. `onlyLeaving`: only
   * a member still leaving (not one that joined again meanwhile).
   */
  leave(shareName: string, session: MqttSession, onlyLeaving = false): boolean {
    const g = this.groups.get(shareName);
    if (!g) return false;
    const i = g.members.findIndex((x) => x.session === session);
    if (i < 0 || (onlyLeaving && !g.members[i].leaving)) return false;
    const [mb] = g.members.splice(i, 1);
    if (!mb.leaving) this.listed(g, session, false);
    if (g.members.length === 0) {
      this.groups.delete(shareName);
      this.hub.unsubscribe(g);
    }
    return true;
  }
}

/** `$share/<group>/<filter>` → its parts; null when it is not a shared subscription; throws when malformed. */
/** The filter of a `$share/<group>/<filter>` name that {@link parseShared} accepted. */
export function sharedFilter(shareName: string): string {
  return shareName.slice(shareName.indexOf('/', '$share/'.length) + 1);
}

export function parseShared(f: string): { group: string; filter: string } | null {
  if (!f.startsWith('$share/')) return null;
  const rest = f.slice('$share/'.length);
  const slash = rest.indexOf('/');
  const group = slash < 0 ? rest : rest.slice(0, slash);
  const filter = slash < 0 ? '' : rest.slice(slash + 1);
  if (group === '' || group.includes('+') || group.includes('#') || filter === '') throw new Error('a shared subscription is $share/<group>/<filter>');
  return { group, filter };
}
