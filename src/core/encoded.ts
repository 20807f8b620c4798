import type { StoredMessage } from './message.js';

/**
 * Encode-once cache: each wire format encodes a message once and every subscriber of that
 * format shares the bytes. The cache lives on the delivery object for one fan-out.
 */
export interface WireFormat<T = Buffer> {
  readonly name: string;
  encode(m: StoredMessage): T;
}

export class Delivery {
  // one fan-out usually needs one or two formats: they sit in fields, and a map only holds more
  private f1: WireFormat<unknown> | undefined;
  private v1: unknown;
  private f2: WireFormat<unknown> | undefined;
  private v2: unknown;
  private more: Map<WireFormat<unknown>, unknown> | undefined;
  constructor(
    readonly message: StoredMessage,
    /**
     * The only message of its fan-out round: a writer with nothing queued may hand it to its
     * socket at once, since no second message for that socket follows in this round to share
     * the write with. The first subscribers then get it while the round goes on, not after it.
     */
    readonly alone = false,
  ) {}

  encoded<T>(format: WireFormat<T>): T {
    const f = format as WireFormat<unknown>;
    if (this.f1 === f) return this.v1 as T;
    if (this.f2 === f) return this.v2 as T;
    let v = this.more?.get(f) as T | undefined;
    if (v !== undefined) return v;
    v = format.encode(this.message);
    if (this.f1 === undefined) {
      this.f1 = f;
      this.v1 = v;
    } else if (this.f2 === undefined) {
      this.f2 = f;
      this.v2 = v;
    } else (this.more ??= new Map()).set(f, v);
    return v;
  }
}
