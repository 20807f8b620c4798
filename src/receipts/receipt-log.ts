import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { OmnipushError } from '../core/errors.js';
import { RECEIPTS_PREFIX } from '../core/grants.js';
import type { Hub } from '../core/hub.js';
import type { RecordChange } from '../core/store.js';
import type { Webhooks } from '../webhooks/webhooks.js';
import { EVENT_KIND, eventKey, eventPrefix, type ReceiptEvent, type ReceiptEventType, type ReceiptRecord } from './receipt-record.js';


/**
 * Where receipt events go: durable records for `GET /v1/receipts` (written in the same transaction
 * as the receipt's state), then the `message.receipt` webhook and `$receipts/<topic>`.
 */
export class ReceiptLog {
  /** Names this process's events apart from other nodes' made in the same ms. */
  private readonly tag = randomBytes(3).toString('base64url');
  private counter = 0;

  constructor(
    private readonly hub: Hub,
    private readonly opts: { topicEvents: boolean; webhooks?: Webhooks; log: Logger },
  ) {}

  /** An event of `r`: its record change is added to `changes`, its key to `r.events`. Announce it once written. */
  add(r: ReceiptRecord, type: ReceiptEventType, at: number, changes: RecordChange[], extra?: Partial<ReceiptEvent>): ReceiptEvent {
    const id = `${at.toString(36)}${this.tag}${(this.counter++ % 1_679_616).toString(36)}`;
    const e: ReceiptEvent = { id, type, cursor: r.cursor, topic: r.topic, to: r.to, publisher: r.publisher, at: new Date(at).toISOString(), ...extra };
    const key = eventKey(r.publisher, at, id);
    r.events.push(key);
    changes.push({ kind: EVENT_KIND, key, value: Buffer.from(JSON.stringify(e)) });
    return e;
  }

  /** Tells the app (webhook) and MQTT publishers (`$receipts/<topic>`) of events already written. */
  announce(events: ReceiptEvent[]): void {
    const wh = this.opts.webhooks;
    const hookOn = wh?.wanted('message.receipt') === true;
    for (const e of events) {
      if (hookOn) wh!.emit('message.receipt', { ...e });
      if (!this.opts.topicEvents) continue;
      this.hub
        .enqueue({ topic: RECEIPTS_PREFIX + e.topic, payload: Buffer.from(JSON.stringify(e)), contentType: 'application/json', retain: false, qos: 1 })
        .catch((err: unknown) => this.opts.log.warn({ err, topic: e.topic }, 'receipt event not published to $receipts'));
    }
  }

  /**
   * A page of events in time order: `publisher`'s, or everyone's (undefined, the admin grant), after
   * `cursor` (what the previous page answered). `more`: another page follows.
   */
  async list(publisher: string | undefined, cursor: string | undefined, limit: number): Promise<{ events: ReceiptEvent[]; cursor: string | null; more: boolean }> {
    const prefix = publisher === undefined ? '' : eventPrefix(publisher);
    let after: string | undefined;
    if (cursor) {
      after = Buffer.from(cursor, 'base64url').toString('utf8');
      if (!after.startsWith(prefix)) throw new OmnipushError('invalid_cursor', 'not a cursor of this receipt listing');
    }
    const rows = await this.hub.listRecords(EVENT_KIND, prefix, limit + 1, after);
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    const events: ReceiptEvent[] = [];
    for (const row of page) {
      try {
        events.push(JSON.parse(row.value.toString('utf8')) as ReceiptEvent);
      } catch {
        /* an unreadable event is left out; the cursor still moves past it */
      }
    }
    const last = page.length ? page[page.length - 1].key : after;
    return { events, cursor: last === undefined ? (cursor ?? null) : Buffer.from(last).toString('base64url'), more };
  }
}
