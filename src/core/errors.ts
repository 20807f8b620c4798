/**
 * An error with a stable machine-readable code. Every door turns it into its own
 * wire form (HTTP status + JSON body, MQTT reason code, WS error frame).
 */
export type ErrorCode =
  | 'invalid_topic'
  | 'invalid_filter'
  | 'invalid_cursor'
  | 'invalid_request'
  | 'invalid_json'
  | 'payload_too_large'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'too_many_connections'
  /** A rate limit (messages/s, bytes/s) was hit; `details.retryAfter` says in how many seconds to retry. */
  | 'rate_limited'
  /** A count quota (connections, subscriptions, retained topics) is full; `details.limit` names it. */
  | 'quota_exceeded'
  | 'slow_consumer'
  /** A publish asked for a receipt, but neither a `receipts.rules` filter nor `to` names whom it is for. */
  | 'no_recipient'
  /** An operator ended the connection through the server API; the message is the operator's reason. */
  | 'disconnected'
  | 'shutting_down'
  /** A component the server needs (the store's Redis) cannot be reached now; retry later. */
  | 'unavailable'
  | 'internal';

export class OmnipushError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'OmnipushError';
    this.code = code;
    if (details) this.details = details;
  }
}

export function isOmnipushError(e: unknown): e is OmnipushError {
  return e instanceof OmnipushError;
}
