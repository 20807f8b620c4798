import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { ClusterControl } from '../cluster/control.js';
import type { Config } from '../config/schema.js';
import type { Principal } from '../core/grants.js';
import type { Hub } from '../core/hub.js';
import type { Metrics } from '../metrics/metrics.js';
import { OmnipushError } from '../core/errors.js';
import type { ConnectionRegistry } from '../core/connections.js';
import type { PreAuthPool } from './pre-auth-pool.js';
import type { QuotaGate } from '../core/quota.js';
import type { OptionsPublisher } from '../core/publish-options.js';
import type { ClientAddresses } from '../wire/client-address.js';
import type { RuleHooks } from '../hooks/rule-hooks.js';
import type { ReceiptAcks } from '../core/receipt.js';
import type { Presence } from '../core/presence.js';

/** What the server hands every door. */
export interface TransportContext {
  hub: Hub;
  config: Config;
  metrics: Metrics;
  log: Logger;
  connections: ConnectionBudget;
  /** Live authenticated connections of this node, by principal and address (quotas, server API). */
  registry: ConnectionRegistry;
  /** Sockets that have not authenticated yet, apart from `connections` (limits.preAuth). */
  preAuth: PreAuthPool;
  /** May this principal, from this address, connect / subscribe / publish now (`quotas`). */
  quotas: QuotaGate;
  /** The client's address of a request, through trusted proxies (`http.trustedProxies`). */
  addresses: ClientAddresses;
  /** Principal of an HTTP request (header, `access_token` or cookie); rejects with `unauthorized`. */
  authenticate(req: IncomingMessage, url: URL, door?: 'http' | 'websocket'): Promise<Principal>;
  /** Principal of a bearer token (undefined: none), for doors that carry tokens themselves. */
  authenticateToken(token: string | undefined): Promise<Principal>;
  /**
   * Principal of MQTT CONNECT credentials other than a static user's: the password as a JWT, or
   * the app's connect hook. Rejects with `unauthorized`, `forbidden` or `unavailable`.
   */
  authenticateMqtt(username: string | undefined, password: Buffer | undefined, clientId: string, address: string): Promise<Principal>;
  /** Headers every HTTP response carries (CORS, discovery Link). */
  commonHeaders(req: IncomingMessage): Record<string, string>;
  /** True once shutdown began: new streams are refused with 503 + Retry-After. */
  draining(): boolean;
  /** Nodes of the cluster and their coordination (a lone node when the store is not shared). */
  cluster: ClusterControl;
  /** Why this process cannot take publishes now (e.g. Redis unreachable), for `/readyz`; undefined when it can. */
  unready?(): string | undefined;
  /** Publishes that carry an idempotency key or a due time (docs/triggers.md). */
  publishWith?: OptionsPublisher;
  /** Subscribe and publish hooks (hooks.subscribe, hooks.publish); undefined when none is configured. */
  ruleHooks?: RuleHooks;
  /** Delivery receipts: where doors hand acknowledgements (docs/receipts.md). */
  receipts?: ReceiptAcks;
  /** Member lists and join/leave events of presence-ruled topics; undefined without `presence.rules`. */
  presence?: Presence;
  /** Ports the MQTT door listens on, once it does (for discovery). */
  mqttPorts?: { tcp?: number; tls?: number };
}

/** Counts long-lived connections across doors and enforces `limits.maxConnections`. */
export class ConnectionBudget {
  private open = 0;
  constructor(private readonly max: number) {}

  get count(): number {
    return this.open;
  }

  /** Takes one slot or throws `too_many_connections`. */
  acquire(): void {
    if (this.open >= this.max) {
      throw new OmnipushError('too_many_connections', `this server holds its limit of ${this.max} connections; retry later or elsewhere`);
    }
    this.open++;
  }

  release(): void {
    if (this.open > 0) this.open--;
  }
}
