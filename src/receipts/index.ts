import type { TransportContext } from '../transports/context.js';
import type { WebPushTransport } from '../transports/webpush/webpush-transport.js';
import type { Webhooks } from '../webhooks/webhooks.js';
import { ReceiptLog } from './receipt-log.js';
import { ReceiptOptionsPublisher } from './receipt-publisher.js';
import { registerReceiptMetrics } from './receipt-metrics.js';
import { Receipts } from './receipts.js';

export interface ReceiptsRoom {
  tracker: Receipts;
  log: ReceiptLog;
  close(): Promise<void>;
}

/**
 * Starts delivery receipts: loads pending windows, hands the doors the ack entry (`ctx.receipts`)
 * and puts the receipt-aware publisher in front of `ctx.publishWith`.
 */
export async function startReceipts(ctx: TransportContext, webpush: WebPushTransport | undefined, webhooks: Webhooks | undefined): Promise<ReceiptsRoom> {
  const c = ctx.config.receipts;
  const log = new ReceiptLog(ctx.hub, { topicEvents: c.topicEvents, webhooks, log: ctx.log });
  const tracker = new Receipts(ctx.hub, ctx.cluster, log, webpush, ctx.log, {
    rules: c.rules.map((r) => r.filter),
    maxWithinMs: c.maxWithin * 1000,
    maxPending: c.maxPending,
    maxPendingPerPrincipal: c.maxPendingPerPrincipal,
    maxAckCursors: c.maxAckCursors,
    ackLookupsPerSecond: c.ackLookupsPerSecond,
    keepMs: c.keep * 1000,
  });
  await tracker.start();
  registerReceiptMetrics(ctx.metrics, tracker);
  ctx.receipts = tracker;
  ctx.publishWith = new ReceiptOptionsPublisher(ctx.hub, tracker, ctx.publishWith);
  return { tracker, log, close: () => tracker.close() };
}
