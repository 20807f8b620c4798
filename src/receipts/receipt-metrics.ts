import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../metrics/metrics.js';
import type { Receipts } from './receipts.js';

/** Receipt figures, read from the tracker's own counts when scraped (nothing is added to the ack path). */
export function registerReceiptMetrics(m: Metrics, tracker: Receipts): void {
  const registers = [m.registry];
  new Gauge({ name: 'omnipush_receipts_pending', help: 'Receipts pending on this node (their windows run)', registers, collect() { this.set(tracker.pending); } });
  new Counter({
    name: 'omnipush_receipt_acks_total',
    help: "Receipt acknowledgements on this node: acked (counted, late ones included), ignored (another principal's), unknown (no such receipt)",
    labelNames: ['outcome'],
    registers,
    collect() {
      const c = tracker.counts;
      this.reset();
      this.inc({ outcome: 'acked' }, c.acked);
      this.inc({ outcome: 'ignored' }, c.ignored);
      this.inc({ outcome: 'unknown' }, c.unknown);
    },
  });
  new Counter({
    name: 'omnipush_receipts_total',
    help: 'Receipts on this node by how they went: requested, late (acknowledged after the fallback), pushed, expired',
    labelNames: ['outcome'],
    registers,
    collect() {
      const c = tracker.counts;
      this.reset();
      this.inc({ outcome: 'requested' }, c.requested);
      this.inc({ outcome: 'late' }, c.late);
      this.inc({ outcome: 'pushed' }, c.pushed);
      this.inc({ outcome: 'expired' }, c.expired);
    },
  });
}
