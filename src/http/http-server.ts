import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { OmnipushError } from '../core/errors.js';
import type { TransportContext } from '../transports/context.js';
import { LongPollTransport, type PollHost } from '../transports/longpoll/longpoll-transport.js';
import { SseTransport } from '../transports/sse/sse-transport.js';
import { WebSocketTransport } from '../transports/websocket/ws-transport.js';
import { WEBPUSH_PREFIX, WebPushHttp } from '../transports/webpush/webpush-http.js';
import type { WebPushTransport } from '../transports/webpush/webpush-transport.js';
import { errorBody, sendError, sendJson } from '../wire/http-respond.js';
import { ClientAborted } from '../wire/http-request.js';
import type { PreAuthPlace } from '../transports/pre-auth-pool.js';
import { discoveryDocument } from './discovery.js';
import type { HttpsOptions } from './https-options.js';
import { handlePresence } from './presence-api.js';
import { handleHistory, handlePublishJson, handlePublishRaw } from './publish-api.js';
import { CLIENT_PREFIX, serveClientBundle, serveDemo } from './static-files.js';
import type { AdminApi } from '../admin/admin-api.js';
import { CONSOLE_PATH, serveConsole } from '../admin/console-files.js';
import { handleAck, handleReceiptList } from '../receipts/receipts-http.js';
import type { ReceiptLog } from '../receipts/receipt-log.js';
import type { Receipts } from '../receipts/receipts.js';

export const DISCOVERY_PATH = '/.well-known/omnipush';

/** A door mounted on the HTTP server's WebSocket upgrades (MQTT over WebSocket). */
export interface UpgradeHandler {
  handles(path: string): boolean;
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, url: URL): Promise<void>;
}

/** The one HTTP server: routing, publish API, discovery, health, metrics; mounts SSE and long-poll. */
export class HttpDoor {
  readonly server: Server;
  readonly sse: SseTransport;
  readonly longpoll: LongPollTransport;
  readonly websocket: WebSocketTransport;
  private readonly sockets = new Set<Socket>();
  private readonly upgrades: UpgradeHandler[] = [];
  private readonly webpush: WebPushHttp | undefined;
  private readonly metricsToken: Buffer | undefined;
  private admin: AdminApi | undefined;
  private receipts: { tracker: Receipts; log: ReceiptLog } | undefined;
  /** Set once close() began: parked long-poll connections close after their answer. */
  private closing = false;

  constructor(
    private readonly ctx: TransportContext,
    doors: { webpush?: WebPushTransport; tls?: HttpsOptions } = {},
  ) {
    this.webpush = doors.webpush && new WebPushHttp(ctx, doors.webpush);
    this.metricsToken = ctx.config.metrics.token === undefined ? undefined : Buffer.from(ctx.config.metrics.token);
    const metrics = ctx.metrics;
    this.counted = function (this: RoutedResponse): void {
      metrics.countHttpRequest(this[ROUTE] ?? 'other', this.statusCode);
    };
    this.sse = new SseTransport(ctx);
    this.longpoll = new LongPollTransport(ctx, this.pollHost());
    this.websocket = new WebSocketTransport(ctx);
    const options: ServerOptions = { maxHeaderSize: ctx.config.http.maxHeaderBytes, requestTimeout: 30_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 };
    const route = (req: IncomingMessage, res: ServerResponse) => void this.route(req, res);
    this.server = doors.tls ? createHttpsServer({ ...options, ...doors.tls }, route) : createServer(options, route);
    // a failed handshake (plain HTTP to the TLS port, an untrusted certificate) only ends that socket
    if (doors.tls) this.server.on('tlsClientError', (_err: Error, s: Socket) => s.destroy());
    const sockets = this.sockets;
    // one listener for every socket: a closure per socket kept its pre-auth place (and that place's
    // deadline) alive for the socket's whole life, ~0.5 KB per idle stream
    function socketClosed(this: PlacedSocket): void {
      sockets.delete(this);
      headRead({ socket: this });
    }
    const keepAliveMs = options.keepAliveTimeout!;
    const wake = ctx.metrics.loopDelay.wake;
    this.server.on('connection', (s: Socket) => {
      wake();
      if (sockets.has(s)) {
        // a parked long-poll's connection handed back after its answer: it waits for its next
        // request as long as node keeps an idle keep-alive connection (headRead stops the clock)
        s.setTimeout(keepAliveMs);
        (s as PlacedSocket)[PLACE] = KEEP_ALIVE;
        return;
      }
      // until its first request head is read, a connection is one more unauthenticated socket
      const place = ctx.preAuth.enter(ctx.addresses.poolKey(s), ctx.preAuth.timeoutMs, () => s.destroy());
      if (!place) {
        s.destroy();
        return;
      }
      (s as PlacedSocket)[PLACE] = place;
      this.sockets.add(s);
      s.on('close', socketClosed);
    });
    // a WebSocket the door adopted is closed by the door at shutdown: one listener and one entry fewer per idle socket
    function adopted(s: Socket): void {
      sockets.delete(s);
      s.off('close', socketClosed);
    }
    this.server.on('request', headRead);
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      wake();
      headRead(req);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        return socket.destroy();
      }
      if (this.websocket.handles(url.pathname)) {
        this.websocket.upgrade(req, socket, head, url).then(
          (held) => held && adopted(socket),
          (e: unknown) => {
            ctx.log.error({ err: e }, 'websocket upgrade failed');
            socket.destroy();
          },
        );
        return;
      }
      const extra = this.upgrades.find((h) => h.handles(url.pathname));
      if (extra) {
        extra.upgrade(req, socket, head, url).catch((e: unknown) => {
          ctx.log.error({ err: e }, 'upgrade failed');
          socket.destroy();
        });
        return;
      }
      const body = JSON.stringify(errorBody(new OmnipushError('not_found', `no WebSocket endpoint at ${url.pathname}`)));
      socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable) return socket.destroy();
      const tooBig = err.code === 'HPE_HEADER_OVERFLOW';
      const status = tooBig ? 431 : 400;
      const body = JSON.stringify(
        errorBody(new OmnipushError('invalid_request', tooBig ? `request headers exceed ${ctx.config.http.maxHeaderBytes} bytes` : 'malformed HTTP request')),
      );
      socket.end(
        `HTTP/1.1 ${status} ${tooBig ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    });
  }

  /** What the long-poll door asks of the server for its answers: counting them, and parked connections' keep-alive. */
  private pollHost(): PollHost {
    const { counted } = this;
    const requests = this.ctx.metrics.httpRequests;
    return {
      answering(res: RoutedResponse): void {
        if (res[ROUTE] !== undefined) return;
        res[ROUTE] = POLL_PATH;
        res.on('finish', counted);
      },
      answered(status: number): void {
        requests.inc({ route: POLL_PATH, status: String(status) });
      },
      keepAliveMs: () => (this.closing || this.ctx.draining() ? null : this.server.keepAliveTimeout),
      resume: (socket: Socket): void => {
        // node sets the connection up as a new one; our 'connection' listener knows it (see there)
        this.server.emit('connection', socket);
      },
    };
  }

  /** Mounts the server API at `/v1/admin/` and, when it has console credentials, the console at `/admin`. */
  mountAdmin(admin: AdminApi): void {
    this.admin = admin;
  }

  /** Mounts `POST /v1/ack` and `GET /v1/receipts` (docs/receipts.md). */
  mountReceipts(tracker: Receipts, log: ReceiptLog): void {
    this.receipts = { tracker, log };
  }

  /** Mounts another door's WebSocket endpoint. */
  addUpgradeHandler(h: UpgradeHandler): void {
    this.upgrades.push(h);
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        if (!a || typeof a === 'string') return reject(new Error('no address'));
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /**
   * Counts an answered request ('finish' comes once). One listener for every response: a closure
   * here held the whole request's scope (its URL among it) for as long as a stream or a held poll lasts.
   */
  private readonly counted: (this: RoutedResponse) => void;

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { ctx } = this;
    ctx.metrics.loopDelay.wake();
    const raw = req.url ?? '/';
    let url: URL;
    if (raw === PUBLISH_PATH) url = PUBLISH_URL;
    else {
      try {
        url = new URL(raw, 'http://localhost');
      } catch {
        return sendError(res, new OmnipushError('invalid_request', 'malformed request URL'));
      }
    }
    const path = url.pathname;
    const method = req.method ?? 'GET';
    // a poll is counted once it answers: a label and a listener held while it waits cost ~100 B each
    if (path === POLL_PATH && method === 'GET') return this.longpoll.handle(req, res, url);
    const headers = ctx.commonHeaders(req);
    (res as RoutedResponse)[ROUTE] = routeLabel(path);
    res.on('finish', this.counted);
    try {
      // the busiest route first: no closure, no second header object
      if (path === PUBLISH_PATH && method === 'POST') return await handlePublishJson(ctx, req, res, await ctx.authenticate(req, url), headers);
      if (method === 'OPTIONS') return this.preflight(req, res, headers);
      if (path === '/v1/sse') return await this.only(method, ['GET'], () => this.sse.handle(req, res, url));
      if (path === POLL_PATH) return await this.only(method, ['GET'], () => this.longpoll.handle(req, res, url));
      if (path === PUBLISH_PATH) throw notAllowed(method, ['POST']);
      if (path.startsWith('/v1/topics/')) {
        return await this.only(method, ['POST', 'PUT'], async () => {
          const topic = decodeTopicPath(path.slice('/v1/topics/'.length));
          await handlePublishRaw(ctx, req, res, await ctx.authenticate(req, url), topic, url);
        });
      }
      if (path === '/v1/presence' || path === '/v1/presence/stats') {
        return await this.only(method, ['GET'], async () => handlePresence(ctx, req, res, url, path === '/v1/presence/stats'));
      }
      if (path === '/v1/history') {
        return await this.only(method, ['GET'], async () => handleHistory(ctx, req, res, await ctx.authenticate(req, url), url));
      }
      if (path === '/v1/ack' && this.receipts) {
        const r = this.receipts;
        return await this.only(method, ['POST'], async () => handleAck(ctx, r.tracker, req, res, await ctx.authenticate(req, url)));
      }
      if (path === '/v1/receipts' && this.receipts) {
        const r = this.receipts;
        return await this.only(method, ['GET'], async () => handleReceiptList(ctx, r.log, req, res, await ctx.authenticate(req, url), url));
      }
      if (this.admin?.handles(path)) return await this.admin.handle(req, res, url);
      if ((path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`)) && this.admin?.auth.consoleEnabled) {
        return await this.only(method, ['GET', 'HEAD'], async () => serveConsole(path, res));
      }
      if (path.startsWith(WEBPUSH_PREFIX) && this.webpush) return await this.webpush.handle(req, res, url);
      if (path.startsWith(CLIENT_PREFIX)) return await this.only(method, ['GET'], async () => serveClientBundle(path, res, headers));
      if ((path === '/demo/' || path === '/demo') && this.admin?.auth.consoleEnabled) {
        // the console's playground took the demo's place
        res.writeHead(302, { ...headers, Location: `${CONSOLE_PATH}/#playground`, 'Content-Length': 0 });
        return void res.end();
      }
      if ((path === '/demo/' || path === '/demo') && ctx.config.demo.enabled) return await this.only(method, ['GET'], async () => serveDemo(req, res, headers));
      if (path === DISCOVERY_PATH) return await this.only(method, ['GET', 'HEAD'], async () => sendJson(res, 200, discoveryDocument(ctx, req, this.webpush ? { vapidPublicKey: this.webpush.publicKey } : undefined), headers));
      if (path === '/healthz') return await this.only(method, ['GET', 'HEAD'], async () => sendJson(res, 200, { status: 'ok' }, headers));
      if (path === '/readyz') {
        return await this.only(method, ['GET', 'HEAD'], async () => {
          const why = ctx.unready?.();
          if (ctx.draining()) sendJson(res, 503, { status: 'draining' }, { ...headers, 'Retry-After': '5' });
          else if (why) sendJson(res, 503, { status: 'unavailable', reason: why }, { ...headers, 'Retry-After': '5' });
          else sendJson(res, 200, { status: 'ready' }, headers);
        });
      }
      if (path === '/metrics') {
        return await this.only(method, ['GET'], async () => {
          if (this.metricsToken && !bearerMatches(req.headers.authorization, this.metricsToken)) {
            throw new OmnipushError('unauthorized', 'metrics need "Authorization: Bearer <metrics.token>"');
          }
          const text = await ctx.metrics.registry.metrics();
          res.writeHead(200, { 'Content-Type': ctx.metrics.registry.contentType, 'Cache-Control': 'no-store' });
          res.end(text);
        });
      }
      throw new OmnipushError('not_found', `no route for ${method} ${path}`);
    } catch (e) {
      if (e instanceof ClientAborted) {
        ctx.log.debug({ path }, e.message);
        res.destroy();
        return;
      }
      if (!(e instanceof OmnipushError)) ctx.log.error({ err: e, path }, 'request failed');
      sendError(res, e, headers);
    }
  }

  private async only(method: string, allowed: string[], run: () => Promise<void>): Promise<void> {
    if (!allowed.includes(method)) throw notAllowed(method, allowed);
    await run();
  }

  private preflight(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    res.writeHead(204, {
      ...headers,
      'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
      'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? 'Authorization, Content-Type, Last-Event-ID',
      'Access-Control-Max-Age': '600',
    });
    res.end();
  }

  /** Stops accepting connections and ends streams and held polls. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.sse.close();
    this.longpoll.close();
    this.websocket.close();
    this.server.closeIdleConnections();
    // give ended streams a moment to flush, then cut whatever is left
    const deadline = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, 2000);
    deadline.unref();
    await closed;
    clearTimeout(deadline);
  }
}

function notAllowed(method: string, allowed: string[]): OmnipushError {
  return new OmnipushError('method_not_allowed', `${method} is not allowed here; use ${allowed.join(' or ')}`);
}

const PUBLISH_PATH = '/v1/publish';
/**
 * The URL of a bare `POST /v1/publish`, parsed once: no handler changes a request's URL, and
 * parsing it anew was a tenth of the route's own work.
 */
const PUBLISH_URL = new URL(PUBLISH_PATH, 'http://localhost');

/** The route label of a response, for the request counter. */
const ROUTE = Symbol('omnipush.route');
type RoutedResponse = ServerResponse & { [ROUTE]?: string };

const PLACE = Symbol('omnipush.preAuthPlace');
/** In place of a pre-auth place: the connection is idle between requests on node's keep-alive clock. */
const KEEP_ALIVE = Symbol('omnipush.keepAlive');
type PlacedSocket = Socket & { [PLACE]?: PreAuthPlace | typeof KEEP_ALIVE };

/** A request head was read whole: its connection leaves the pre-auth pool (shared listener, no closure per request). */
function headRead(req: { socket: Socket }): void {
  const s = req.socket as PlacedSocket;
  const place = s[PLACE];
  if (place) {
    s[PLACE] = undefined;
    if (place === KEEP_ALIVE) s.setTimeout(0);
    else place.leave();
  }
}

/** Compares a presented `Authorization: Bearer` value with the expected token in constant time. */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m) return false;
  const got = Buffer.from(m[1]);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** `/v1/topics/a/b%2Fc` → `a/b/c`; every segment is percent-decoded. */
function decodeTopicPath(raw: string): string {
  try {
    return raw.split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new OmnipushError('invalid_topic', 'topic in the path is not valid percent-encoding');
  }
}

const POLL_PATH = '/v1/poll';
const ROUTES = ['/v1/sse', POLL_PATH, '/v1/publish', '/v1/history', '/v1/ack', '/v1/receipts', '/v1/presence', '/v1/presence/stats', '/v1/webpush/vapid-public-key', '/v1/webpush/sw.js', DISCOVERY_PATH, '/healthz', '/readyz', '/metrics'];

function routeLabel(path: string): string {
  if (path.startsWith('/v1/topics/')) return '/v1/topics';
  if (path.startsWith(CLIENT_PREFIX)) return '/v1/client';
  if (path.startsWith('/v1/admin/')) return '/v1/admin';
  if (path.startsWith(CONSOLE_PATH)) return CONSOLE_PATH;
  if (path.startsWith('/v1/webpush/subscriptions')) return '/v1/webpush/subscriptions';
  // the constant, not the request's own copy of it: a stream keeps its label for its whole life
  return ROUTE_LABELS.get(path) ?? 'other';
}

const ROUTE_LABELS = new Map(ROUTES.map((r) => [r, r]));
