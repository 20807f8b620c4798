import type { IUnsubackPacket, IUnsubscribePacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { RC } from '../reason-codes.js';

/** UNSUBSCRIBE (MQTT 5 §3.10): 0x00 or 0x11 (no subscription existed) per filter. */
export function handleUnsubscribe(conn: MqttConnection, p: IUnsubscribePacket): void {
  const { broker } = conn;
  const s = conn.session!;
  const codes: number[] = [];
  let changed = false;
  for (const f of p.unsubscriptions) {
    let found: boolean;
    if (f.startsWith('$share/')) {
      found = s.shared.delete(f);
      broker.shared.leave(f, s);
    } else {
      found = s.subs.delete(f);
      changed ||= found;
    }
    if (found) s.dirty = s.persistent;
    codes.push(found ? RC.success : RC.noSubscriptionExisted);
  }
  const ack: IUnsubackPacket = { cmd: 'unsuback', messageId: p.messageId, granted: conn.version === 5 ? codes : [] };
  conn.send(ack);
  if (changed) broker.refreshFeed(conn, false);
}
