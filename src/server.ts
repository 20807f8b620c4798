import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { createBus, type Bus } from './cluster/index.js';
import { checkBindSafety, createAuthenticator } from './auth/authenticator.js';
import { createControl } from './cluster/control-factory.js';
import { createUserDirectory } from './auth/users.js';
import type { ClusterControl } from './cluster/control.js';
import type { Config } from './config/schema.js';
import { Hub } from './core/hub.js';
import { ConnectionRegistry, observers } from './core/connections.js';
import { createPresence } from './cluster/presence-factory.js';
import type { Presence } from './core/presence.js';
import { QuotaGate } from './core/quota.js';
import { ControlQuotaCounts } from './cluster/quota-counts.js';
import { DISCOVERY_PATH, HttpDoor } from './http/http-server.js';
import { httpsOptions } from './http/https-options.js';
import { createLogger } from './log/logger.js';
import { Metrics } from './metrics/metrics.js';
import { AdminApi } from './admin/admin-api.js';
import { listenError } from './port-clash.js';
import { createStore } from './store/index.js';
import { RedisStore } from './store/redis.js';
import { ConnectionBudget, type TransportContext } from './transports/context.js';
import { PreAuthPool } from './transports/pre-auth-pool.js';
import { MqttTransport } from './transports/mqtt/mqtt-transport.js';
import { WebPushTransport } from './transports/webpush/webpush-transport.js';
import { ConnectAuth } from './hooks/connect-auth.js';
import { RuleHooks } from './hooks/rule-hooks.js';
import { startTriggers } from './triggers/index.js';
import { Webhooks } from './webhooks/webhooks.js';
import { ClientAddresses } from './wire/client-address.js';
import { ConnectionEvents } from './webhooks/connection-events.js';
import { startReceipts } from './receipts/index.js';
import type { Receipts } from './receipts/receipts.js';

/** The `Link` header every response carries (one string, not one per response). */
const DISCOVERY_LINK = `<${DISCOVERY_PATH}>; rel="omnipush"`;

export interface RunningServer {
  /** Base URL of the HTTP door, e.g. http://127.0.0.1:41234 (https:// with `http.tls`) */
  readonly http: string;
  /** The MQTT listener, e.g. mqtt://127.0.0.1:1883 (absent when MQTT is off). */
  readonly mqtt?: string;
  /** The MQTT over TLS listener, e.g. mqtts://127.0.0.1:8883, when configured. */
  readonly mqtts?: string;
  readonly hub: Hub;
  /** How messages reach this process's subscribers (`local`, or `redis` in a cluster). */
  readonly bus: Bus;
  readonly metrics: Metrics;
  /** The server's logger. */
  readonly log: Logger;
  /** The Web Push door, when `webpush.subject` is configured. */
  readonly webpush?: WebPushTransport;
  /** Signed webhooks, when endpoints are configured. */
  readonly webhooks?: Webhooks;
  /** This node's id and view of the cluster. */
  readonly cluster: ClusterControl;
  /** The MQTT door, when MQTT is on. */
  readonly mqttDoor?: MqttTransport;
  /** Sockets that have not authenticated yet (limits.preAuth). */
  readonly preAuth: PreAuthPool;
  /** Live authenticated connections of this node, every door. */
  readonly registry: ConnectionRegistry;
  /** The quotas the doors ask. */
  readonly quotas: QuotaGate;
  /** Delivery receipts (docs/receipts.md). */
  readonly receipts: Receipts;
  /** Member lists of presence-ruled topics (absent without `presence.rules`). */
  readonly presence?: Presence;
  /** Stops accepting, ends streams cleanly, flushes and closes the store. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Logger to use; by default pino to stderr at `config.log.level`, formatted by `config.log.format`. */
  log?: Logger;
}

/**
 * Builds store, hub, auth and doors from `config` and starts listening. Throws, as the CLI does,
 * when `config` would listen beyond loopback with no authentication (see checkBindSafety).
 */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  // an embedding application gets the CLI's rule: no open network listener without authentication
  checkBindSafety(config);
  const log = opts.log ?? (await createLogger(config.log));
  const tls = httpsOptions(config.http.tls);
  if (config.bus.kind === 'redis' && config.store.kind !== 'redis') {
    throw new Error(`bus.kind "redis" needs store.kind "redis" (the bus carries the Redis store's appends), not "${config.store.kind}"`);
  }
  const store = await createStore(config.store);
  const bus = createBus(config.bus.kind, store, log);
  const metrics = new Metrics({ loopDelayResolution: config.metrics.loopDelayResolution });
  const hub = new Hub(store, {
    limits: { maxTopicBytes: config.limits.maxTopicBytes, maxTopicLevels: config.limits.maxTopicLevels },
    maxPayloadBytes: config.limits.maxPayloadBytes,
    maxQueueBytes: config.limits.maxQueueBytes,
    retention: config.history.rules.map((r) => ({
      filter: r.filter,
      maxCount: r.maxCount ?? config.history.maxCount,
      maxAgeMs: (r.maxAge ?? config.history.maxAge) * 1000,
    })),
    defaultRetention: { maxCount: config.history.maxCount, maxAgeMs: config.history.maxAge * 1000 },
    observer: metrics.hubObserver(),
    externalFanOut: bus.external,
    retainedTopicsPerPrincipal: config.quotas.retainedTopicsPerPrincipal,
  });
  metrics.pendingPublishes = () => hub.pendingPublishes;
  try {
    await bus.start(hub);
  } catch (e) {
    await bus.close();
    await store.close();
    throw e;
  }
  const addresses = new ClientAddresses(config.http.trustedProxies);
  const auth = new ConnectAuth(await createAuthenticator(config.auth, !!config.hooks.connect.url, config.presence.rules.length ? config.presence.maxInfoBytes : 0), config, metrics, log, addresses);
  const cluster = await createControl(config, log);
  const triggers = await startTriggers(config, hub, cluster, log);
  let draining = false;

  const preAuth = new PreAuthPool(config.limits.preAuth.max, config.limits.preAuth.perAddress, config.limits.preAuth.timeout * 1000, config.limits.preAuth.burst * 1000);
  metrics.watchPreAuth(preAuth);
  const corsOrigins = config.http.corsOrigins;
  const anyOrigin = corsOrigins.includes('*');
  const registry = new ConnectionRegistry(cluster.nodeId);
  // connections and subscriptions per principal hold cluster-wide; the rest per node (docs/security.md)
  const perPrincipal = config.quotas.connectionsPerPrincipal > 0 || config.quotas.subscriptionsPerPrincipal > 0;
  const quotaCounts = cluster.clustered && perPrincipal ? new ControlQuotaCounts(cluster, registry, log) : null;
  if (quotaCounts) registry.onPrincipalChange = (id) => quotaCounts.touch(id);
  const quotas = new QuotaGate(config.quotas, registry, quotaCounts);
  const presence = await createPresence(config, cluster, log);
  const ctx: TransportContext = {
    presence,
    hub,
    config,
    metrics,
    log,
    connections: new ConnectionBudget(config.limits.maxConnections),
    preAuth,
    registry,
    quotas,
    addresses,
    authenticate: (req: IncomingMessage, url: URL, door?: 'http' | 'websocket') => auth.request(req, url, door),
    authenticateToken: (token) => auth.token(token),
    authenticateMqtt: (username, password, clientId, address) => auth.mqtt(username, password, clientId, address),
    commonHeaders: (req: IncomingMessage) => {
      // one literal, one shape: every answer of the publish API starts here
      if (anyOrigin) return { Link: DISCOVERY_LINK, 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Link' };
      const h: Record<string, string> = { Link: DISCOVERY_LINK };
      const origin = req.headers.origin;
      if (origin && corsOrigins.includes(origin)) {
        h['Access-Control-Allow-Origin'] = origin;
        h['Access-Control-Allow-Credentials'] = 'true';
        h.Vary = 'Origin';
      }
      if (h['Access-Control-Allow-Origin']) h['Access-Control-Expose-Headers'] = 'Link';
      return h;
    },
    draining: () => draining,
    cluster,
    publishWith: triggers.publishWith,
    ruleHooks: RuleHooks.create(config.hooks, metrics, log),
    unready: () => bus.unhealthy() ?? (store instanceof RedisStore && !store.connected ? 'store connection to Redis is down' : undefined),
  };

  // Web Push is on when a VAPID subject is configured (push services refuse requests without one).
  const webpush = config.webpush.subject ? await WebPushTransport.start(ctx) : undefined;
  // webhooks (docs/webhooks.md) hear the registry and Web Push; off without endpoints
  const webhooks = await Webhooks.start(ctx);
  registry.observer = observers([webhooks && new ConnectionEvents(webhooks, cluster.nodeId), presence]);
  if (webhooks) {
    if (webpush && webhooks.wanted('webpush.gone')) {
      webpush.onGone = (r) => webhooks.emit('webpush.gone', { subscription: r.id, endpoint: r.endpoint, principal: r.principal.id, topics: r.filters });
    }
  }
  const receipts = await startReceipts(ctx, webpush, webhooks);
  const door = new HttpDoor(ctx, { webpush, tls });
  door.mountAdmin(new AdminApi(ctx, webpush, webhooks));
  door.mountReceipts(receipts.tracker, receipts.log);
  const mqtt = config.mqtt.enabled ? new MqttTransport(ctx, createUserDirectory(config.auth.users)) : null;
  if (mqtt) door.addUpgradeHandler(mqtt);
  // a listener that cannot open undoes the start: everything started so far is closed, then the
  // error names the door and how to move it
  const abort = async (): Promise<void> => {
    await mqtt?.close();
    await door.close();
    await webpush?.close();
    await webhooks?.close();
    await receipts.close();
    await triggers.close();
    quotas.close();
    await presence?.close();
    await cluster.close();
    await bus.close();
    await store.close();
    metrics.loopDelay.close();
  };
  let addr;
  try {
    addr = await door.listen(config.http.host, config.http.port);
  } catch (e) {
    await abort();
    throw listenError(e, { door: 'HTTP', port: config.http.port, moveWith: '--port or http.port' });
  }
  const urlOf = (scheme: string, a: { host: string; port: number }) => `${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  const httpUrl = urlOf(tls ? 'https' : 'http', addr);
  let mqttUrl: string | undefined;
  let mqttsUrl: string | undefined;
  if (mqtt) {
    try {
      const m = await mqtt.listen();
      if (m.tcp) mqttUrl = urlOf('mqtt', m.tcp);
      if (m.tls) mqttsUrl = urlOf('mqtts', m.tls);
      ctx.mqttPorts = { tcp: m.tcp?.port, tls: m.tls?.port };
    } catch (e) {
      await abort();
      const tls = config.mqtt.tls;
      const onTls = tls !== undefined && (e as { port?: number }).port === tls.port && tls.port !== config.mqtt.port;
      throw listenError(
        e,
        onTls ? { door: 'MQTT TLS', port: tls.port, moveWith: 'mqtt.tls.port' } : { door: 'MQTT', port: config.mqtt.port, moveWith: '--mqtt-port or mqtt.port', alternative: 'turn MQTT off with mqtt.enabled: false' },
      );
    }
  }

  const pruneTimer = setInterval(() => {
    hub.prune().catch((e: unknown) => log.error({ err: e }, 'history pruning failed'));
  }, config.history.pruneInterval * 1000);
  pruneTimer.unref();

  log.info({ http: httpUrl, mqtt: mqttUrl, mqtts: mqttsUrl, store: store.kind, bus: bus.kind, epoch: store.epoch }, 'omnipush listening');

  let closing: Promise<void> | undefined;
  return {
    http: httpUrl,
    mqtt: mqttUrl,
    mqtts: mqttsUrl,
    hub,
    bus,
    metrics,
    log,
    webpush,
    webhooks,
    cluster,
    mqttDoor: mqtt ?? undefined,
    preAuth,
    registry: ctx.registry,
    quotas,
    receipts: receipts.tracker,
    presence,
    close() {
      closing ??= (async () => {
        draining = true;
        const t0 = Date.now();
        // what was open when the drain began, for the last log line
        const open: Record<string, number> = {};
        for (const v of (await metrics.connections.get()).values) if (v.value > 0) open[String(v.labels.transport)] = v.value;
        const drained = { connections: open, publishesInFlight: hub.pendingPublishes, mqttSessions: mqtt?.broker.sessions.size ?? 0 };
        clearInterval(pruneTimer);
        // MQTT first, while the hub still takes publishes: wills of the closed connections go out,
        // and the sessions are saved; whatever is published after is replayed to them from history
        await mqtt?.close();
        await receipts.close();
        await triggers.close();
        await hub.close();
        await webpush?.close();
        await door.close();
        // after the doors: their last disconnects are queued and written
        await webhooks?.close();
        quotas.close();
        await quotaCounts?.close();
        await presence?.close();
        await auth.close();
        await ctx.ruleHooks?.close();
        // after the doors: they hand their leases and claims back through it
        await cluster.close();
        await bus.close();
        await store.close();
        metrics.loopDelay.close();
        log.info({ drained, ms: Date.now() - t0 }, 'omnipush stopped');
      })();
      return closing;
    },
  };
}
