import { OmnipushError } from '../core/errors.js';
import type { PublishRequest } from '../core/hub.js';
import type { PublishOptions } from '../core/publish-options.js';
import { dueFrom } from './publish-timing.js';
import { receiptFromJson } from './receipt-request.js';

const FIELDS = new Set(['topic', 'data', 'data_base64', 'encoding', 'event', 'retain', 'ttl', 'properties', 'contentType', 'qos', 'delay', 'at', 'idempotencyKey', 'exclude', 'receipt', 'to']);

/** Throws `invalid_request` with `message`. */
export function fail(message: string): never {
  throw new OmnipushError('invalid_request', message);
}

/** Turns one JSON publish object into a hub request; strict about fields and types. */
export function publishRequestFromJson(o: unknown, where = ''): PublishRequest {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) fail(`${where}a message must be a JSON object`);
  const m = o as Record<string, unknown>;
  for (const k of Object.keys(m)) if (!FIELDS.has(k)) fail(`${where}unknown field ${JSON.stringify(k)}`);
  if (typeof m.topic !== 'string') fail(`${where}topic must be a string`);
  let payload: Buffer;
  if (m.data_base64 !== undefined) {
    if (m.data !== undefined) fail(`${where}give data or data_base64, not both`);
    if (typeof m.data_base64 !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(m.data_base64)) fail(`${where}data_base64 must be base64`);
    payload = Buffer.from(m.data_base64, 'base64');
  } else if (m.data === undefined || m.data === null) {
    payload = Buffer.alloc(0);
  } else if (typeof m.data === 'string') {
    if (m.encoding === 'base64') {
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(m.data)) fail(`${where}data is not base64`);
      payload = Buffer.from(m.data, 'base64');
    } else if (m.encoding === undefined || m.encoding === 'utf8' || m.encoding === 'text') payload = Buffer.from(m.data, 'utf8');
    else fail(`${where}encoding must be "text" or "base64"`);
  } else {
    // any other JSON value is published as its JSON text
    payload = Buffer.from(JSON.stringify(m.data), 'utf8');
  }
  const req: PublishRequest = { topic: m.topic, payload };
  if (m.exclude !== undefined) {
    if (typeof m.exclude !== 'string') fail(`${where}exclude must be a connection id`);
    req.exclude = m.exclude;
  }
  if (m.event !== undefined) {
    if (typeof m.event !== 'string') fail(`${where}event must be a string`);
    req.event = m.event;
  }
  if (m.contentType !== undefined) {
    if (typeof m.contentType !== 'string') fail(`${where}contentType must be a string`);
    req.contentType = m.contentType;
  }
  if (m.retain !== undefined) {
    if (typeof m.retain !== 'boolean') fail(`${where}retain must be true or false`);
    req.retain = m.retain;
  }
  if (m.ttl !== undefined) {
    if (typeof m.ttl !== 'number') fail(`${where}ttl must be a number of seconds`);
    req.ttl = m.ttl;
  }
  if (m.qos !== undefined) {
    if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) fail(`${where}qos must be 0, 1 or 2`);
    req.qos = m.qos;
  }
  if (m.properties !== undefined) {
    const p = m.properties;
    if (Array.isArray(p)) req.properties = p as Array<[string, string]>;
    else if (typeof p === 'object' && p !== null) {
      req.properties = Object.entries(p).map(([k, v]) => {
        if (typeof v !== 'string') fail(`${where}property ${JSON.stringify(k)} must be a string`);
        return [k, v];
      });
    } else fail(`${where}properties must be an object or a list of [name, value] pairs`);
  }
  return req;
}

/**
 * The options of one JSON publish object (`delay` or `at`, `idempotencyKey`, `receipt` and `to`),
 * or undefined when it has none. `headerKey` (HTTP `Idempotency-Key`) counts as the key when the
 * body gives none.
 */
export function publishOptionsFromJson(o: unknown, now: number, headerKey?: string): PublishOptions | undefined {
  const m = o as Record<string, unknown>;
  const due = dueFrom(m.delay, m.at, now);
  if (m.idempotencyKey !== undefined && typeof m.idempotencyKey !== 'string') fail('idempotencyKey must be a string');
  const key = (m.idempotencyKey as string | undefined) ?? headerKey;
  const receipt = receiptFromJson(m.receipt, m.to);
  if (due === undefined && key === undefined && receipt === undefined) return undefined;
  const opts: PublishOptions = {};
  if (due !== undefined) opts.due = due;
  if (key !== undefined) opts.idempotencyKey = key;
  if (receipt !== undefined) opts.receipt = receipt;
  return opts;
}

/** Refuses options in a batch item: a batch is stored as it comes. */
export function refuseBatchOptions(o: unknown, where: string): void {
  const m = o as Record<string, unknown>;
  if (m.delay !== undefined || m.at !== undefined || m.idempotencyKey !== undefined || m.receipt !== undefined || m.to !== undefined) {
    fail(`${where}delay, at, idempotencyKey, receipt and to are for single publishes, not batches`);
  }
}
