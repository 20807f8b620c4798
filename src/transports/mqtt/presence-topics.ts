import { OmnipushError } from '../../core/errors.js';
import type { PresenceWatcher } from '../../core/presence.js';
import type { MqttConnection } from './connection.js';
import { RC } from './reason-codes.js';

/** Join/leave events of topic T reach MQTT clients as QoS 0 messages on `$presence/T`. */
export const PRESENCE_PREFIX = '$presence/';

/**
 * A connection's `$presence/...` subscriptions. They live with the connection, not the session:
 * presence is about who is connected now, so a resumed session subscribes again.
 */
export class MqttPresenceWatch implements PresenceWatcher {
  readonly topics = new Set<string>();
  constructor(private readonly conn: MqttConnection) {}

  presenceEvent(topic: string, type: 'join' | 'leave', json: string): void {
    this.conn.send({ cmd: 'publish', topic: PRESENCE_PREFIX + topic, payload: Buffer.from(`{"type":"${type}",${json.slice(1)}`), qos: 0, retain: false, dup: false, messageId: 0 });
  }

  /**
   * SUBSCRIBE `$presence/<topic>`: the reason code for SUBACK (QoS 0 granted, or why not). At most
   * `max` topics per connection: each is a watcher the node tells of every join and leave.
   */
  add(topic: string, max: number): number {
    const { presence, log } = this.conn.broker.ctx;
    const v5 = this.conn.version === 5;
    try {
      if (!presence) throw new OmnipushError('not_found', 'no presence rules');
      presence.check(this.conn.principal, topic, true);
    } catch (e) {
      const code = e instanceof OmnipushError ? e.code : 'internal';
      log.info({ client: this.conn.clientId, principal: this.conn.principal.id, topic, code }, 'mqtt presence subscription refused');
      if (!v5) return 0x80;
      if (code === 'forbidden') return RC.notAuthorized;
      if (code === 'invalid_topic') return RC.wildcardSubscriptionsNotSupported;
      return RC.implementationSpecific;
    }
    if (!this.topics.has(topic)) {
      if (this.topics.size >= max) return v5 ? RC.quotaExceeded : 0x80;
      this.topics.add(topic);
      presence!.watch(topic, this);
    }
    return 0;
  }

  /** UNSUBSCRIBE `$presence/<topic>`: whether it existed. */
  remove(topic: string): boolean {
    if (!this.topics.delete(topic)) return false;
    this.conn.broker.ctx.presence?.unwatch(topic, this);
    return true;
  }

  clear(): void {
    for (const t of this.topics) this.conn.broker.ctx.presence?.unwatch(t, this);
    this.topics.clear();
  }
}
