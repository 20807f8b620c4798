import type { Hub, PublishRequest } from '../../core/hub.js';
import type { Principal } from '../../core/grants.js';
import type { AppendInput } from '../../core/store.js';
import type { Logger } from 'pino';

/** A will as CONNECT gave it, checked against the connecting principal's grants when published. */
export interface WillSpec {
  principal: Principal;
  request: PublishRequest;
  extras: Pick<AppendInput, 'payloadFormat' | 'responseTopic' | 'correlationData' | 'origin'>;
  /** seconds */
  delay: number;
}

/**
 * Wills waiting for their delay (MQTT 5 §3.1.3.2.2). One timer per waiting will: they are rare
 * (only connections that ended without a clean DISCONNECT), and a resumed session cancels its own.
 */
export class WillScheduler {
  private readonly waiting = new Map<string, { timer: NodeJS.Timeout; will: WillSpec }>();

  constructor(
    private readonly hub: Hub,
    private readonly log: Logger,
  ) {}

  /** Publishes after `delayMs` (at once when 0) unless cancelled for `clientId` first. */
  schedule(clientId: string, will: WillSpec, delayMs: number): void {
    this.cancel(clientId);
    if (delayMs <= 0) return this.publish(will);
    const timer = setTimeout(() => {
      this.waiting.delete(clientId);
      this.publish(will);
    }, delayMs);
    timer.unref();
    this.waiting.set(clientId, { timer, will });
  }

  /** The client came back (or its session ended first and published it): no (second) will. */
  cancel(clientId: string): boolean {
    const w = this.waiting.get(clientId);
    if (!w) return false;
    clearTimeout(w.timer);
    this.waiting.delete(clientId);
    return true;
  }

  /** Session expiry came before the will delay: publish now. */
  fire(clientId: string): void {
    const w = this.waiting.get(clientId);
    if (!w) return;
    this.cancel(clientId);
    this.publish(w.will);
  }

  private publish(will: WillSpec): void {
    try {
      const input = { ...this.hub.checkPublish(will.principal, will.request), ...will.extras };
      this.hub.enqueue(input).catch((e: unknown) => this.log.warn({ err: e }, 'mqtt will not published'));
    } catch (e) {
      this.log.warn({ err: e, topic: will.request.topic, principal: will.principal.id }, 'mqtt will refused');
    }
  }

  close(): void {
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
  }
}
