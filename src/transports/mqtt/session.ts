import type { Delivery } from '../../core/encoded.js';
import type { Principal } from '../../core/grants.js';
import type { StoredMessage } from '../../core/message.js';
import { filterMatches } from '../../core/topic.js';
import { Subscriptions } from './subscriptions.js';

/** Options of one subscription (MQTT 5 §3.8.3.1); 3.1.1 subscriptions use the defaults. */
export interface SubOptions {
  qos: 0 | 1 | 2;
  /** No Local: not the messages this client published. */
  nl: boolean;
  /** Retain As Published. */
  rap: boolean;
  /** Retain Handling: 0 send retained, 1 only for a new subscription, 2 never. */
  rh: 0 | 1 | 2;
  /** Subscription Identifier. */
  id?: number;
}

/** A message on its way to one client. */
export interface OutMsg {
  m: StoredMessage;
  qos: 0 | 1 | 2;
  retain: boolean;
  ids?: number[];
  /** The fan-out's shared encodings, while they are fresh (same tick). */
  d?: Delivery;
  /** Not a live message of the session's own feed (retained, shared): sending it does not move the history position. */
  aside?: boolean;
}

export interface Inflight {
  out: OutMsg;
  /** `publish`: PUBLISH sent, waiting for PUBACK/PUBREC; `pubrel`: PUBREL sent, waiting for PUBCOMP. */
  stage: 'publish' | 'pubrel';
}

/**
 * An UNSUBSCRIBE of a persistent session whose record write is still at work. Its subscriptions
 * are out of the session already (the record written is the session without them), but whether
 * they are gone is not decided until the write is answered: the messages they match are held
 * meanwhile, and {@link MqttSession.settleRemoval} sends them as the subscriptions then say.
 */
export interface Removal {
  /** Non-shared filters being removed. */
  readonly filters: Map<string, SubOptions>;
  /** `$share/<group>/<filter>` names being left. */
  readonly shares: Set<string>;
  /**
   * Messages held, in the order they came: from the session's hub subscription (`m`), or from a
   * shared group being left (`share`, `out`). Once one is held, all of the hub subscription's
   * later messages are held behind it, so they keep their order.
   */
  readonly held: Array<{ m: StoredMessage; replayed: boolean } | { share: string; out: OutMsg }>;
}

/** What a session needs from the connection it is attached to. */
export interface SessionPort {
  readonly version: number;
  readonly principal: Principal;
  /** How many QoS 1/2 messages may be in flight (the client's Receive Maximum, capped by ours). */
  readonly window: number;
  /** Writes a PUBLISH; false when it could not be sent (too big for the client: dropped). */
  sendPublish(out: OutMsg, packetId: number, dup: boolean): boolean;
  sendPubrel(packetId: number): void;
  /** The queue is full of QoS 1/2 messages: the connection is closed (docs/mqtt.md, limits). */
  queueOverflow(): void;
}

/** The empty queue every session starts with (frozen: a push to it would be a bug). */
const NO_QUEUE = Object.freeze([]) as unknown as OutMsg[];

/** The OutMsg of a QoS 0 message sent at once (see `take`); its message is set before every use. */
const QOS0_NOW: OutMsg = { m: undefined as unknown as StoredMessage, qos: 0, retain: false, ids: undefined, d: undefined };

/**
 * One client's MQTT session: subscriptions, messages in flight both ways, the queue behind the
 * in-flight window, and where in the hub's history it stands. It outlives connections (and, through
 * its record, restarts) for as long as its expiry interval says.
 */
export class MqttSession extends Subscriptions {
  /**
   * Its non-shared subscriptions, filter → options: the session keeps them itself (it extends
   * Subscriptions), one object fewer per idle connection.
   */
  get subs(): Subscriptions {
    return this;
  }

  // Made on first use: most sessions never hold a shared subscription, a message in flight or a
  // QoS 2 id, and three empty collections cost ~0.5 KB per idle connection.
  private sharedMap: Map<string, SubOptions> | undefined;
  private inflightMap: Map<number, Inflight> | undefined;
  private inQos2Set: Set<number> | undefined;
  /** Messages behind the in-flight window; the shared {@link NO_QUEUE} while there are none. */
  queue: OutMsg[] = NO_QUEUE;
  private nextPid = 1;
  /** Seq of the last live message handed to the client: a resumed session replays history after it. */
  sentSeq: number;
  epoch: string;
  /** Seconds the session outlives its connection. */
  expiry = 0;
  /** ms; when the last connection ended (expiry runs from here). */
  disconnectedAt: number | undefined;
  port: SessionPort | null = null;
  /** Seq of the last live message this session matched (overlapping hub deliveries arrive once each). */
  private lastOffered = 0;
  /** Wakes a replay waiting for the queue to drain. */
  private drained: Array<() => void> | null = null;
  /** An UNSUBSCRIBE whose record write is at work (one at a time: the connection holds what follows it). */
  private removal: Removal | null = null;
  /** Unsaved changes since the last record write. */
  dirty = false;
  /** Handed to another node: this copy is never written again. */
  released = false;
  /**
   * The principal whose session this is ({@link ownerOf}): a CONNECT with other credentials may
   * not take it over or clean it. Undefined only for a record written before owners were kept.
   */
  owner: string | undefined;

  constructor(
    readonly clientId: string,
    epoch: string,
    headSeq: number,
    private readonly maxQueued: number,
  ) {
    super();
    this.epoch = epoch;
    this.sentSeq = headSeq;
  }

  /** `$share/<group>/<filter>` → options. */
  get shared(): Map<string, SubOptions> {
    return (this.sharedMap ??= new Map());
  }

  /** How many shared subscriptions it holds (without making the map). */
  get sharedCount(): number {
    return this.sharedMap?.size ?? 0;
  }

  /** Outgoing QoS 1/2 messages by packet id, short of their acknowledgement. */
  get inflight(): Map<number, Inflight> {
    return (this.inflightMap ??= new Map());
  }

  /** QoS 2 packet ids received and PUBREC'd, waiting for PUBREL (duplicates are not republished). */
  get inQos2(): Set<number> {
    return (this.inQos2Set ??= new Set());
  }

  /** Wakes every replay waiting for room (the list is made only when one waits: most sessions never do). */
  private wakeAll(): void {
    const waiting = this.drained;
    this.drained = null;
    if (waiting) for (const w of waiting) w();
  }

  get persistent(): boolean {
    return this.expiry > 0;
  }

  /**
   * A message from the hub for this session's (non-shared) subscriptions; `replayed`: from history.
   * `only`: the hub subscription's filter when it has just one.
   */
  offer(m: StoredMessage, d: Delivery | undefined, replayed: boolean, only?: string): void {
    if (m.seq <= this.lastOffered) return;
    this.lastOffered = m.seq;
    const r = this.removal;
    if (r && (r.held.length > 0 || matchesAny(r.filters, m.topic))) {
      this.hold(r, { m, replayed }, () => owedQos(m, this.subs, this.clientId) > 0 || owedQos(m, r.filters, this.clientId) > 0);
      return;
    }
    this.take(m, d, replayed, only !== undefined && this.subs.only === only);
  }

  /**
   * Sends or queues `m` as the subscriptions say. `single`: the hub matched it against the one
   * filter the session holds, so there is nothing to test.
   */
  private take(m: StoredMessage, d: Delivery | undefined, replayed: boolean, single: boolean): void {
    let qos = -1;
    let retain = false;
    let ids: number[] | undefined;
    const sole = this.subs.onlyOptions;
    if (sole) {
      if ((single || filterMatches(this.subs.only!, m.topic)) && !(sole.nl && m.origin === this.clientId)) {
        qos = sole.qos;
        retain = sole.rap && m.retain === true;
        if (sole.id !== undefined) ids = [sole.id];
      }
    } else
      for (const [filter, o] of this.subs.several) {
        if (!filterMatches(filter, m.topic)) continue;
        if (o.nl && m.origin === this.clientId) continue;
        if (o.qos > qos) qos = o.qos;
        if (o.rap && m.retain) retain = true;
        if (o.id !== undefined) (ids ??= []).push(o.id);
      }
    if (qos < 0) {
      this.passed(m.seq);
      return;
    }
    const eff = Math.min(qos, m.qos ?? 1) as 0 | 1 | 2;
    // QoS 0 is not owed to a session that was away; history replays only carry what was promised
    if ((replayed && eff === 0) || (m.expiresAt !== undefined && m.expiresAt <= Date.now())) {
      this.passed(m.seq);
      return;
    }
    const port = this.port;
    if (eff === 0 && this.queue.length === 0 && port !== null) {
      // QoS 0 with nothing queued goes out now and nothing keeps it (sendPublish reads it before it
      // writes): one OutMsg serves every such send instead of one per delivery, 10k garbage objects
      // per message at 10k subscribers
      const out = QOS0_NOW;
      out.m = m;
      out.retain = retain;
      out.ids = ids;
      out.d = d;
      this.sentSeq = Math.max(this.sentSeq, m.seq);
      port.sendPublish(out, 0, false);
      out.ids = undefined;
      out.d = undefined;
      return;
    }
    this.push({ m, qos: eff, retain, ids, d }, true);
  }

  /**
   * The subscriptions in `filters` and `shares` were taken out of the session for a record write:
   * until {@link settleRemoval}, what they match is held rather than sent or dropped.
   */
  beginRemoval(filters: Map<string, SubOptions>, shares: Set<string>): Removal {
    const r: Removal = { filters, shares, held: [] };
    this.removal = r;
    return r;
  }

  /**
   * The record write of `r` was answered, and the session holds the subscriptions it is to keep:
   * the held messages go out as those say (none for a subscription now gone), in order.
   */
  settleRemoval(r: Removal): void {
    if (this.removal !== r) return;
    this.removal = null;
    for (const h of r.held) {
      // the connection may end on the way (a full queue): what is left comes back from history
      if (!this.port) break;
      if ('share' in h) {
        if (this.shared.has(h.share)) this.push(h.out, false);
      } else this.take(h.m, undefined, h.replayed, false);
    }
    this.wake();
  }

  /**
   * A shared group hands a message to this session while it is leaving the group: held, and sent
   * if the session stays in the group. False when the session is not leaving it (not taken).
   */
  holdShared(share: string, out: OutMsg): boolean {
    const r = this.removal;
    if (!r || !r.shares.has(share) || !this.port) return false;
    out.d = undefined;
    this.hold(r, { share, out }, () => out.qos > 0);
    return true;
  }

  /** Holds one message; past the queue's bound the rule of a full queue applies (`owed`: QoS 1/2). */
  private hold(r: Removal, h: Removal['held'][number], owed: () => boolean): void {
    if (this.backlog >= this.maxQueued) {
      if (owed()) this.port?.queueOverflow();
      return;
    }
    r.held.push(h);
  }

  /** Messages waiting to go out: queued, and held for an UNSUBSCRIBE. */
  private get backlog(): number {
    return this.queue.length + (this.removal?.held.length ?? 0);
  }

  /** A message not owed to the client moves the history position only if nothing owed waits before it. */
  private passed(seq: number): void {
    if (this.queue.length === 0) this.sentSeq = Math.max(this.sentSeq, seq);
  }

  /** Queues (or sends) one outgoing message. `live` messages advance the history position when sent. */
  push(out: OutMsg, live: boolean): void {
    if (!live) out.aside = true;
    if (this.queue.length === 0 && this.port && (out.qos === 0 || this.inflight.size < this.port.window)) {
      this.send(out);
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      // QoS 0 may be lost; a full queue of owed messages ends the connection, and a persistent
      // session gets them again from history after its cursor
      if (out.qos === 0) return;
      this.port?.queueOverflow();
      return;
    }
    out.d = undefined;
    if (this.queue === NO_QUEUE) this.queue = [];
    this.queue.push(out);
  }

  private send(out: OutMsg): void {
    const port = this.port!;
    if (!out.aside) this.sentSeq = Math.max(this.sentSeq, out.m.seq);
    if (out.qos === 0) {
      port.sendPublish(out, 0, false);
      return;
    }
    const pid = this.takePacketId();
    if (pid === 0) return;
    this.inflight.set(pid, { out, stage: 'publish' });
    if (this.persistent) this.dirty = true;
    if (!port.sendPublish(out, pid, false)) this.inflight.delete(pid);
  }

  /** Sends queued messages while the window allows. */
  pump(): void {
    const port = this.port;
    if (!port) return;
    let i = 0;
    while (i < this.queue.length) {
      const out = this.queue[i];
      if (out.qos > 0 && this.inflight.size >= port.window) break;
      i++;
      this.send(out);
    }
    if (i > 0) this.queue = i === this.queue.length ? NO_QUEUE : this.queue.slice(i);
    this.wake();
  }

  private wake(): void {
    if (this.backlog < this.maxQueued / 2 && this.drained) this.wakeAll();
  }

  /** Replays wait here while the queue (with what is held) is more than half full. */
  room(): Promise<void> | null {
    if (this.backlog < this.maxQueued / 2 || !this.port) return null;
    return new Promise((r) => (this.drained ??= []).push(r));
  }

  private takePacketId(): number {
    for (let n = 0; n < 65535; n++) {
      const pid = this.nextPid;
      this.nextPid = pid === 65535 ? 1 : pid + 1;
      if (!this.inflight.has(pid)) return pid;
    }
    return 0;
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2 done). False when the id was not in flight at that stage. */
  complete(pid: number, stage: Inflight['stage']): boolean {
    const f = this.inflight.get(pid);
    if (!f || f.stage !== stage || (stage === 'publish' && f.out.qos !== 1)) return false;
    this.inflight.delete(pid);
    if (this.persistent) this.dirty = true;
    this.pump();
    return true;
  }

  /** PUBREC: the client has it; answer PUBREL. A PUBREC with an error code ends the exchange. */
  received(pid: number, failed: boolean): boolean {
    const f = this.inflight.get(pid);
    if (!f || f.out.qos !== 2) return false;
    if (failed) {
      this.inflight.delete(pid);
      this.pump();
    } else {
      f.stage = 'pubrel';
      f.out.d = undefined;
      this.port?.sendPubrel(pid);
    }
    if (this.persistent) this.dirty = true;
    return true;
  }

  /** A connection took the session over: what was in flight goes again (PUBLISH with DUP, or PUBREL). */
  attach(port: SessionPort): void {
    this.port = port;
    this.disconnectedAt = undefined;
    if (this.inflightMap) for (const [pid, f] of this.inflightMap) {
      if (f.stage === 'pubrel') port.sendPubrel(pid);
      else if (!port.sendPublish(f.out, pid, true)) this.inflight.delete(pid);
    }
    this.pump();
  }

  /**
   * The connection ended. Queued and held messages are dropped: they come back from history on
   * resume (the history position never passed them).
   */
  detach(now: number): void {
    this.port = null;
    this.disconnectedAt = now;
    this.queue = NO_QUEUE;
    this.removal = null;
    this.lastOffered = 0;
    this.wakeAll();
    this.dirty = true;
  }

  /** Non-shared filters, for the hub. */
  filters(): string[] {
    return this.subs.keys();
  }
}

function matchesAny(filters: Map<string, SubOptions>, topic: string): boolean {
  for (const f of filters.keys()) if (filterMatches(f, topic)) return true;
  return false;
}

/** The QoS `m` is owed under `subs` (-1: none). */
function owedQos(m: StoredMessage, subs: Iterable<[string, SubOptions]>, clientId: string): number {
  let qos = -1;
  for (const [filter, o] of subs) {
    if (!filterMatches(filter, m.topic)) continue;
    if (o.nl && m.origin === clientId) continue;
    if (o.qos > qos) qos = o.qos;
  }
  return qos < 0 ? qos : Math.min(qos, m.qos ?? 1);
}
