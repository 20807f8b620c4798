import type { StoredMessage } from '../core/message.js';

/** Where a bus hands messages: the hub. */
export interface BusSink {
  /** Last seq fanned out; the bus hands over what comes after it. */
  readonly headSeq: number;
  /** Durable messages, strictly ascending by seq, each once. */
  fanOutFromBus(batch: StoredMessage[]): void;
}

/**
 * How messages reach this process's subscribers. `local`: the hub fans out its own appends (one
 * process). `redis`: every process fans out the store's one sequence, received over Redis
 * pub/sub, holes filled from the store — so all processes deliver the same messages in seq order.
 */
export interface Bus {
  readonly kind: 'local' | 'redis';
  /** True when fan-out comes from the bus (the hub must not fan out its own appends). */
  readonly external: boolean;
  start(sink: BusSink): Promise<void>;
  /** Why the bus cannot deliver right now (disconnected), or undefined when it can. */
  unhealthy(): string | undefined;
  close(): Promise<void>;
}

/** One process: the hub fans out what it appends; nothing to connect. */
export class LocalBus implements Bus {
  readonly kind = 'local';
  readonly external = false;
  async start(): Promise<void> {}
  unhealthy(): string | undefined {
    return undefined;
  }
  async close(): Promise<void> {}
}
