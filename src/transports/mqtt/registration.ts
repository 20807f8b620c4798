import type { ConnectionInfo } from '../../core/connections.js';
import type { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { MqttConnection } from './connection.js';
import { RC } from './reason-codes.js';

/** The DISCONNECT reason code (MQTT 5 §3.14.2.1) that says why the server ends a connection for `reason`. */
export function disconnectCodeFor(reason: OmnipushError): number {
  switch (reason.code) {
    case 'unauthorized':
    case 'forbidden':
      return RC.notAuthorized;
    case 'quota_exceeded':
    case 'slow_consumer':
      return RC.quotaExceeded;
    case 'rate_limited':
      return RC.messageRateTooHigh;
    case 'shutting_down':
      return RC.serverShuttingDown;
    case 'unavailable':
    case 'too_many_connections':
      return RC.serverBusy;
    default:
      return RC.administrativeAction;
  }
}

/**
 * An MQTT connection as the connection registry sees it, from CONNACK on. Its subscriptions are its
 * session's (shared ones as `$share/<group>/<filter>`).
 */
export class MqttRegistration implements ConnectionInfo {
  readonly door = 'mqtt';
  readonly since = Date.now();
  readonly address: string;
  principal: Principal;

  constructor(
    private readonly conn: MqttConnection,
    readonly id: string,
  ) {
    this.principal = conn.principal;
    this.address = conn.address;
  }

  subscriptions(): string[] {
    const s = this.conn.session;
    return s ? [...s.subs.keys(), ...s.shared.keys()] : [];
  }

  subscriptionCount(): number {
    const s = this.conn.session;
    return s ? s.subs.size + s.shared.size : 0;
  }

  close(reason: OmnipushError): void {
    this.conn.disconnect(disconnectCodeFor(reason), reason.message);
  }

  /** Drops the subscription from the session as an UNSUBSCRIBE would, without an UNSUBACK (none was asked for). */
  unsubscribe(filter: string): number {
    const { conn } = this;
    const s = conn.session;
    if (!s || conn.closed) return 0;
    if (filter.startsWith('$share/')) {
      if (!s.shared.delete(filter)) return 0;
      conn.broker.shared.leave(filter, s);
    } else {
      if (!s.subs.delete(filter)) return 0;
      conn.broker.refreshFeed(conn, false);
    }
    s.dirty = s.persistent;
    return 1;
  }
}
