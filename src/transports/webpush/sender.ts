import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import type { Urgency } from './payload.js';
import type { VapidSigner } from './vapid.js';
import { parseRetryAfter } from '../../outbound/retry-after.js';

export { parseRetryAfter };

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

/**
 * Sends push messages (RFC 8030) over one keep-alive pool per push-service origin, so TLS and
 * TCP setup are paid once per origin rather than per message.
 */
export class WebPushSender {
  private readonly pools = new Map<string, Pool>();
  private readonly lastUsed = new Map<string, number>();
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly vapid: VapidSigner,
    private readonly opts: SenderOptions,
  ) {
    // Endpoints come from browsers, so origins are many and unbounded: drop pools idle for a minute.
    this.sweep = setInterval(() => this.dropIdle(60_000), 60_000);
    this.sweep.unref();
  }

  private dropIdle(idleMs: number): void {
    const now = Date.now();
    for (const [origin, at] of this.lastUsed) {
      const p = this.pools.get(origin);
      if (now - at < idleMs || (p && (p.stats.running > 0 || p.stats.pending > 0))) continue;
      this.lastUsed.delete(origin);
      this.pools.delete(origin);
      void p?.close();
    }
  }

  private pool(origin: string): Pool {
    this.lastUsed.set(origin, Date.now());
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

  send(req: PushRequest): Promise<PushResponse> {
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
    const path = req.endpoint.pathname + req.endpoint.search;
    // dispatch() with a small handler rather than request(): no response stream per push, which
    // is a measurable share of the CPU a send costs when one message goes to thousands
    return new Promise<PushResponse>((resolve) => {
      let status = 0;
      let retryAfter: string | undefined;
      let detail = '';
      this.pool(origin).dispatch(
        { origin, path, method: 'POST', headers, body: req.body ?? '' },
        {
          onConnect() {},
          onError(err: Error & { code?: string }) {
            resolve({ status: 0, detail: err.code ?? err.message });
          },
          onHeaders(statusCode: number, raw: Buffer[] | string[] | null) {
            status = statusCode;
            if (raw && statusCode >= 300) {
              for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i].toString().toLowerCase() === 'retry-after') retryAfter = raw[i + 1].toString();
            }
            return true;
          },
          onData(chunk: Buffer) {
            if (status >= 300 && detail.length < 200) detail += chunk.toString('utf8', 0, Math.min(chunk.length, 200 - detail.length));
            return true;
          },
          onComplete() {
            const out: PushResponse = { status };
            const ra = parseRetryAfter(retryAfter);
            if (ra !== undefined) out.retryAfterMs = ra;
            if (detail) out.detail = detail;
            resolve(out);
          },
        },
      );
    });
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}
