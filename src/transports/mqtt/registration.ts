import type { ConnectionInfo } from '../../core/connections.js';
import type { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { MqttConnection } from './connection.js';
import { disconnectCodeFor } from './reason-codes.js';

/**
 * An MQTT connection as the connection registry sees it, from CONNACK on. Its subscriptions are its
 * session's (shared ones as `$share/<group>/<filter>`).
 */
export class MqttRegistration implements ConnectionInfo {
  readonly door = 'mqtt';
  readonly since = Date.now();
  presenceState: unknown = undefined;
  readonly address: string;
  principal: Principal;

  constructor(
    private readonly conn: MqttConnection,
    readonly id: string,
  ) {
    this.principal = conn.principal;
    this.address = conn.address;
  }

  /** The MQTT client id: presence counts a reconnect with it (to any node) as the same member. */
  get clientId(): string {
    return this.conn.clientId;
  }

  subscriptions(): string[] {
    const s = this.conn.session;
    return s ? (s.sharedCount > 0 ? [...s.subs.keys(), ...s.shared.keys()] : [...s.subs.keys()]) : [];
  }

  subscriptionCount(): number {
    const s = this.conn.session;
    return s ? s.subs.size + s.sharedCount : 0;
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
    // the registry's observers (presence, webhooks) hear it as they do an UNSUBSCRIBE
    conn.broker.ctx.registry.subscriptionsChanged(this);
    return 1;
  }
}
