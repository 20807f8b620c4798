import type { IncomingMessage } from 'node:http';
import type { TransportContext } from '../transports/context.js';
import { VERSION } from '../version.js';

/** Base URL clients should use: the configured public URL, else what the request was sent to. */
export function baseUrl(ctx: TransportContext, req: IncomingMessage): string {
  if (ctx.config.http.publicUrl) return ctx.config.http.publicUrl.replace(/\/+$/, '');
  const host = req.headers.host && /^[A-Za-z0-9.:[\]-]+$/.test(req.headers.host) ? req.headers.host : `${ctx.config.http.host}:${ctx.config.http.port}`;
  return `${ctx.config.http.tls ? 'https' : 'http'}://${host}`;
}

/**
 * `GET /.well-known/omnipush`: what this server offers, so a client can start from any URL
 * (every response carries a `Link` to here) and pick a transport.
 */
export function discoveryDocument(ctx: TransportContext, req: IncomingMessage, webpush?: { vapidPublicKey: string }): Record<string, unknown> {
  const base = baseUrl(ctx, req);
  const { limits, longpoll, sse, auth } = ctx.config;
  const doc: Record<string, unknown> = {
    server: 'omnipush',
    version: VERSION,
    epoch: ctx.hub.epoch,
    cursor: ctx.hub.headCursor(),
    transports: {
      websocket: { url: `${base.replace(/^http/, 'ws')}/v1/ws`, protocol: 'docs/websocket.md', perMessageDeflate: ctx.config.websocket.perMessageDeflate, maxFrameBytes: ctx.config.websocket.maxFrameBytes },
      sse: { url: `${base}/v1/sse`, resume: ['Last-Event-ID', 'since'], formats: ['raw', 'json'], heartbeatSeconds: sse.heartbeat },
      longpoll: { url: `${base}/v1/poll`, defaultTimeoutSeconds: longpoll.defaultTimeout, maxTimeoutSeconds: longpoll.maxTimeout, maxMessages: longpoll.maxMessages },
      ...(ctx.config.mqtt.enabled
        ? {
            mqtt: {
              protocol: 'docs/mqtt.md',
              versions: ['3.1', '3.1.1', '5.0'],
              port: ctx.mqttPorts?.tcp ?? ctx.config.mqtt.port,
              ...(ctx.config.mqtt.tls ? { tlsPort: ctx.mqttPorts?.tls ?? ctx.config.mqtt.tls.port } : {}),
              ...(ctx.config.mqtt.wsPath ? { websocket: `${base.replace(/^http/, 'ws')}${ctx.config.mqtt.wsPath}`, subprotocol: 'mqtt' } : {}),
              cursorProperty: 'omnipush-cursor',
              maxPacketBytes: ctx.config.mqtt.maxPacketBytes,
            },
          }
        : {}),
    },
    endpoints: {
      publish: `${base}/v1/publish`,
      presence: `${base}/v1/presence`,
      publishRaw: `${base}/v1/topics/{topic}`,
      history: `${base}/v1/history`,
      ack: `${base}/v1/ack`,
      receipts: `${base}/v1/receipts`,
      health: `${base}/healthz`,
      ready: `${base}/readyz`,
      metrics: `${base}/metrics`,
    },
    limits: {
      maxPayloadBytes: limits.maxPayloadBytes,
      maxTopicBytes: limits.maxTopicBytes,
      maxTopicLevels: limits.maxTopicLevels,
      maxQueueBytes: limits.maxQueueBytes,
      maxBodyBytes: ctx.config.http.maxBodyBytes,
    },
    auth: {
      bearer: true,
      queryParameter: 'access_token',
      cookie: auth.cookieName,
      anonymous: auth.allowAnonymous ?? !auth.jwt,
    },
  };
  if (webpush) {
    // not a streaming transport: a separate entry, so clients choosing a transport never pick it
    doc.webpush = {
      vapidPublicKey: webpush.vapidPublicKey,
      subscriptions: `${base}/v1/webpush/subscriptions`,
      serviceWorker: `${base}/v1/webpush/sw.js`,
      modes: ['always', 'offline'],
      protocol: 'docs/webpush.md',
    };
  }
  return doc;
}
