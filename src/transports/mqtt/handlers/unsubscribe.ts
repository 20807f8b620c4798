import type { IUnsubackPacket, IUnsubscribePacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { RC } from '../reason-codes.js';
import type { SubOptions } from '../session.js';
import { notSaved } from '../session-store.js';
import { PRESENCE_PREFIX } from '../presence-topics.js';

/** One subscription the packet removes. */
interface Removed {
  /** Its place in UNSUBACK. */
  at: number;
  /** The session's key: the filter, or `$share/<group>/<filter>`. */
  key: string;
  shared: boolean;
  opts: SubOptions;
}

/**
 * UNSUBSCRIBE (MQTT 5 §3.10): 0x00 or 0x11 (no subscription existed) per filter. A subscription
 * removed gets no message published after UNSUBSCRIBE arrived (§3.10.4); what was queued or in
 * flight before still goes.
 *
 * A persistent session's record is written without the subscriptions before UNSUBACK. Until it
 * is answered, the messages they match are held (the session's hub subscription and its shared
 * groups keep them coming); then:
 * - written: the subscriptions are gone, and of the held messages only what the remaining
 *   subscriptions match is sent, as they say;
 * - not written: the subscriptions stay, v5 gets 0x80 (Unspecified error) for them and every held
 *   message is sent as if nothing had happened — in order, once; a 3.1.1 connection, whose
 *   UNSUBACK cannot say no, is closed without one, and the held messages come from history when
 *   the session resumes.
 * Resolves once UNSUBACK is sent (the connection holds the packets behind it until then).
 */
export function handleUnsubscribe(conn: MqttConnection, p: IUnsubscribePacket): Promise<void> | void {
  const { broker } = conn;
  const s = conn.session!;
  const codes: number[] = [];
  const removed: Removed[] = [];
  for (const f of p.unsubscriptions) {
    if (f.startsWith(PRESENCE_PREFIX)) {
      codes.push(conn.presenceWatch?.remove(f.slice(PRESENCE_PREFIX.length)) ? RC.success : RC.noSubscriptionExisted);
      continue;
    }
    const shared = f.startsWith('$share/');
    const map = shared ? s.shared : s.subs;
    const opts = map.get(f);
    if (opts) {
      map.delete(f);
      removed.push({ at: codes.length, key: f, shared, opts });
    } else if (shared) broker.shared.leave(f, s);
    codes.push(opts ? RC.success : RC.noSubscriptionExisted);
  }
  const filtersChanged = removed.some((r) => !r.shared);

  const ack = (granted: number[], reason?: string) => {
    const packet: IUnsubackPacket = { cmd: 'unsuback', messageId: p.messageId, granted: conn.version === 5 ? granted : [] };
    if (reason && conn.version === 5) packet.properties = { reasonString: reason };
    conn.send(packet);
    broker.ctx.registry.subscriptionsChanged(conn);
  };
  if (removed.length === 0 || !s.persistent) {
    for (const r of removed) if (r.shared) broker.shared.leave(r.key, s);
    if (filtersChanged) broker.refreshFeed(conn, false);
    ack(codes);
    return;
  }

  // until the write is answered the hub subscription keeps its filters and the groups keep the
  // member: what comes for the subscriptions being removed is held by the session
  const filters = new Map<string, SubOptions>();
  const shares = new Set<string>();
  for (const r of removed) {
    if (!r.shared) filters.set(r.key, r.opts);
    else if (broker.shared.leaving(r.key, s)) shares.add(r.key);
  }
  const removal = s.beginRemoval(filters, shares);
  const leaveGroups = () => {
    for (const r of removed) if (r.shared) broker.shared.leave(r.key, s, true);
  };
  return broker.sessions.save(s).then(
    () => {
      leaveGroups();
      // the connection may have gone meanwhile: the record holds what UNSUBACK would have said; nothing is sent
      if (conn.closed) return;
      if (filtersChanged) broker.refreshFeed(conn, false);
      ack(codes);
      s.settleRemoval(removal);
    },
    (e: unknown) => {
      broker.log.warn({ err: e, client: conn.clientId }, 'mqtt session not saved; UNSUBSCRIBE refused');
      // the subscriptions stay — unless another connection took the session up meanwhile: it goes
      // on with the session as it found it (its record follows in a grouped write)
      if (!conn.closed || s.port === null) {
        for (const r of removed) {
          const map = r.shared ? s.shared : s.subs;
          if (!map.has(r.key)) map.set(r.key, r.opts);
        }
      }
      if (conn.closed || conn.version !== 5) {
        // the session is offline (or about to be): it is in no group; the messages held come from history
        leaveGroups();
        if (!conn.closed) conn.disconnect(RC.serverBusy, notSaved(e));
        return;
      }
      for (const r of removed) if (r.shared) broker.shared.join(r.key, s, r.opts);
      for (const r of removed) codes[r.at] = RC.unspecified;
      ack(codes, notSaved(e));
      s.settleRemoval(removal);
    },
  );
}
