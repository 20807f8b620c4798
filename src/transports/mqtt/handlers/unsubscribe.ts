import type { IUnsubackPacket, IUnsubscribePacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { RC } from '../reason-codes.js';
import type { SubOptions } from '../session.js';
import { notSaved } from '../session-store.js';

/**
 * UNSUBSCRIBE (MQTT 5 §3.10): 0x00 or 0x11 (no subscription existed) per filter. Deliveries for the
 * filters stop at once (§3.10.4); a persistent session's record is written before UNSUBACK. When
 * the store does not take it, the subscriptions come back: v5 gets 0x80 (Unspecified error) for
 * them, and a 3.1.1 connection, whose UNSUBACK cannot say no, is closed without one.
 * Resolves once UNSUBACK is sent (the connection holds the packets behind it until then).
 */
export function handleUnsubscribe(conn: MqttConnection, p: IUnsubscribePacket): Promise<void> | void {
  const { broker } = conn;
  const s = conn.session!;
  const codes: number[] = [];
  const removed: Array<{ at: number; key: string; shared: boolean; opts: SubOptions }> = [];
  for (const f of p.unsubscriptions) {
    const shared = f.startsWith('$share/');
    const map = shared ? s.shared : s.subs;
    const opts = map.get(f);
    if (shared) broker.shared.leave(f, s);
    if (opts) {
      map.delete(f);
      removed.push({ at: codes.length, key: f, shared, opts });
    }
    codes.push(opts ? RC.success : RC.noSubscriptionExisted);
  }
  const changed = removed.some((r) => !r.shared);
  if (changed) broker.refreshFeed(conn, false);

  const ack = (granted: number[], reason?: string) => {
    const packet: IUnsubackPacket = { cmd: 'unsuback', messageId: p.messageId, granted: conn.version === 5 ? granted : [] };
    if (reason && conn.version === 5) packet.properties = { reasonString: reason };
    conn.send(packet);
  };
  if (removed.length === 0 || !s.persistent) {
    ack(codes);
    return;
  }
  return broker.sessions.save(s).then(
    () => ack(codes),
    (e: unknown) => {
      broker.log.warn({ err: e, client: conn.clientId }, 'mqtt session not saved; UNSUBSCRIBE refused');
      // the subscriptions stay, unless another change came in meanwhile (a new connection)
      const back = removed.filter((r) => {
        const map = r.shared ? s.shared : s.subs;
        if (map.has(r.key)) return false;
        map.set(r.key, r.opts);
        return true;
      });
      if (conn.closed) return;
      if (conn.version !== 5) {
        conn.disconnect(RC.serverBusy, notSaved(e));
        return;
      }
      for (const r of back) if (r.shared) broker.shared.join(r.key, r.key.slice(r.key.indexOf('/', '$share/'.length) + 1), s, r.opts);
      if (back.some((r) => !r.shared)) broker.refreshFeed(conn, false);
      for (const r of removed) codes[r.at] = RC.unspecified;
      ack(codes, notSaved(e));
    },
  );
}
