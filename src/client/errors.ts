/** Server error codes that asking again will not change (the request itself is refused). */
const FINAL_CODES = new Set(['invalid_topic', 'invalid_filter', 'invalid_cursor', 'invalid_request', 'invalid_json', 'payload_too_large', 'unauthorized', 'forbidden', 'not_found', 'method_not_allowed']);

/** HTTP statuses that asking again will not change. */
const FINAL_STATUSES = new Set([400, 401, 403, 404, 405, 413, 414, 431]);

/**
 * An error the client reports: on `client.on('error')`, or as the rejection of `publish`.
 * `final` says the SDK gave up on what failed (a subscription, or the whole client) because the
 * server's answer would not change by retrying; otherwise the SDK keeps reconnecting.
 */
export class OmnipushClientError extends Error {
  /** The server's error code (`forbidden`, `invalid_filter` ...), or `unreachable` for network failures. */
  readonly code: string;
  /** The HTTP status, when an HTTP answer carried the error. */
  readonly status?: number;
  /** The subscription's filter, when the error is about one subscription. */
  readonly filter?: string;
  readonly final: boolean;

  constructor(message: string, opts: { code: string; status?: number; filter?: string; final?: boolean }) {
    super(message);
    this.name = 'OmnipushClientError';
    this.code = opts.code;
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.filter !== undefined) this.filter = opts.filter;
    this.final = opts.final ?? (FINAL_CODES.has(opts.code) || (opts.status !== undefined && FINAL_STATUSES.has(opts.status)));
  }
}

/** The error of an HTTP answer (`{error:{code,message}}` when the server wrote it). */
export async function errorFromResponse(r: Response, filter?: string): Promise<OmnipushClientError> {
  let code = `http_${r.status}`;
  let message = `the server answered ${r.status}`;
  try {
    const j = (await r.json()) as { error?: { code?: string; message?: string } };
    if (j.error?.code) code = j.error.code;
    if (j.error?.message) message = j.error.message;
  } catch {
    /* not our JSON: a proxy's page */
  }
  return new OmnipushClientError(filter ? `${filter}: ${message}` : message, { code, status: r.status, filter });
}

/** True when `status` will not change by asking again. */
export function isFinalStatus(status: number): boolean {
  return FINAL_STATUSES.has(status);
}
