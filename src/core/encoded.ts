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
  private cache: Map<WireFormat<unknown>, unknown> | undefined;
  constructor(readonly message: StoredMessage) {}

  encoded<T>(format: WireFormat<T>): T {
    this.cache ??= new Map();
    let v = this.cache.get(format as WireFormat<unknown>) as T | undefined;
    if (v === undefined) {
      v = format.encode(this.message);
      this.cache.set(format as WireFormat<unknown>, v);
    }
    return v;
  }
}
