import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';

export interface SenderLeaseHooks {
  /** This node now sends; not awaited by the lease (a long queue load must not delay renewals). */
  gained(): void;
  /** This node must stop sending (lease lost or not renewable in time). */
  lost(): Promise<void>;
}

/**
 * The cluster lease of the one node that sends from a durable outbound queue, so each delivery
 * goes from one node: taken at a heartbeat when free, renewed at each, and given up when Redis
 * stays unreachable past half its life (another node may take it once it expires).
 */
export class SenderLease {
  private token: string | null = null;
  private lastRenewal = 0;
  private running: Promise<void> | null = null;
  private closing = false;

  constructor(
    private readonly cluster: ClusterControl,
    private readonly name: string,
    private readonly ttlMs: number,
    private readonly log: Logger,
    private readonly hooks: SenderLeaseHooks,
  ) {}

  get held(): boolean {
    return this.token !== null;
  }

  /** One round: take, keep or lose the lease. Call at every cluster heartbeat. */
  tick(): Promise<void> {
    this.running ??= (async () => {
      const c = this.cluster;
      try {
        if (this.closing) return;
        if (this.token) {
          if (await c.renew(this.name, this.token, this.ttlMs)) this.lastRenewal = Date.now();
          else {
            this.log.warn({ lease: this.name }, 'sender lease lost; another node sends now');
            this.token = null;
            await this.hooks.lost();
          }
        } else {
          const token = await c.acquire(this.name, this.ttlMs);
          if (token && !this.closing) {
            this.token = token;
            this.lastRenewal = Date.now();
            this.log.info({ lease: this.name, node: c.nodeId }, 'sender lease taken; this node sends');
            this.hooks.gained();
          }
        }
      } catch (e) {
        if (this.token && Date.now() - this.lastRenewal > this.ttlMs / 2) {
          this.log.warn({ err: e, lease: this.name }, 'sender lease not renewed; stopping sends');
          this.token = null;
          await this.hooks.lost();
        }
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** Stops taking the lease; waits for a round in progress. */
  async stop(): Promise<void> {
    this.closing = true;
    if (this.running) await this.running;
  }

  /** Hands the lease back (after the queue is written) so the next sender need not wait for expiry. */
  async release(): Promise<void> {
    if (!this.token) return;
    const t = this.token;
    this.token = null;
    await this.cluster.release(this.name, t).catch(() => undefined);
  }
}
