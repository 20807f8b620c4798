import type { IncomingMessage } from 'node:http';
import { OmnipushError } from '../core/errors.js';

/** The client went away before its request body was complete: nobody is left to answer. */
export class ClientAborted extends Error {
  constructor() {
    super('client closed the connection before its request body was complete');
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The whole body at once when it came with the head (the common small request): by the time the
 * handler runs after its first await, the parser has it buffered, so no listeners and ticks are
 * needed. Undefined when the body is still on its way (then {@link readBody} waits for it).
 * Throws `payload_too_large` past `limit`.
 */
export function takeBody(req: IncomingMessage, limit: number): Buffer | undefined {
  if (!req.complete || req.readableFlowing !== null) return undefined;
  const whole = req.read() as Buffer | null;
  if (whole === null) return EMPTY;
  if (whole.length > limit) throw new OmnipushError('payload_too_large', `request body exceeds the limit of ${limit} bytes`, { limit });
  return whole;
}

/**
 * Reads the whole body, refusing more than `limit` bytes with `payload_too_large`; rejects with
 * {@link ClientAborted} when the client closes mid-body.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(new OmnipushError('payload_too_large', `request body is ${declared} bytes; the limit is ${limit}`, { limit }));
  }
  let whole: Buffer | undefined;
  try {
    whole = takeBody(req, limit);
  } catch (e) {
    return Promise.reject(e);
  }
  if (whole) return Promise.resolve(whole);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new OmnipushError('payload_too_large', `request body exceeds the limit of ${limit} bytes`, { limit }));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    // an aborted upload emits `error` (ECONNRESET "aborted"), or only `close` when it ends between chunks
    req.on('error', () => {
      if (!failed) reject(new ClientAborted());
    });
    req.on('close', () => {
      if (!failed && !req.complete) reject(new ClientAborted());
    });
  });
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new OmnipushError('invalid_json', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The bearer token of a request: `Authorization: Bearer`, else `?access_token=`, else the cookie
 * (EventSource cannot set headers).
 */
export function requestToken(req: IncomingMessage, url: URL, cookieName: string): string | undefined {
  const h = req.headers.authorization;
  if (h) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m) throw new OmnipushError('unauthorized', 'Authorization header must be "Bearer <token>"');
    return m[1];
  }
  const q = url.searchParams.get('access_token');
  if (q) return q;
  const cookie = req.headers.cookie;
  if (cookie) {
    for (const part of cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === cookieName) {
        try {
          return decodeURIComponent(part.slice(i + 1).trim());
        } catch {
          throw new OmnipushError('unauthorized', `cookie ${cookieName} is not valid percent-encoding`);
        }
      }
    }
  }
  return undefined;
}

/** Topic filters from repeated `topic=` parameters (each may also hold a comma-free single filter). */
export function topicParams(url: URL): string[] {
  return url.searchParams.getAll('topic');
}

/** A numeric query parameter within bounds, or the default; `invalid_request` otherwise. */
export function numberParam(url: URL, name: string, def: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new OmnipushError('invalid_request', `${name} must be a number between ${min} and ${max}`);
  }
  return n;
}

/** A yes/no query parameter: absent, `0` or `false` is no; empty, `1` or `true` is yes; anything else is `invalid_request`. */
export function flagParam(url: URL, name: string): boolean {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '0' || raw === 'false') return false;
  if (raw === '' || raw === '1' || raw === 'true') return true;
  throw new OmnipushError('invalid_request', `${name} must be true or false (1 or 0)`);
}
