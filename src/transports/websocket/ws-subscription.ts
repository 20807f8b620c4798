import type { Delivery } from '../../core/encoded.js';
import type { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { GapInfo, HubSubscriber } from '../../core/hub.js';
import type { SocketWriter } from '../../wire/socket-writer.js';
import type { WsConnection } from './ws-connection.js';
import { WS_MESSAGE_FRAME } from './ws-frame.js';

/** What a subscription that watches no presence topics holds (shared: most subscriptions watch none). */
export const NO_TOPICS: readonly string[] = Object.freeze([]);

/** One subscription of a socket: a hub subscriber that writes into the socket's queue. */
export class WsSubscription implements HubSubscriber {
  get transport(): string {
    return 'websocket';
  }

  /** Topics whose join/leave events this subscription asked for. */
  watching: readonly string[] = NO_TOPICS;
  constructor(
    readonly id: string,
    private readonly conn: WsConnection,
    /** Filters it holds (re-authentication may drop some). */
    public filters: string[],
    readonly noEcho: boolean,
    /** The socket's queue (null on `ws` sockets, which frame each send): deliveries go straight to it. */
    private readonly writer: SocketWriter | null,
    /** The door's delivery counts (metrics). */
    private readonly counts: Record<string, number>,
  ) {}

  get connectionId(): string | undefined {
    return this.conn.connectionId;
  }

  /** The socket's principal: renewed credentials apply to every subscription at once. */
  get principal(): Principal {
    return this.conn.principal;
  }

  deliver(d: Delivery): void {
    const w = this.writer;
    // not through the connection: at 10k sockets every object a delivery reads is a fetch from
    // memory, and the connection holds nothing a delivery needs. A closed connection has closed its
    // writer, whose write() says so.
    if (w === null) this.conn.deliverThroughWs(d);
    else if (w.write(d.encoded(WS_MESSAGE_FRAME), d.alone)) this.counts.websocket++;
  }

  gap(info: GapInfo): void {
    this.conn.send({ type: 'gap', sub: this.id, ...info });
  }

  close(reason: OmnipushError): void {
    this.conn.close(reason);
  }

  backpressure(): Promise<void> | null {
    return this.conn.backpressure();
  }
}
