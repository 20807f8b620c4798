import type { ISubackPacket, ISubscribePacket } from 'mqtt-packet';
import { subscribeVerdict } from '../../../core/grants.js';
import { validateFilter } from '../../../core/topic.js';
import type { MqttConnection } from '../connection.js';
import { parseShared } from '../feed.js';
import { MqttProtocolError, RC } from '../reason-codes.js';
import type { SubOptions } from '../session.js';

/** Non-shared filters one session may hold: the hub takes at most 64 filters per subscription. */
export const MAX_FILTERS_PER_SESSION = 64;

/**
 * SUBSCRIBE (MQTT 5 §3.8): a reason code per filter (granted QoS, 0x87 not authorized, 0x8F invalid,
 * 0x97 over the limit; 3.1.1 gets 0x80 for any refusal); then the session's hub subscription is
 * widened and each new subscription gets its retained messages as Retain Handling says.
 */
export function handleSubscribe(conn: MqttConnection, p: ISubscribePacket): void {
  const { broker } = conn;
  const s = conn.session!;
  const v5 = conn.version === 5;
  const id = p.properties?.subscriptionIdentifier;
  const codes: number[] = [];
  const retained: Array<[string, SubOptions]> = [];
  let changed = false;
  for (const sub of p.subscriptions) {
    const opts: SubOptions = { qos: sub.qos, nl: sub.nl === true, rap: sub.rap === true, rh: (sub.rh ?? 0) as 0 | 1 | 2 };
    if (id !== undefined) opts.id = id;
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
    if (subscribeVerdict(conn.principal, filter) === 'deny') {
      broker.log.info({ client: conn.clientId, principal: conn.principal.id, filter: sub.topic }, 'mqtt subscription denied');
      codes.push(v5 ? RC.notAuthorized : 0x80);
      continue;
    }
    if (shared) {
      s.shared.set(sub.topic, opts);
      broker.shared.join(sub.topic, filter, s, opts);
    } else {
      const existed = s.subs.has(filter);
      if (!existed && s.subs.size >= MAX_FILTERS_PER_SESSION) {
        codes.push(v5 ? RC.quotaExceeded : 0x80);
        continue;
      }
      s.subs.set(filter, opts);
      changed = true;
      if (opts.rh === 0 || (opts.rh === 1 && !existed)) retained.push([filter, opts]);
    }
    s.dirty = s.persistent;
    codes.push(sub.qos);
  }
  const ack: ISubackPacket = { cmd: 'suback', messageId: p.messageId, granted: codes };
  conn.send(ack);
  if (changed) broker.refreshFeed(conn, false);
  for (const [f, o] of retained) broker.sendRetained(conn, f, o);
}
