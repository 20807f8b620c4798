import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ClusterControl, ControlEvent } from './control.js';

/** One node's answer to a cluster-wide call. */
export interface NodeAnswer<T> {
  node: string;
  result?: T;
  /** Why this node gave no result (its handler failed, or it did not answer in time). */
  error?: string;
}

type Handler = (args: Record<string, unknown>) => Promise<unknown>;

const REQUEST = 'call-req';
const RESPONSE = 'call-res';

/**
 * Broadcast-and-collect over the control channel: a call runs on this node and on every other live
 * node, and resolves with each node's answer once all answered or the timeout passed (then the
 * silent nodes are listed with an error, so a caller never mistakes a partial view for a whole one).
 * Answers travel on the same pub/sub channel as every control event: keep them small and bounded.
 */
export class ClusterCalls {
  private readonly handlers = new Map<string, Handler>();
  private readonly pending = new Map<string, { answers: Map<string, NodeAnswer<unknown>>; waiting: Set<string>; done: () => void }>();

  constructor(
    private readonly control: ClusterControl,
    private readonly log: Logger,
  ) {
    control.on(REQUEST, (e) => void this.answer(e));
    control.on(RESPONSE, (e) => this.collect(e));
  }

  /** Registers what `op` does on each node. */
  handle(op: string, fn: Handler): void {
    this.handlers.set(op, fn);
  }

  /** Runs `op` on every live node (this one included); one answer per node, this node's first. */
  async call<T>(op: string, args: Record<string, unknown>, timeoutMs: number): Promise<Array<NodeAnswer<T>>> {
    const self = this.control.nodeId;
    const others = this.control.nodes().filter((n) => n !== self);
    const local = this.runLocal(op, args);
    if (others.length === 0) return [(await local) as NodeAnswer<T>];
    const id = randomBytes(8).toString('hex');
    const answers = new Map<string, NodeAnswer<unknown>>();
    const waiting = new Set(others);
    const settled = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.pending.set(id, {
        answers,
        waiting,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
    this.control.publish(REQUEST, { id, op, args });
    const mine = await local;
    await settled;
    this.pending.delete(id);
    for (const n of waiting) answers.set(n, { node: n, error: `no answer within ${timeoutMs} ms` });
    return [mine, ...others.map((n) => answers.get(n)!)] as Array<NodeAnswer<T>>;
  }

  private async runLocal(op: string, args: Record<string, unknown>): Promise<NodeAnswer<unknown>> {
    const node = this.control.nodeId;
    const fn = this.handlers.get(op);
    if (!fn) return { node, error: `this node does not know the call ${op}` };
    try {
      return { node, result: await fn(args) };
    } catch (e) {
      this.log.warn({ err: e, op }, 'cluster call failed on this node');
      return { node, error: (e as Error).message };
    }
  }

  private async answer(e: ControlEvent): Promise<void> {
    if (typeof e.id !== 'string' || typeof e.op !== 'string' || typeof e.args !== 'object' || e.args === null) return;
    const a = await this.runLocal(e.op, e.args as Record<string, unknown>);
    this.control.publish(RESPONSE, { id: e.id, to: e.from, result: a.result, error: a.error });
  }

  private collect(e: ControlEvent): void {
    if (e.to !== this.control.nodeId || typeof e.id !== 'string') return;
    const p = this.pending.get(e.id);
    if (!p || !p.waiting.delete(e.from)) return;
    p.answers.set(e.from, { node: e.from, result: e.result, error: typeof e.error === 'string' ? e.error : undefined });
    if (p.waiting.size === 0) p.done();
  }
}
