import { isUtf8 } from 'node:buffer';
import { parseConfig, type ConfigInput } from './config/schema.js';
import type { Delivery } from './core/encoded.js';
import type { OmnipushError } from './core/errors.js';
import { ALLOW_ALL, type Principal } from './core/grants.js';
import type { GapInfo, HubSubscriber, PublishRequest } from './core/hub.js';
import { startServer, type RunningServer, type StartOptions } from './server.js';

/** A message as an in-process subscriber gets it. */
export interface EmbeddedMessage {
  topic: string;
  /** Opaque, totally ordered position; pass it as `since` to resume. */
  cursor: string;
  payload: Buffer;
  /** The payload as text, when it is UTF-8. */
  data?: string;
  event?: string;
  contentType?: string;
  properties?: Array<[string, string]>;
  retain: boolean;
  /** ms since the epoch when the server accepted it. */
  publishedAt: number;
}

export interface EmbeddedPublishOptions {
  /** SSE event name. */
  event?: string;
  /** Keep as the topic's retained message. */
  retain?: boolean;
  /** Seconds until the message expires. */
  ttl?: number;
  contentType?: string;
  properties?: Array<[string, string]>;
  /** QoS for MQTT subscribers (default 1 for messages without one). */
  qos?: 0 | 1 | 2;
}

export interface EmbeddedSubscribeOptions {
  /** A cursor to resume after, `all`, or `now`; without it the retained messages come first. */
  since?: string;
  /** History after `since` is gone (pruned, or from another store); called before the rest. */
  onGap?(info: GapInfo): void;
  /** The server ended the subscription (shutdown, or the handler fell too far behind). */
  onClose?(reason: OmnipushError): void;
}

/** A running server with a small API for the app that embeds it. */
export interface Omnipush {
  /** Base URL of the HTTP door. */
  readonly http: string;
  /** The MQTT listener, when MQTT is on. */
  readonly mqtt?: string;
  readonly mqtts?: string;
  /** Publishes with full rights; resolves once the message is stored, with its cursor. */
  publish(topic: string, data: string | Uint8Array, opts?: EmbeddedPublishOptions): Promise<{ topic: string; cursor: string }>;
  /**
   * Subscribes to one or more filters with full rights; resolves once subscribed (retained or
   * replayed messages may already have arrived) with a function that ends the subscription.
   */
  subscribe(filter: string | string[], onMessage: (m: EmbeddedMessage) => void, opts?: EmbeddedSubscribeOptions): Promise<() => void>;
  /** Drains the doors and closes the store. */
  close(): Promise<void>;
  /** The server underneath, for what this API does not cover. */
  readonly server: RunningServer;
}

/** The app itself: may publish and subscribe anywhere. */
const EMBEDDED: Principal = { id: 'embedded', kind: 'user', grants: ALLOW_ALL };

function toEmbedded(d: Delivery): EmbeddedMessage {
  const m = d.message;
  const out: EmbeddedMessage = { topic: m.topic, cursor: m.cursor, payload: m.payload, retain: m.retain, publishedAt: m.publishedAt };
  if (isUtf8(m.payload)) out.data = m.payload.toString('utf8');
  if (m.event) out.event = m.event;
  if (m.contentType) out.contentType = m.contentType;
  if (m.properties?.length) out.properties = m.properties;
  return out;
}

/** The hub's view of one in-process subscription. */
class EmbeddedSubscriber implements HubSubscriber {
  readonly transport = 'embedded';
  readonly principal = EMBEDDED;

  constructor(
    private readonly onMessage: (m: EmbeddedMessage) => void,
    private readonly opts: EmbeddedSubscribeOptions,
    private readonly report: (err: unknown) => void,
  ) {}

  deliver(d: Delivery): void {
    // the hub's fan-out must not throw: an app handler's error is the app's, logged and contained
    try {
      this.onMessage(toEmbedded(d));
    } catch (e) {
      this.report(e);
    }
  }

  gap(info: GapInfo): void {
    this.opts.onGap?.(info);
  }

  close(reason: OmnipushError): void {
    this.opts.onClose?.(reason);
  }
}

/**
 * Starts Omnipush inside this process (config as in a config file; defaults for the rest) and
 * gives the app `publish`, `subscribe` and `close` without building principals or subscribers.
 */
export async function createOmnipush(config: ConfigInput = {}, opts: StartOptions = {}): Promise<Omnipush> {
  const server = await startServer(parseConfig(config), opts);
  const { hub, metrics } = server;
  const report = (err: unknown) => server.log.error({ err }, 'an embedded subscriber threw');
  return {
    http: server.http,
    mqtt: server.mqtt,
    mqtts: server.mqtts,
    server,
    async publish(topic, data, o = {}) {
      const req: PublishRequest = { topic, payload: typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength), ...o };
      const m = await hub.publish(EMBEDDED, req);
      metrics.publishCounts.embedded++;
      metrics.publishBytes.embedded += m.payload.length;
      return { topic: m.topic, cursor: m.cursor };
    },
    async subscribe(filter, onMessage, o = {}) {
      const plan = hub.checkSubscribe(EMBEDDED, Array.isArray(filter) ? filter : [filter], o.since);
      const sub = new EmbeddedSubscriber(onMessage, o, report);
      await hub.subscribe(sub, plan);
      return () => hub.unsubscribe(sub);
    },
    close: () => server.close(),
  };
}
