import { successAck } from '../codec.js';
import type { MqttConnection } from '../connection.js';
import { RC } from '../reason-codes.js';

/**
 * PUBACK (QoS 1) or PUBREC (QoS 2) for a client's PUBLISH. Success is fixed bytes; a v5 refusal
 * carries its reason code and, when given, a reason string (the connection leaves it out where the
 * client's limits ask). 3.1.1 has no way to say no: it gets the success form.
 */
export function ackPublish(conn: MqttConnection, qos: 1 | 2, messageId: number, rc: number, reason?: string): void {
  if (conn.version === 5 && rc !== RC.success) {
    conn.send({ cmd: qos === 1 ? 'puback' : 'pubrec', messageId, reasonCode: rc, properties: reason ? { reasonString: reason.slice(0, 200) } : undefined });
    return;
  }
  conn.sendBytes(successAck(qos === 1 ? 'puback' : 'pubrec', messageId));
}
