import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet';
import { successAck } from '../codec.js';
import type { MqttConnection } from '../connection.js';
import { RC } from '../reason-codes.js';

/** PUBACK, PUBREC and PUBCOMP for messages we sent (MQTT 5 §4.3). Unknown ids are ignored, as the standard allows. */
export function handleAck(conn: MqttConnection, p: IPubackPacket | IPubrecPacket | IPubcompPacket): void {
  const s = conn.session!;
  const id = p.messageId ?? 0;
  if (p.cmd === 'puback') s.complete(id, 'publish');
  else if (p.cmd === 'pubcomp') s.complete(id, 'pubrel');
  else if (!s.received(id, (p.reasonCode ?? 0) >= 0x80)) {
    // a PUBREC for an id we do not hold: finish the client's side of the exchange
    conn.send(conn.version === 5 ? { cmd: 'pubrel', messageId: id, reasonCode: RC.packetIdNotFound } : { cmd: 'pubrel', messageId: id });
  }
}

/** PUBREL for a QoS 2 message we received: the packet id is free again. */
export function handlePubrel(conn: MqttConnection, p: IPubrelPacket): void {
  const s = conn.session!;
  const id = p.messageId ?? 0;
  const known = s.inQos2.delete(id);
  if (known) s.dirty = s.persistent;
  if (conn.version === 5 && !known) conn.send({ cmd: 'pubcomp', messageId: id, reasonCode: RC.packetIdNotFound });
  else conn.sendBytes(successAck('pubcomp', id));
}
