import type { ClientOptions, Message, TransportName } from './types.js';

/** The user property of a message that asks for a receipt (its value names the recipient). */
export const RECEIPT_PROPERTY = 'omnipush-receipt';

/** Does `m` ask its recipient to acknowledge it? */
export function asksForReceipt(m: Message): boolean {
  return m.properties?.some((p) => p[0] === RECEIPT_PROPERTY) === true;
}

/** Where a batch of acks goes: the open WebSocket, or `POST /v1/ack` naming the stream's door. */
export interface AckRoute {
  /** Sends over the channel itself; false when it cannot now (then HTTP is used). */
  viaChannel?(cursors: string[], seen: boolean): boolean;
  door: TransportName | undefined;
}

/** Most cursors per ack request (the server's default `receipts.maxAckCursors`). */
const MAX_PER_ACK = 500;

/**
 * Collects receipt acknowledgements and sends them in batches, one every `delayMs` at most: over
 * the WebSocket when that is the transport, else `POST /v1/ack`. A batch that could not be sent
 * is dropped (the server's window then ends in the fallback, which is what it is for).
 */
export class AckBatcher {
  private readonly delivered = new Set<string>();
  private readonly seen = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly ackUrl: string,
    private readonly opts: ClientOptions,
    private readonly route: () => AckRoute,
    private readonly delayMs: number,
  ) {}

  add(cursor: string, seen: boolean): void {
    (seen ? this.seen : this.delivered).add(cursor);
    this.timer ??= setTimeout(() => this.flush(), this.delayMs);
  }

  /** Sends what is collected now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [set, seen] of [[this.delivered, false], [this.seen, true]] as const) {
      const all = [...set];
      set.clear();
      for (let i = 0; i < all.length; i += MAX_PER_ACK) this.send(all.slice(i, i + MAX_PER_ACK), seen);
    }
  }

  private send(cursors: string[], seen: boolean): void {
    if (cursors.length === 0) return;
    const r = this.route();
    if (r.viaChannel?.(cursors, seen)) return;
    const f = this.opts.fetch ?? globalThis.fetch;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const door = r.door === 'sse' || r.door === 'longpoll' ? r.door : 'http';
    const body = JSON.stringify({ cursors, door, ...(seen ? { seen: true } : {}) });
    f(this.ackUrl, { method: 'POST', headers, body, keepalive: true }).catch(() => undefined);
  }

  close(): void {
    this.flush();
  }
}
