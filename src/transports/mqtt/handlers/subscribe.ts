import type { ISubackPacket, ISubscribePacket } from 'mqtt-packet';
import { subscribeVerdict } from '../../../core/grants.js';
import { validateFilter } from '../../../core/topic.js';
import type { MqttConnection } from '../connection.js';
import { parseShared } from '../feed.js';
import { MqttProtocolError, RC } from '../reason-codes.js';
import type { SubOptions } from '../session.js';
import { commonOptions } from '../subscriptions.js';
import { notSaved } from '../session-store.js';
import { MqttPresenceWatch, PRESENCE_PREFIX } from '../presence-topics.js';

/** Non-shared filters one session may hold: the hub takes at most 64 filters per subscription. */
export const MAX_FILTERS_PER_SESSION = 64;

/** One subscription of the packet that is granted. */
interface Grant {
  /** Its place in SUBACK. */
  at: number;
  /** The session's key: the filter, or `$share/<group>/<filter>`. */
  key: string;
  filter: string;
  shared: boolean;
  opts: SubOptions;
  /** What the session held under `key` before (undefined: nothing). */
  before: SubOptions | undefined;
  /** Gets retained messages (Retain Handling). */
  retained: boolean;
}

/**
 * SUBSCRIBE (MQTT 5 §3.8): a reason code per filter (granted QoS, 0x87 not authorized, 0x8F invalid,
 * 0x97 over the limit; 3.1.1 gets 0x80 for any refusal); then the session's hub subscription is
 * widened and each new subscription gets its retained messages as Retain Handling says.
 *
 * A persistent session's record is written with the new subscriptions before SUBACK. When the
 * store does not take it, the session goes back to what it held and the granted filters get 0x80
 * instead (Unspecified error; 3.1.1: Failure): a subscription acknowledged is one that was kept.
 * Resolves once SUBACK is sent (the connection holds the packets behind it until then).
 */
export function handleSubscribe(conn: MqttConnection, p: ISubscribePacket): Promise<void> | void {
  const { quotas, ruleHooks } = conn.broker.ctx;
  // filters a subscribe hook covers wait for the app; the others never do
  if (ruleHooks && p.subscriptions.some((s) => hookedFilter(conn, s.topic))) {
    const filters = p.subscriptions.map((s) => hookedFilter(conn, s.topic)).filter((f): f is string => f !== undefined);
    return ruleHooks.refusedFilters(conn.principal, filters, 'mqtt').then(
      async (refused) => {
        if (conn.closed) return;
        const elsewhere = quotas.subscriptionsShared(conn.principal) ? await quotas.subscriptionsElsewhere(conn.principal) : 0;
        if (!conn.closed) return subscribe(conn, p, elsewhere, refused);
      },
      (e: unknown) => {
        // the app could not be asked (fail closed): every filter is refused, the connection stays
        if (conn.closed) return;
        const why = e instanceof Error ? e.message : 'subscribe hook failed';
        const ack: ISubackPacket = { cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map(() => (conn.version === 5 ? RC.unspecified : 0x80)) };
        if (conn.version === 5) ack.properties = { reasonString: why.slice(0, 200) };
        conn.send(ack);
      },
    );
  }
  // alone (or anonymous) the quota needs nothing but this node's counts: no await, no allocation
  if (!quotas.subscriptionsShared(conn.principal)) return subscribe(conn, p, 0);
  return quotas.subscriptionsElsewhere(conn.principal).then((elsewhere) => (conn.closed ? undefined : subscribe(conn, p, elsewhere)));
}

/** The filter of `topic` (a shared one's inner filter) when a subscribe hook covers it and the grants allow it. */
function hookedFilter(conn: MqttConnection, topic: string): string | undefined {
  let filter: string;
  try {
    const shared = parseShared(topic);
    filter = validateFilter(shared ? shared.filter : topic, conn.broker.hub.limits);
  } catch {
    return undefined;
  }
  return conn.broker.ctx.ruleHooks!.subscribeRule(filter) && subscribeVerdict(conn.principal, filter) !== 'deny' ? filter : undefined;
}

/** SUBSCRIBE with `elsewhere` subscriptions of the principal on other nodes. */
function subscribe(conn: MqttConnection, p: ISubscribePacket, elsewhere: number, refused?: Map<string, string>): Promise<void> | void {
  const { broker } = conn;
  const s = conn.session!;
  const v5 = conn.version === 5;
  const id = p.properties?.subscriptionIdentifier;
  const codes: number[] = [];
  const grants: Grant[] = [];
  // the whole packet is checked before the session changes, so a protocol error leaves it as it was
  const asked = new Set<string>();
  let count = s.subs.size;
  // `quotas.subscriptionsPerConnection` / `PerPrincipal`: what may still be added, shared or not
  let room = broker.ctx.quotas.subscriptionRoom(conn.principal, s.subs.size + s.sharedCount, true, elsewhere);
  for (const sub of p.subscriptions) {
    const rh = (sub.rh ?? 0) as 0 | 1 | 2;
    let opts: SubOptions;
    if (id === undefined && !s.persistent && sub.qos <= 2 && rh <= 2) opts = commonOptions(sub.qos, sub.nl === true, sub.rap === true, rh);
    else {
      opts = { qos: sub.qos, nl: sub.nl === true, rap: sub.rap === true, rh };
      if (id !== undefined) opts.id = id;
    }
    let shared: { group: string; filter: string } | null;
    let filter: string;
    try {
      shared = parseShared(sub.topic);
      filter = validateFilter(shared ? shared.filter : sub.topic, broker.hub.limits);
    } catch {
      codes.push(v5 ? RC.topicFilterInvalid : 0x80);
      continue;
    }
    if (shared && opts.nl) throw new MqttProtocolError(RC.protocolError, 'No Local on a shared subscription');
    if (!shared && filter.startsWith(PRESENCE_PREFIX)) {
      conn.presenceWatch ??= new MqttPresenceWatch(conn);
      codes.push(conn.presenceWatch.add(filter.slice(PRESENCE_PREFIX.length), MAX_FILTERS_PER_SESSION));
      continue;
    }
    if (subscribeVerdict(conn.principal, filter) === 'deny' || refused?.has(filter)) {
      broker.log.info({ client: conn.clientId, principal: conn.principal.id, filter: sub.topic }, 'mqtt subscription denied');
      codes.push(v5 ? RC.notAuthorized : 0x80);
      continue;
    }
    // one copy of a filter that many sessions hold
    if (!shared) filter = broker.strings.get(filter);
    const key = shared ? sub.topic : filter;
    const map = shared ? s.shared : s.subs;
    // a filter repeated in one packet: the later options win, as if in two packets
    const existed = asked.has(key) || map.has(key);
    if (!existed && room <= 0) {
      // 3.1.1 SUBACK can only say Failure (0x80)
      codes.push(v5 ? RC.quotaExceeded : 0x80);
      continue;
    }
    if (!shared && !existed) {
      if (count >= MAX_FILTERS_PER_SESSION) {
        codes.push(v5 ? RC.quotaExceeded : 0x80);
        continue;
      }
      count++;
    }
    if (!existed) room--;
    asked.add(key);
    const earlier = grants.find((g) => g.key === key);
    grants.push({ at: codes.length, key, filter, shared: shared !== null, opts, before: earlier ? earlier.before : map.get(key), retained: !shared && (opts.rh === 0 || (opts.rh === 1 && !existed)) });
    codes.push(sub.qos);
  }
  for (const g of grants) (g.shared ? s.shared : s.subs).set(g.key, g.opts);

  const done = () => {
    const ack: ISubackPacket = { cmd: 'suback', messageId: p.messageId, granted: codes };
    conn.send(ack);
    // a SUBACK over the client's Maximum Packet Size closed the connection instead of going out
    if (conn.closed) return;
    for (const g of grants) if (g.shared) broker.shared.join(g.key, s, g.opts);
    if (grants.some((g) => !g.shared)) broker.refreshFeed(conn, false);
    broker.ctx.registry.subscriptionsChanged(conn);
    for (const g of grants) if (g.retained) broker.sendRetained(conn, g.filter, g.opts);
  };
  if (grants.length === 0 || !s.persistent) {
    done();
    return;
  }
  return broker.sessions.save(s).then(
    () => {
      // the connection may have gone meanwhile: the session keeps the subscriptions, nothing is sent
      if (!conn.closed) done();
    },
    (e: unknown) => {
      broker.log.warn({ err: e, client: conn.clientId }, 'mqtt session not saved; SUBSCRIBE refused');
      // back to what the session held, unless another change came in meanwhile (a new connection)
      for (const g of [...grants].reverse()) {
        const map = g.shared ? s.shared : s.subs;
        if (map.get(g.key) !== g.opts) continue;
        if (g.before) map.set(g.key, g.before);
        else map.delete(g.key);
      }
      for (const g of grants) codes[g.at] = RC.unspecified;
      const ack: ISubackPacket = { cmd: 'suback', messageId: p.messageId, granted: codes };
      if (v5) ack.properties = { reasonString: notSaved(e) };
      conn.send(ack);
    },
  );
}
