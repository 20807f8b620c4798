import { OmnipushError } from '../core/errors.js';
import type { ReceiptRequest } from '../core/receipt.js';
import { parseDelay } from './publish-timing.js';

const MAX_PRINCIPAL = 256;

function bad(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/** A `within` given as a duration string (`"30s"`) or a number of seconds; ms out. */
function withinMs(v: unknown): number {
  let ms = 0;
  try {
    ms = parseDelay(v);
  } catch {
    /* said below, in the receipt's words */
  }
  if (ms <= 0) bad('receipt.within must be a duration such as "30s" or a positive number of seconds');
  return ms;
}

/** Checks a recipient's principal id (`to`). */
export function checkRecipient(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_PRINCIPAL || /[\0\r\n]/.test(v)) bad(`to must be a principal id (1..${MAX_PRINCIPAL} characters)`);
  return v;
}

/** The JSON form `receipt: {within, fallback}` with an optional `to` beside it (HTTP body, WS frame). */
export function receiptFromJson(receipt: unknown, to: unknown): ReceiptRequest | undefined {
  if (receipt === undefined) {
    if (to !== undefined) bad('to names the recipient of a receipt request: give receipt too');
    return undefined;
  }
  if (typeof receipt !== 'object' || receipt === null || Array.isArray(receipt)) bad('receipt must be an object {within, fallback}');
  const r = receipt as Record<string, unknown>;
  for (const k of Object.keys(r)) if (k !== 'within' && k !== 'fallback') bad(`unknown receipt field ${JSON.stringify(k)}`);
  const fallback = r.fallback ?? 'webpush';
  if (fallback !== 'webpush' && fallback !== 'none') bad('receipt.fallback must be "webpush" or "none"');
  const out: ReceiptRequest = { withinMs: withinMs(r.within), fallback };
  if (to !== undefined) out.to = checkRecipient(to);
  return out;
}

/** The MQTT 5 form: user properties `receipt-within`, `receipt-fallback`, `receipt-to` (docs/receipts.md). */
export const MQTT_RECEIPT_PROPERTIES = ['receipt-within', 'receipt-fallback', 'receipt-to'] as const;

/** Takes the receipt user properties out of `props` (in place); undefined when there is none. */
export function receiptFromProperties(props: Array<[string, string]>): ReceiptRequest | undefined {
  let within: string | undefined;
  let fallback: string | undefined;
  let to: string | undefined;
  for (let i = props.length - 1; i >= 0; i--) {
    const [k, v] = props[i];
    if (k === 'receipt-within') within = v;
    else if (k === 'receipt-fallback') fallback = v;
    else if (k === 'receipt-to') to = v;
    else continue;
    props.splice(i, 1);
  }
  if (within === undefined && fallback === undefined && to === undefined) return undefined;
  if (within === undefined) bad('receipt-within is required with receipt-fallback or receipt-to');
  return receiptFromJson({ within, ...(fallback !== undefined ? { fallback } : {}) }, to);
}

