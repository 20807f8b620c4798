import type { Logger } from 'pino';
import type { ClusterControl, ControlEvent } from '../../cluster/control.js';

/** Claim space of MQTT client identifiers. */
const SPACE = 'mqtt-session';

/**
 * Which node holds each MQTT session, in a cluster. A CONNECT claims its client identifier (the
 * claim's generation only grows); if another live node held it, that node is asked to let go —
 * close the connection with 0x8E, save the session, forget it — and the new node reads the
 * session only after it answered, or once the control finds that node dead (no heartbeat for
 * `nodeTimeout`), or after `takeoverTimeout`, whichever comes first.
 */
export class SessionClaims {
  /** Highest generation another node claimed, per client, while CONNECTs here may still be running. */
  private readonly lost = new Map<string, number>();
  /** Takeovers waiting for the previous holder's answer: each ends early when that node is found dead. */
  private readonly waits = new Set<{ node: string; gone: AbortController }>();

  constructor(
    private readonly control: ClusterControl,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** Lets the session go: closes its connection, saves and forgets it; `clean`: the new one starts afresh. */
    giveUp: (clientId: string, clean: boolean) => Promise<void>,
  ) {
    // after every heartbeat round: a dead holder will not answer, so its takeovers wait no longer
    control.onTick(() => {
      for (const w of this.waits) if (!control.isLive(w.node)) w.gone.abort();
    });
    control.on('mqtt-takeover', (e: ControlEvent) => {
      if (e.to !== control.nodeId || typeof e.clientId !== 'string' || typeof e.gen !== 'number') return;
      const clientId = e.clientId;
      const gen = e.gen;
      this.lost.set(clientId, Math.max(gen, this.lost.get(clientId) ?? 0));
      // only CONNECTs already running here need the mark; they end within the takeover timeout
      setTimeout(() => {
        if (this.lost.get(clientId) === gen) this.lost.delete(clientId);
      }, timeoutMs * 2).unref();
      giveUp(clientId, e.clean === true).then(
        () => control.publish('mqtt-released', { clientId, gen }),
        (err: unknown) => {
          this.log.error({ err, client: clientId }, 'mqtt session not handed over cleanly');
          control.publish('mqtt-released', { clientId, gen });
        },
      );
    });
  }

  /**
   * Makes this node the holder of `clientId`'s session; resolves once a previous holder let go.
   * Returns the generation to check with {@link current} after later awaits (0: alone, no claims).
   */
  async claim(clientId: string, clean: boolean): Promise<number> {
    const c = this.control;
    if (!c.clustered) return 0;
    const { gen, previous } = await c.claim(SPACE, clientId);
    if (previous && previous !== c.nodeId && c.isLive(previous)) {
      const wait = { node: previous, gone: new AbortController() };
      this.waits.add(wait);
      try {
        const released = c.next('mqtt-released', (e) => e.from === previous && e.clientId === clientId && e.gen === gen, this.timeoutMs, wait.gone.signal);
        c.publish('mqtt-takeover', { clientId, gen, to: previous, clean });
        if (await released) return gen;
        if (wait.gone.signal.aborted) this.log.info({ client: clientId, node: previous }, 'mqtt session holder found dead during the takeover; going ahead');
        else this.log.warn({ client: clientId, node: previous }, 'mqtt session holder did not answer the takeover in time; going ahead');
      } finally {
        this.waits.delete(wait);
      }
    }
    return gen;
  }

  /** False when another node claimed the session after `gen` (this CONNECT lost the race). */
  current(clientId: string, gen: number): boolean {
    return gen === 0 || (this.lost.get(clientId) ?? 0) < gen;
  }

  /** The session ended here: the claim goes (unless another node holds it by now). */
  release(clientId: string): void {
    if (!this.control.clustered) return;
    this.control.unclaim(SPACE, clientId).catch((e: unknown) => this.log.warn({ err: e, client: clientId }, 'mqtt session claim not released'));
  }
}
