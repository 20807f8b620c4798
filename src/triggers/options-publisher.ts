import type { Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import type { IdempotentPublisher } from '../core/idempotency.js';
import type { OptionsPublisher, PublishOptions, PublishOutcome } from '../core/publish-options.js';
import type { DelayedPublisher } from './delayed.js';

/** Sends a publish with options to the delayed scheduler, the idempotent path, or the plain hub. */
export class TriggerOptionsPublisher implements OptionsPublisher {
  constructor(
    private readonly hub: Hub,
    private readonly idempotency: IdempotentPublisher,
    private readonly delayed: DelayedPublisher,
  ) {}

  async publish(p: Principal, req: PublishRequest, opts: PublishOptions): Promise<PublishOutcome> {
    if (opts.due !== undefined) {
      const s = await this.delayed.schedule(p, req, opts.due, opts.idempotencyKey);
      return { cursor: null, id: s.id, due: s.due, repeated: s.repeated };
    }
    if (opts.idempotencyKey !== undefined) return this.idempotency.publish(p, req, opts.idempotencyKey);
    const m = await this.hub.publish(p, req);
    return { cursor: m.cursor, topic: m.topic, repeated: false };
  }
}
