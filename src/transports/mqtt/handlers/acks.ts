import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet';
import { successAck } from '../codec.js';
import type { MqttConnection } from '../connection.js';
import { MqttProtocolError, RC } from '../reason-codes.js';
import { receiptRecipient } from '../../../core/receipt.js';
import type { StoredMessage } from '../../../core/message.js';

/**
 * PUBACK, PUBREC and PUBCOMP for messages we sent (MQTT 5 §4.3). An id not in flight is late
 * (a resend crossed its acknowledgement) and is let be; an acknowledgement of the wrong kind for
 * the id's flow — PUBACK for QoS 2, PUBREC for QoS 1, PUBCOMP before PUBREL was sent — breaks the
 * flow the standard prescribes (§4.3.2, §4.3.3) and is a protocol error (§4.13; 3.1.1 §4.8: close).
 */
export function handleAck(conn: MqttConnection, p: IPubackPacket | IPubrecPacket | IPubcompPacket): void {
  const s = conn.session!;
  const id = p.messageId ?? 0;
  const f = s.inflight.get(id);
  if (f) {
    const want = f.stage === 'pubrel' ? 'pubcomp' : f.out.qos === 1 ? 'puback' : 'pubrec';
    // a PUBREC again while PUBREL is out is a resend of the same step: PUBREL goes again
    if (p.cmd !== want && !(p.cmd === 'pubrec' && f.stage === 'pubrel')) {
      throw new MqttProtocolError(RC.protocolError, `${p.cmd.toUpperCase()} for packet identifier ${id}, which waits for ${want.toUpperCase()}`);
    }
  }
  // a message asking for a receipt (it has properties, then the receipt's): the client has it
  if (f && f.stage === 'publish' && f.out.m.properties !== undefined && p.cmd !== 'pubcomp' && (p.reasonCode ?? 0) < 0x80) receiptAck(conn, f.out.m);
  if (p.cmd === 'puback') s.complete(id, 'publish');
  else if (p.cmd === 'pubcomp') s.complete(id, 'pubrel');
  else if (!s.received(id, (p.reasonCode ?? 0) >= 0x80)) {
    // a PUBREC for an id we do not hold: finish the client's side of the exchange
    conn.send(conn.version === 5 ? { cmd: 'pubrel', messageId: id, reasonCode: RC.packetIdNotFound } : { cmd: 'pubrel', messageId: id });
  }
}

function receiptAck(conn: MqttConnection, m: StoredMessage): void {
  const receipts = conn.broker.ctx.receipts;
  const to = receiptRecipient(m);
  if (receipts && to !== undefined && to === conn.principal.id) receipts.ackDelivery(conn.principal, m.cursor, 'mqtt');
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
