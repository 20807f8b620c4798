import type { IDisconnectPacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { MqttProtocolError, RC } from '../reason-codes.js';

/**
 * DISCONNECT from the client: 0x00 drops the will (0x04 and error codes keep it); MQTT 5 may
 * change the session expiry, but not from 0 to more (§3.14.2.2.2).
 */
export function handleDisconnect(conn: MqttConnection, p: IDisconnectPacket): void {
  const s = conn.session!;
  const rc = conn.version === 5 ? (p.reasonCode ?? 0) : 0;
  const expiry = p.properties?.sessionExpiryInterval;
  if (expiry !== undefined) {
    if (conn.terms.connectExpiry === 0 && expiry > 0) throw new MqttProtocolError(RC.protocolError, 'session expiry cannot be set at DISCONNECT when CONNECT had none');
    s.expiry = Math.min(expiry, conn.broker.config.maxSessionExpiry);
  }
  if (rc === RC.success) conn.will = undefined;
  conn.closeReason = `client sent DISCONNECT 0x${rc.toString(16).padStart(2, '0')}`;
  conn.state = 'closed';
  conn.broker.connectionClosed(conn);
  conn.link.end();
}
