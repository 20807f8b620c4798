import type { Hub } from '../../core/hub.js';
import { VERSION } from '../../version.js';
import type { Broker } from './broker.js';

/**
 * `$SYS/broker/...`: broker figures as retained messages, refreshed every `mqtt.sysInterval`
 * seconds. A leading wildcard never matches `$` topics, so `#` subscribers do not see them; a
 * client needs a grant covering `$SYS/#` to subscribe.
 */
export class SysTopics {
  private timer: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private last = new Map<string, string>();

  constructor(
    private readonly hub: Hub,
    private readonly broker: Broker,
  ) {}

  start(intervalSeconds: number): void {
    if (intervalSeconds <= 0) return;
    this.publish();
    this.timer = setInterval(() => this.publish(), intervalSeconds * 1000);
    this.timer.unref();
  }

  figures(): Array<[string, string]> {
    const st = this.broker.stats;
    return [
      ['$SYS/broker/version', `omnipush ${VERSION}`],
      ['$SYS/broker/uptime', `${Math.floor((Date.now() - this.startedAt) / 1000)} seconds`],
      ['$SYS/broker/clients/connected', String(this.broker.live.size)],
      ['$SYS/broker/clients/total', String(this.broker.sessions.size)],
      ['$SYS/broker/messages/received', String(st.messagesIn)],
      ['$SYS/broker/messages/sent', String(st.messagesOut)],
      ['$SYS/broker/messages/dropped', String(st.dropped)],
      ['$SYS/broker/bytes/received', String(st.bytesIn)],
      ['$SYS/broker/bytes/sent', String(st.bytesOut)],
    ];
  }

  private publish(): void {
    for (const [topic, value] of this.figures()) {
      // unchanged figures are not stored again
      if (this.last.get(topic) === value) continue;
      this.last.set(topic, value);
      this.hub.enqueue({ topic, payload: Buffer.from(value), retain: true, qos: 0 }).catch(() => undefined);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
