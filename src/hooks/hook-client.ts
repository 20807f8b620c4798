import { Agent, request } from 'undici';
import type { Metrics } from '../metrics/metrics.js';

/** Why a hook gave no usable answer; each is a `result` label of omnipush_hook_requests_total. */
export type HookFailureKind = 'timeout' | 'unavailable' | 'invalid' | 'busy';

/** The app did not answer a hook usefully: it was slow, down, busy, or said something we cannot read. */
export class HookFailure extends Error {
  constructor(
    readonly kind: HookFailureKind,
    message: string,
  ) {
    super(message);
  }
}

export interface HookClientOptions {
  /** name in metrics and logs (`connect`, `subscribe`, `publish`) */
  hook: string;
  timeoutMs: number;
  concurrency: number;
  maxQueued: number;
}

/**
 * POSTs JSON to the app and reads its JSON answer, with one deadline for waiting and answering, at
 * most `concurrency` requests in flight and `maxQueued` waiting: an app that slows down cannot make
 * connections pile up here without bound.
 */
export class HookClient {
  private readonly agent: Agent;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly o: HookClientOptions,
    private readonly metrics: Metrics,
  ) {
    this.agent = new Agent({ connections: o.concurrency, keepAliveTimeout: 10_000, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs });
  }

  /** Resolves to the parsed JSON answer of a 2xx; rejects with {@link HookFailure} otherwise. */
  async post(url: string, body: unknown): Promise<unknown> {
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    await this.slot(signal);
    const end = this.metrics.hookLatency.startTimer({ hook: this.o.hook });
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        signal,
      });
      if (res.statusCode < 200 || res.statusCode > 299) {
        await res.body.dump();
        throw new HookFailure('unavailable', `the app answered HTTP ${res.statusCode}`);
      }
      const text = await res.body.text();
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new HookFailure('invalid', 'the app answered something that is not JSON');
      }
    } catch (e) {
      if (e instanceof HookFailure) throw e;
      if (signal.aborted || (e as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' || (e as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT') {
        throw new HookFailure('timeout', `the app did not answer within ${this.o.timeoutMs} ms`);
      }
      throw new HookFailure('unavailable', `the app could not be reached: ${(e as Error).message}`);
    } finally {
      end();
      this.release();
    }
  }

  private slot(signal: AbortSignal): Promise<void> {
    if (this.inFlight < this.o.concurrency) {
      this.inFlight++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.o.maxQueued) return Promise.reject(new HookFailure('busy', `${this.inFlight} hook requests in flight and ${this.waiting.length} waiting`));
    return new Promise((resolve, reject) => {
      const go = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new HookFailure('timeout', `no hook slot free within ${this.o.timeoutMs} ms`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(go);
    });
  }

  /** The slot goes straight to the next waiter, so inFlight stays counted for it. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
