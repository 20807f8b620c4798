import type { Principal } from './grants.js';
import type { StoredMessage } from './message.js';
import { filterMatches, validateFilter } from './topic.js';

/**
 * The user property a message that asks for a receipt carries, valued with the principal it is
 * addressed to. Every door shows it (MQTT 5 user property, `properties` of the JSON forms), so a
 * client knows which messages to acknowledge, and any node can tell whom an ack must come from.
 */
export const RECEIPT_PROPERTY = 'omnipush-receipt';

export type ReceiptFallback = 'webpush' | 'none';

/** What a publish asks for: an acknowledgement within `withinMs`, else the fallback. */
export interface ReceiptRequest {
  withinMs: number;
  fallback: ReceiptFallback;
  /** The principal the message is for, when the message names it (else a `receipts.rules` filter does). */
  to?: string;
}

/** Where an acknowledgement came from. */
export type AckDoor = 'websocket' | 'sse' | 'longpoll' | 'http' | 'mqtt';

export interface AckOutcome {
  /** Acks that counted (or were recorded late). */
  acked: number;
  /** Acks for messages addressed to another principal: counted, not acted on. */
  ignored: number;
  /** Cursors of no receipt (never asked, finished and swept, or malformed). */
  unknown: number;
}

/** What doors hand acknowledgements to (the receipts room implements it). */
export interface ReceiptAcks {
  /** Cursors acknowledged by `p` through `door` (`seen`: the user looked, too); more than {@link maxCursors}: `invalid_request`. */
  ack(p: Principal, cursors: readonly unknown[], door: AckDoor, seen?: boolean): Promise<AckOutcome>;
  /** One delivery acknowledged by the door's own protocol (MQTT PUBACK/PUBREC); never throws. */
  ackDelivery(p: Principal, cursor: string, door: AckDoor): void;
  /** Cursors one ack may carry (`receipts.maxAckCursors`). */
  readonly maxCursors: number;
}

/** Whom a message asks a receipt from (its {@link RECEIPT_PROPERTY}), or undefined. */
export function receiptRecipient(m: Pick<StoredMessage, 'properties'>): string | undefined {
  const props = m.properties;
  if (props === undefined) return undefined;
  for (let i = 0; i < props.length; i++) if (props[i][0] === RECEIPT_PROPERTY) return props[i][1];
  return undefined;
}

/**
 * `receipts.rules`: filters with one `{sub}` level, e.g. `user/{sub}/#`: a topic the filter
 * matches (with `+` in the `{sub}` level) is addressed to the principal named by that level.
 */
export class AddressRules {
  private readonly rules: Array<{ filter: string; level: number }>;

  constructor(filters: string[]) {
    this.rules = filters.map((f) => {
      const levels = f.split('/');
      const level = levels.indexOf('{sub}');
      if (level < 0 || levels.lastIndexOf('{sub}') !== level) throw new Error(`receipts.rules filter ${JSON.stringify(f)} needs exactly one {sub} level`);
      levels[level] = '+';
      return { filter: validateFilter(levels.join('/')), level };
    });
  }

  /** The principal `topic` is addressed to, by the first rule that matches it. */
  recipientOf(topic: string): string | undefined {
    for (const r of this.rules) {
      if (!filterMatches(r.filter, topic)) continue;
      const sub = topic.split('/')[r.level];
      if (sub) return sub;
    }
    return undefined;
  }
}
