import type { Delivery } from '../../core/encoded.js';
import type { OmnipushError } from '../../core/errors.js';
import { canReceive, type Principal } from '../../core/grants.js';
import type { GapInfo, Hub, HubSubscriber, SubscribePlan } from '../../core/hub.js';
import { parseCursor } from '../../core/message.js';
import type { MqttSession, SubOptions } from './session.js';

/** The hub's newest seq: what a live subscription starts after and a replay runs up to. */
export function headSeq(hub: Hub): number {
  return parseCursor(hub.headCursor()).seq;
}

/**
 * A session's one hub subscription, covering all its non-shared filters; the hub delivers each
 * message once however many filters overlap, and the session works out QoS and identifiers.
 * Replaced as a whole when the filter set changes.
 */
export class SessionFeed implements HubSubscriber {
  readonly transport = 'mqtt';
  /** Messages up to this seq come from history (a resumed session), the rest are live. */
  replayUpTo = 0;
  replaying = false;

  constructor(
    readonly principal: Principal,
    private readonly session: MqttSession,
    private readonly onClose: (reason: OmnipushError) => void,
  ) {}

  deliver(d: Delivery): void {
    const m = d.message;
    this.session.offer(m, d, m.seq <= this.replayUpTo);
  }

  gap(_info: GapInfo): void {
    // history after the session's position was pruned: MQTT has no signal for it (docs/mqtt.md)
  }

  close(reason: OmnipushError): void {
    this.onClose(reason);
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
}

/** `$share/<group>/<filter>`: one hub subscription; each message goes to one connected member, in turn. */
class SharedGroup implements HubSubscriber {
  readonly transport = 'mqtt';
  readonly principal: Principal = { id: 'mqtt-shared-group', kind: 'user', grants: { publish: { allow: [], deny: [] }, subscribe: { allow: [], deny: [] } } };
  readonly members: Member[] = [];
  private turn = 0;

  deliver(d: Delivery): void {
    const m = d.message;
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const mb = this.members[(this.turn + i) % n];
      const port = mb.session.port;
      if (!port || !canReceive(port.principal, m.topic)) continue;
      this.turn = (this.turn + i + 1) % n;
      mb.session.push({ m, qos: Math.min(mb.opts.qos, m.qos ?? 1) as 0 | 1 | 2, retain: mb.opts.rap && m.retain, ids: mb.opts.id !== undefined ? [mb.opts.id] : undefined, d }, false);
      return;
    }
  }

  gap(): void {}

  close(): void {}
}

/** Every shared subscription group of the broker. */
export class SharedGroups {
  private readonly groups = new Map<string, SharedGroup>();

  constructor(private readonly hub: Hub) {}

  /** Adds (or updates) a member; `filter` was validated and granted by the caller. */
  join(shareName: string, filter: string, session: MqttSession, opts: SubOptions): void {
    let g = this.groups.get(shareName);
    if (!g) {
      g = new SharedGroup();
      this.groups.set(shareName, g);
      const plan: SubscribePlan = { filters: [filter], perMessageCheck: false, mode: 'live', afterSeq: headSeq(this.hub) };
      void this.hub.subscribe(g, plan).catch(() => undefined);
    }
    const existing = g.members.find((x) => x.session === session);
    if (existing) existing.opts = opts;
    else g.members.push({ session, opts });
  }

  /** Removes a member; the group's hub subscription ends with its last member. */
  leave(shareName: string, session: MqttSession): boolean {
    const g = this.groups.get(shareName);
    if (!g) return false;
    const i = g.members.findIndex((x) => x.session === session);
    if (i < 0) return false;
    g.members.splice(i, 1);
    if (g.members.length === 0) {
      this.groups.delete(shareName);
      this.hub.unsubscribe(g);
    }
    return true;
  }
}

/** `$share/<group>/<filter>` → its parts; null when it is not a shared subscription; throws when malformed. */
export function parseShared(f: string): { group: string; filter: string } | null {
  if (!f.startsWith('$share/')) return null;
  const rest = f.slice('$share/'.length);
  const slash = rest.indexOf('/');
  const group = slash < 0 ? rest : rest.slice(0, slash);
  const filter = slash < 0 ? '' : rest.slice(slash + 1);
  if (group === '' || group.includes('+') || group.includes('#') || filter === '') throw new Error('a shared subscription is $share/<group>/<filter>');
  return { group, filter };
}
