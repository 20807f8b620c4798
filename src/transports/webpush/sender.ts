import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import type { Urgency } from './payload.js';
import type { VapidSigner } from './vapid.js';

export interface SenderOptions {
  /** Sockets (and so concurrent requests) per push-service origin. */
  connectionsPerOrigin: number;
  /** ms to wait for response headers (and body) before the attempt fails. */
  timeoutMs: number;
  /** Extra trusted CAs (PEM) for push services behind a private CA. */
  ca?: string[];
}

export interface PushRequest {
  endpoint: URL;
  /** Encrypted body, or null for a push without data. */
  body: Buffer | null;
  ttl: number;
  urgency: Urgency;
  replaceKey?: string;
}

export interface PushResponse {
  /** HTTP status, or 0 when no answer came (timeout, connection error). */
  status: number;
  /** `Retry-After` as ms from now, when the push service sent one. */
  retryAfterMs?: number;
  /** Why: the error for status 0, else a short piece of the push service's body. */
  detail?: string;
}

/** Reads CA files once at start (a missing file is a configuration error). */
export function readCaFiles(files: string[]): string[] | undefined {
  return files.length ? files.map((f) => readFileSync(f, 'utf8')) : undefined;
}

/** `Retry-After`: delay-seconds or an HTTP date (RFC 9110 section 10.2.3). */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const t = Date.parse(s);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

/**
 * Sends push messages (RFC 8030) over one keep-alive pool per push-service origin, so TLS and
 * TCP setup are paid once per origin rather than per message.
 */
export class WebPushSender {
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly vapid: VapidSigner,
    private readonly opts: SenderOptions,
  ) {}

  private pool(origin: string): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connections: this.opts.connectionsPerOrigin,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        connect: { timeout: this.opts.timeoutMs, ...(this.opts.ca ? { ca: this.opts.ca } : {}) },
      });
      this.pools.set(origin, p);
    }
    return p;
  }

  async send(req: PushRequest): Promise<PushResponse> {
    const origin = req.endpoint.origin;
    const headers: Record<string, string> = {
      authorization: this.vapid.authorization(origin),
      ttl: String(req.ttl),
      urgency: req.urgency,
    };
    if (req.replaceKey) headers.topic = req.replaceKey;
    if (req.body) {
      headers['content-encoding'] = 'aes128gcm';
      headers['content-type'] = 'application/octet-stream';
    }
    try {
      const res = await this.pool(origin).request({
        path: req.endpoint.pathname + req.endpoint.search,
        method: 'POST',
        headers,
        body: req.body ?? '',
      });
      let detail: string | undefined;
      if (res.statusCode >= 300) detail = (await res.body.text()).slice(0, 200);
      else await res.body.dump();
      const out: PushResponse = { status: res.statusCode };
      const ra = parseRetryAfter((res.headers as IncomingHttpHeaders)['retry-after']);
      if (ra !== undefined) out.retryAfterMs = ra;
      if (detail) out.detail = detail;
      return out;
    } catch (e) {
      const err = e as Error & { code?: string };
      return { status: 0, detail: err.code ?? err.message };
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}
