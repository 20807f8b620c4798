import type { ConnectionInfo } from '../../core/connections.js';
import type { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { Broker } from './broker.js';
import type { MqttConnection } from './connection.js';
import { disconnectCodeFor } from './reason-codes.js';
import type { MqttSession } from './session.js';

/**
 * Connection times are kept as tenths of a second since this moment: a small integer lives in the
 * object itself, where a full ms timestamp takes a heap number (16 bytes) of its own per field.
 */
const CLOCK_ZERO = Date.now();

/** Tenths of a second since {@link CLOCK_ZERO} at `ms` (years before it outgrows a small integer). */
export function ticksAt(ms: number): number {
  return ((ms - CLOCK_ZERO) / 100) | 0;
}

/**
 * An MQTT connection as the connection registry sees it, from CONNACK on; its subscriptions are
 * its session's (shared ones as `$share/<group>/<filter>`). The connection class extends it, so an
 * idle connection holds one object rather than two.
 */
export abstract class MqttRegistration implements ConnectionInfo {
  /** The registry's id for it; '' until it is registered at CONNACK. */
  id = '';
  /** {@link ticksAt} of the registration. */
  private sinceAt = 0;
  presenceState: unknown = undefined;
  abstract readonly broker: Broker;
  abstract principal: Principal;
  abstract readonly address: string;
  /** The MQTT client id: presence counts a reconnect with it (to any node) as the same member. */
  abstract clientId: string;
  abstract session: MqttSession | null;
  abstract get closed(): boolean;
  abstract disconnect(rc: number, reason?: string): void;

  get door(): 'mqtt' {
    return 'mqtt';
  }

  get since(): number {
    return CLOCK_ZERO + this.sinceAt * 100;
  }

  /** Enters the connection registry (at CONNACK). */
  register(): void {
    const registry = this.broker.ctx.registry;
    this.id = registry.nextId('mqtt');
    this.sinceAt = ticksAt(Date.now());
    registry.add(this);
  }

  subscriptions(): string[] {
    const s = this.session;
    return s ? (s.sharedCount > 0 ? [...s.subs.keys(), ...s.shared.keys()] : s.subs.keys()) : [];
  }

  subscriptionCount(): number {
    const s = this.session;
    return s ? s.subs.size + s.sharedCount : 0;
  }

  close(reason: OmnipushError): void {
    this.disconnect(disconnectCodeFor(reason), reason.message);
  }

  /** Drops the subscription from the session as an UNSUBSCRIBE would, without an UNSUBACK (none was asked for). */
  unsubscribe(filter: string): number {
    const s = this.session;
    const { broker } = this;
    if (!s || this.closed) return 0;
    if (filter.startsWith('$share/')) {
      if (!s.shared.delete(filter)) return 0;
      broker.shared.leave(filter, s);
    } else {
      if (!s.subs.delete(filter)) return 0;
      broker.refreshFeed(this as MqttRegistration as MqttConnection, false);
    }
    s.dirty = s.persistent;
    // the registry's observers (presence, webhooks) hear it as they do an UNSUBSCRIBE
    broker.ctx.registry.subscriptionsChanged(this);
    return 1;
  }
}
