import type { IncomingMessage } from 'node:http';
import { destination, pino, type Logger } from 'pino';
import { createBus, type Bus } from './cluster/index.js';
import { createAuthenticator } from './auth/authenticator.js';
import { createControl } from './cluster/control-factory.js';
import { createUserDirectory } from './auth/users.js';
import type { ClusterControl } from './cluster/control.js';
import type { Config } from './config/schema.js';
import { Hub } from './core/hub.js';
import { ConnectionRegistry } from './core/connections.js';
import { DISCOVERY_PATH, HttpDoor } from './http/http-server.js';
import { Metrics } from './metrics/metrics.js';
import { createStore } from './store/index.js';
import { RedisStore } from './store/redis.js';
import { ConnectionBudget, type TransportContext } from './transports/context.js';
import { MqttTransport } from './transports/mqtt/mqtt-transport.js';
import { WebPushTransport } from './transports/webpush/webpush-transport.js';
import { requestToken } from './wire/http-request.js';

export interface RunningServer {
  /** Base URL of the HTTP door, e.g. http://127.0.0.1:41234 */
  readonly http: string;
  /** The MQTT listener, e.g. mqtt://127.0.0.1:1883 (absent when MQTT is off). */
  readonly mqtt?: string;
  /** The MQTT over TLS listener, e.g. mqtts://127.0.0.1:8883, when configured. */
  readonly mqtts?: string;
  readonly hub: Hub;
  /** How messages reach this process's subscribers (`local`, or `redis` in a cluster). */
  readonly bus: Bus;
  readonly metrics: Metrics;
  /** The Web Push door, when `webpush.subject` is configured. */
  readonly webpush?: WebPushTransport;
  /** This node's id and view of the cluster. */
  readonly cluster: ClusterControl;
  /** The MQTT door, when MQTT is on. */
  readonly mqttDoor?: MqttTransport;
  /** Stops accepting, ends streams cleanly, flushes and closes the store. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Logger to use; by default pino to stderr at `config.log.level`. */
  log?: Logger;
}

/** Builds store, hub, auth and doors from `config` and starts listening. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? pino({ level: config.log.level, base: undefined }, destination(2));
  if (config.bus.kind === 'redis' && config.store.kind !== 'redis') {
    throw new Error(`bus.kind "redis" needs store.kind "redis" (the bus carries the Redis store's appends), not "${config.store.kind}"`);
  }
  const store = await createStore(config.store);
  const bus = createBus(config.bus.kind, store, log);
  const metrics = new Metrics();
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
  try {
    await bus.start(hub);
  } catch (e) {
    await bus.close();
    await store.close();
    throw e;
  }
  const auth = await createAuthenticator(config.auth);
  const cluster = await createControl(config, log);
  let draining = false;

  const corsOrigins = config.http.corsOrigins;
  const ctx: TransportContext = {
    hub,
    config,
    metrics,
    log,
    connections: new ConnectionBudget(config.limits.maxConnections),
    registry: new ConnectionRegistry(),
    authenticate: (req: IncomingMessage, url: URL) => auth.authenticate(requestToken(req, url, config.auth.cookieName)),
    authenticateToken: (token) => auth.authenticate(token),
    commonHeaders: (req: IncomingMessage) => {
      const h: Record<string, string> = { Link: `<${DISCOVERY_PATH}>; rel="omnipush"` };
      const origin = req.headers.origin;
      if (corsOrigins.includes('*')) h['Access-Control-Allow-Origin'] = '*';
      else if (origin && corsOrigins.includes(origin)) {
        h['Access-Control-Allow-Origin'] = origin;
        h['Access-Control-Allow-Credentials'] = 'true';
        h.Vary = 'Origin';
      }
      if (h['Access-Control-Allow-Origin']) h['Access-Control-Expose-Headers'] = 'Link';
      return h;
    },
    draining: () => draining,
    cluster,
    unready: () => bus.unhealthy() ?? (store instanceof RedisStore && !store.connected ? 'store connection to Redis is down' : undefined),
  };

  // Web Push is on when a VAPID subject is configured (push services refuse requests without one).
  const webpush = config.webpush.subject ? await WebPushTransport.start(ctx) : undefined;
  const door = new HttpDoor(ctx, { webpush });
  const mqtt = config.mqtt.enabled ? new MqttTransport(ctx, createUserDirectory(config.auth.users)) : null;
  if (mqtt) door.addUpgradeHandler(mqtt);
  const addr = await door.listen(config.http.host, config.http.port);
  const urlOf = (scheme: string, a: { host: string; port: number }) => `${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  const httpUrl = urlOf('http', addr);
  let mqttUrl: string | undefined;
  let mqttsUrl: string | undefined;
  if (mqtt) {
    try {
      const m = await mqtt.listen();
      if (m.tcp) mqttUrl = urlOf('mqtt', m.tcp);
      if (m.tls) mqttsUrl = urlOf('mqtts', m.tls);
      ctx.mqttPorts = { tcp: m.tcp?.port, tls: m.tls?.port };
    } catch (e) {
      await mqtt.close();
      await door.close();
      await cluster.close();
      await bus.close();
      await store.close();
      throw e;
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
    webpush,
    cluster,
    mqttDoor: mqtt ?? undefined,
    close() {
      closing ??= (async () => {
        draining = true;
        clearInterval(pruneTimer);
        // MQTT first, while the hub still takes publishes: wills of the closed connections go out,
        // and the sessions are saved; whatever is published after is replayed to them from history
        await mqtt?.close();
        await hub.close();
        await webpush?.close();
        await door.close();
        // after the doors: they hand their leases and claims back through it
        await cluster.close();
        await bus.close();
        await store.close();
        log.info('omnipush stopped');
      })();
      return closing;
    },
  };
}
