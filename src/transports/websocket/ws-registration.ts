import type { ConnectionInfo } from '../../core/connections.js';
import type { OmnipushError } from '../../core/errors.js';
import type { Principal } from '../../core/grants.js';
import type { WsConnection } from './ws-connection.js';

/** A WebSocket as the connection registry sees it. */
export class WsRegistration implements ConnectionInfo {
  readonly door = 'websocket';
  readonly since = Date.now();
  presenceState: unknown = undefined;
  principal: Principal;

  constructor(
    private readonly conn: WsConnection,
    readonly id: string,
    readonly address: string,
  ) {
    this.principal = conn.principal;
  }

  get clientId(): string | undefined {
    return this.conn.clientId;
  }

  get presenceInfo(): Record<string, unknown> | undefined {
    return this.conn.presenceInfo;
  }

  subscriptions(): string[] {
    return this.conn.filters();
  }

  subscriptionCount(): number {
    return this.conn.filterCount();
  }

  close(reason: OmnipushError): void {
    this.conn.closeFor(reason);
  }

  unsubscribe(filter: string): number {
    return this.conn.dropFilter(filter);
  }
}
