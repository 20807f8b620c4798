import type { Hub } from '../core/hub.js';
import type { StoredMessage } from '../core/message.js';
import type { AckDoor, ReceiptFallback } from '../core/receipt.js';
import { principalPrefix, timeKey, timeOfKey } from '../outbound/due-loop.js';
import type { RecordChange } from '../core/store.js';

/** Record kind of receipts, one per message: key = the message's cursor. */
export const RECEIPT_KIND = 'receipt';
/** Pending receipts by due time: key `<due ms, 15 digits> <cursor>`, so the first key is the next due. */
export const DUE_KIND = 'receipt.due';
/** Finished receipts by when they finished: key `<ms, 15 digits> <cursor>`, swept after `receipts.keep`. */
export const DONE_KIND = 'receipt.done';
/** Receipt events: key `<publisher> <ms, 15 digits> <id>`, a publisher's events in time order. */
export const EVENT_KIND = 'receipt.event';

export type ReceiptState = 'pending' | 'delivered' | 'pushed' | 'expired';
export type ReceiptEventType = 'delivered' | 'seen' | 'pushed' | 'expired';

/** A receipt request accepted for a publish not yet stored. */
export interface ReceiptDraft {
  to: string;
  publisher: string;
  withinMs: number;
  fallback: ReceiptFallback;
}

/** Sends a receipt's fallback; the Web Push door when it is on. */
export interface FallbackSender {
  /** Whether this node sends Web Push now (in a cluster, one node does: it fires the fallbacks). */
  readonly sending: boolean;
  /** Queues `m` to `principalId`'s matching registrations with `extra()` in one write; 0 when there were none. */
  pushFallback(m: StoredMessage, principalId: string, extra: (registrations: number) => RecordChange[] | null): Promise<number>;
}

/** A receipt as stored. */
export interface ReceiptRecord {
  cursor: string;
  topic: string;
  /** The principal the message is for: only its acks count. */
  to: string;
  publisher: string;
  /** ms: the window ends. */
  due: number;
  fallback: ReceiptFallback;
  state: ReceiptState;
  /** ms: when it left `pending`. */
  finishedAt?: number;
  seen?: true;
  /** An ack came after the fallback or expiry (recorded once, not acted on). */
  late?: true;
  /** Keys of its events (deleted with it). */
  events: string[];
}

/** One event as `GET /v1/receipts`, webhooks and `$receipts/<topic>` show it. */
export interface ReceiptEvent {
  id: string;
  type: ReceiptEventType;
  cursor: string;
  topic: string;
  to: string;
  publisher: string;
  /** ISO 8601 */
  at: string;
  /** The door the acknowledgement came through (delivered, seen). */
  door?: AckDoor;
  /** After the fallback or expiry: recorded, not acted on. */
  late?: true;
  /** pushed: how many Web Push registrations it went to; expired: why nothing was pushed. */
  registrations?: number;
  reason?: string;
}

export const dueKey = timeKey;
export const doneKey = timeKey;
/** The prefix of a publisher's event keys. */
export const eventPrefix = principalPrefix;
export const eventKey = (publisher: string, at: number, id: string) => `${eventPrefix(publisher)}${timeKey(at, id)}`;

export function encodeRecord(r: ReceiptRecord): Buffer {
  return Buffer.from(JSON.stringify(r));
}

export function decodeRecord(b: Buffer): ReceiptRecord | undefined {
  try {
    const r = JSON.parse(b.toString('utf8')) as ReceiptRecord;
    return typeof r.cursor === 'string' && typeof r.to === 'string' && Array.isArray(r.events) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The changes that finish a pending receipt at `at`: it leaves the due index and enters the done index. */
export function finishChanges(r: ReceiptRecord, at: number): RecordChange[] {
  return [
    { kind: DUE_KIND, key: dueKey(r.due, r.cursor), value: null },
    { kind: DONE_KIND, key: doneKey(at, r.cursor), value: Buffer.from(r.cursor) },
  ];
}

export { timeOfKey };

/** Receipts swept per store call. */
const SWEEP_PAGE = 200;

/** Deletes receipts that finished before `cutoff` (ms), with their events. */
export async function sweepFinished(hub: Hub, cutoff: number, stop: () => boolean): Promise<void> {
  for (;;) {
    const rows = await hub.listRecords(DONE_KIND, '', SWEEP_PAGE);
    const changes: RecordChange[] = [];
    for (const row of rows) {
      if (timeOfKey(row.key) > cutoff) break;
      const cursor = row.value.toString('utf8');
      const b = await hub.getRecord(RECEIPT_KIND, cursor);
      const r = b && decodeRecord(b);
      if (r) for (const k of r.events) changes.push({ kind: EVENT_KIND, key: k, value: null });
      changes.push({ kind: RECEIPT_KIND, key: cursor, value: null }, { kind: DONE_KIND, key: row.key, value: null });
    }
    if (changes.length) await hub.putRecords(changes);
    if (rows.length < SWEEP_PAGE || changes.length === 0 || stop()) return;
  }
}
