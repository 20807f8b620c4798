import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import type { Hub, PublishRequest } from '../core/hub.js';
import type { OptionsPublisher, PublishOptions, PublishOutcome } from '../core/publish-options.js';
import type { Receipts } from './receipts.js';

/**
 * Publishes with options, receipts included: a receipt request is checked and marks the message,
 * the publish goes as the other options say (idempotent or plain), and the receipt's window
 * starts once it is stored. Options without a receipt go to `inner` as they are.
 */
export class ReceiptOptionsPublisher implements OptionsPublisher {
  constructor(
    private readonly hub: Hub,
    private readonly receipts: Receipts,
    private readonly inner: OptionsPublisher | undefined,
  ) {}

  async publish(p: Principal, req: PublishRequest, opts: PublishOptions): Promise<PublishOutcome> {
    if (!opts.receipt) {
      if (!this.inner) throw new OmnipushError('invalid_request', 'this server takes no delayed or idempotent publishes');
      return this.inner.publish(p, req, opts);
    }
    if (opts.due !== undefined) throw new OmnipushError('invalid_request', 'a delayed publish cannot ask for a receipt (its window would start before the message is sent)');
    // grants and limits first: a refused publish takes no receipt place
    this.hub.checkPublish(p, req);
    const draft = this.receipts.prepare(p, req, opts.receipt);
    let out: PublishOutcome;
    try {
      if (opts.idempotencyKey !== undefined) {
        if (!this.inner) throw new OmnipushError('invalid_request', 'this server takes no idempotent publishes');
        out = await this.inner.publish(p, req, { idempotencyKey: opts.idempotencyKey });
      } else {
        const m = await this.hub.publish(p, req);
        out = { cursor: m.cursor, topic: m.topic, repeated: false };
      }
    } catch (e) {
      this.receipts.release(draft);
      throw e;
    }
    // a repeated idempotent publish already has its receipt
    if (out.cursor === null || out.repeated) this.receipts.release(draft);
    else await this.receipts.track(draft, out.cursor, out.topic);
    return out;
  }
}
