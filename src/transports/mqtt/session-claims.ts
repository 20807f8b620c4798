import type { Logger } from 'pino';
import type { ClusterControl, ControlEvent } from '../../cluster/control.js';

/** Claim space of MQTT client identifiers. */
const SPACE = 'mqtt-session';

/** Whose a session is, seen by {@link SessionClaims.hold}. */
export type Holding = 'held' | 'taken' | 'elsewhere';

/** What the claims tell the broker besides takeovers. */
export interface ClaimEvents {
  /** Lets the session go: closes its connection, saves and forgets it; `clean`: the new one starts afresh. */
  giveUp(clientId: string, clean: boolean): Promise<void>;
  /** Claims held by nodes found dead: their sessions have nobody to look after them. */
  orphaned(clientIds: string[]): void;
  /**
   * A node answered a takeover that this node had stopped waiting for: it wrote the session since,
   * after this node read it.
   */
  answeredLate(clientId: string): void;
}

/**
 * Which node holds each MQTT session, in a cluster. A CONNECT claims its client identifier (the
 * claim's generation only grows); if another live node held it, that node is asked to let go —
 * close the connection with 0x8E, save the session, forget it — and the new node reads the
 * session only after it answered, or once the control finds that node dead (no heartbeat for
 * `nodeTimeout`), or after `takeoverTimeout`, whichever comes first.
 *
 * The claim also says which node runs the expiry clock of a session without a connection: its
 * holder. Claims of nodes found dead are handed to the broker by the first live node, which takes
 * them over ({@link hold}).
 */
export class SessionClaims {
  /** Highest generation another node claimed, per client, while CONNECTs here may still be running. */
  private readonly lost = new Map<string, number>();
  /** Takeovers waiting for the previous holder's answer: each ends early when that node is found dead. */
  private readonly waits = new Set<{ node: string; gone: AbortController }>();
  /** Takeovers this node went ahead with unanswered, while their node lives: client id → that node and the claim. */
  private readonly unanswered = new Map<string, { node: string; gen: number }>();
  /** The last look for claims of dead nodes failed: look again at the next heartbeat. */
  private rescan = false;

  constructor(
    private readonly control: ClusterControl,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    private readonly events: ClaimEvents,
  ) {
    // after every heartbeat round: a dead holder will not answer, so its takeovers wait no longer
    control.onTick((nodes, changed) => {
      for (const w of this.waits) if (!control.isLive(w.node)) w.gone.abort();
      for (const [id, u] of this.unanswered) if (!control.isLive(u.node)) this.unanswered.delete(id);
      // the first live node looks for claims of dead nodes when the node list changes
      if ((changed || this.rescan) && nodes[0] === control.nodeId) {
        this.rescan = false;
        this.orphans().catch((e: unknown) => {
          this.rescan = true;
          this.log.warn({ err: e }, 'mqtt session claims of dead nodes not checked');
        });
      }
    });
    control.on('mqtt-takeover', (e: ControlEvent) => {
      if (e.to !== control.nodeId || typeof e.clientId !== 'string' || typeof e.gen !== 'number') return;
      const clientId = e.clientId;
      const gen = e.gen;
      this.lost.set(clientId, Math.max(gen, this.lost.get(clientId) ?? 0));
      this.unanswered.delete(clientId);
      // only CONNECTs already running here need the mark; they end within the takeover timeout
      setTimeout(() => {
        if (this.lost.get(clientId) === gen) this.lost.delete(clientId);
      }, timeoutMs * 2).unref();
      events.giveUp(clientId, e.clean === true).then(
        () => control.publish('mqtt-released', { clientId, gen }),
        (err: unknown) => {
          this.log.error({ err, client: clientId }, 'mqtt session not handed over cleanly');
          control.publish('mqtt-released', { clientId, gen });
        },
      );
    });
    control.on('mqtt-released', (e: ControlEvent) => {
      if (typeof e.clientId !== 'string') return;
      const u = this.unanswered.get(e.clientId);
      if (!u || u.node !== e.from || u.gen !== e.gen) return;
      this.unanswered.delete(e.clientId);
      if (this.current(e.clientId, u.gen)) events.answeredLate(e.clientId);
    });
  }

  private async orphans(): Promise<void> {
    const c = this.control;
    const ids: string[] = [];
    for (const [id, claim] of await c.claims(SPACE)) if (!c.isLive(claim.node)) ids.push(id);
    if (ids.length) {
      this.log.info({ count: ids.length }, 'mqtt session claims of dead nodes found');
      this.events.orphaned(ids);
    }
  }

  /**
   * Makes this node the holder of `clientId`'s session; resolves once a previous holder let go.
   * Returns the generation to check with {@link current} after later awaits (0: alone, no claims).
   */
  async claim(clientId: string, clean: boolean): Promise<number> {
    const c = this.control;
    if (!c.clustered) return 0;
    this.unanswered.delete(clientId);
    const { gen, previous } = await c.claim(SPACE, clientId);
    if (previous && previous !== c.nodeId && c.isLive(previous)) {
      const wait = { node: previous, gone: new AbortController() };
      this.waits.add(wait);
      try {
        const released = c.next('mqtt-released', (e) => e.from === previous && e.clientId === clientId && e.gen === gen, this.timeoutMs, wait.gone.signal);
        c.publish('mqtt-takeover', { clientId, gen, to: previous, clean });
        if (await released) return gen;
        if (wait.gone.signal.aborted) this.log.info({ client: clientId, node: previous }, 'mqtt session holder found dead during the takeover; going ahead');
        else {
          this.log.warn({ client: clientId, node: previous }, 'mqtt session holder did not answer the takeover in time; going ahead');
          // it may still answer, after writing the session over what this node read
          this.unanswered.set(clientId, { node: previous, gen });
        }
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

  /**
   * Before this node acts on a session it does not hold in memory (expires it): `held` when its
   * claim is this node's (always, alone), `taken` when nobody's or a dead node's claim just became
   * this node's, `elsewhere` when another live node holds it (or took it first).
   */
  async hold(clientId: string): Promise<Holding> {
    const c = this.control;
    if (!c.clustered) return 'held';
    const now = await c.claimOf(SPACE, clientId);
    if (now?.node === c.nodeId) return 'held';
    if (now && c.isLive(now.node)) return 'elsewhere';
    return (await c.claimIf(SPACE, clientId, now)) > 0 ? 'taken' : 'elsewhere';
  }

  /** The live node other than this one that holds `clientId`'s claim, if any (alone: none). */
  async holder(clientId: string): Promise<string | undefined> {
    const c = this.control;
    if (!c.clustered) return undefined;
    const now = await c.claimOf(SPACE, clientId);
    return now && now.node !== c.nodeId && c.isLive(now.node) ? now.node : undefined;
  }

  /** The session ended here: the claim goes (unless another node holds it by now). */
  release(clientId: string): void {
    if (!this.control.clustered) return;
    this.control.unclaim(SPACE, clientId).catch((e: unknown) => this.log.warn({ err: e, client: clientId }, 'mqtt session claim not released'));
  }
}
