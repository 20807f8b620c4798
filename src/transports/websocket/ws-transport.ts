import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { OmnipushError } from '../../core/errors.js';
import { DENY_ALL, type Principal } from '../../core/grants.js';
import { errorBody, statusFor } from '../../wire/http-respond.js';
import { requestToken } from '../../wire/http-request.js';
import { clientIdOf } from '../../core/presence-info.js';
import type { TransportContext } from '../context.js';
import type { PreAuthPlace } from '../pre-auth-pool.js';
import { CLOSE, WsConnection } from './ws-connection.js';
import { DoorSocket, type DoorWire } from './ws-socket.js';
import { HandshakeOnly, PlainDoorSocket } from '../../wire/ws-plain-socket.js';
import { BusySweep } from '../busy-sweep.js';

export const WS_PATH = '/v1/ws';
/**
 * Sweep slices: each tick visits one slice, so a full round of pings is spread over the interval.
 * Fine-grained: with 16, a slice of 10k sockets was 625 pings and as many pongs to read, ~10 ms of
 * work that held back a publish arriving meanwhile; 128 slices (one every ~234 ms at the default
 * 30 s) make it ~80 at a time.
 */
const SLICES = 128;

/**
 * `GET /v1/ws` — the WebSocket door (docs/websocket.md), on the HTTP server's `upgrade` event.
 * Optional echo endpoint (`websocket.echoPath`) for conformance suites.
 */
export class WebSocketTransport {
  private readonly wss: WebSocketServer;
  private readonly echo: WebSocketServer | null;
  private readonly slices: Array<Set<WsConnection>> = Array.from({ length: SLICES }, () => new Set());
  private nextSlice = 0;
  private sweepAt = 0;
  private readonly pings: BusySweep;
  private count = 0;

  constructor(private readonly ctx: TransportContext) {
    const cfg = ctx.config.websocket;
    const common = { noServer: true, maxPayload: cfg.maxFrameBytes, perMessageDeflate: cfg.perMessageDeflate, clientTracking: false } as const;
    // without permessage-deflate, `ws` does the handshake and the door reads and writes frames itself
    this.wss = new WebSocketServer({ ...common, WebSocket: cfg.perMessageDeflate ? DoorSocket : HandshakeOnly });
    this.echo = cfg.echoPath ? new WebSocketServer(common) : null;
    this.pings = new BusySweep(() => this.sweep(), (cfg.pingInterval * 1000) / SLICES);
  }

  get connectionCount(): number {
    return this.count;
  }

  /** Claims an upgrade request; returns false when the path is not ours. */
  handles(path: string): boolean {
    return path === WS_PATH || (this.echo !== null && path === this.ctx.config.websocket.echoPath);
  }

  /** Resolves true when the socket became one of this door's connections: the door then closes it at shutdown. */
  async upgrade(req: IncomingMessage, socket: Socket, head: Buffer, url: URL): Promise<boolean> {
    socket.on('error', destroySocket);
    if (this.echo && url.pathname === this.ctx.config.websocket.echoPath) {
      this.echo.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', terminateSocket);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
      return false;
    }
    const { ctx } = this;
    let principal: Principal;
    let place: PreAuthPlace | null = null;
    let conn: WsConnection | undefined;
    let clientId: string | undefined;
    const address = ctx.addresses.of(req);
    try {
      clientId = clientIdOf(url.searchParams.get('client'));
      if (ctx.draining()) throw new OmnipushError('shutting_down', 'server is shutting down; retry shortly');
      const token = requestToken(req, url, ctx.config.auth.cookieName);
      try {
        principal = await ctx.authenticate(req, url, 'websocket');
      } catch (e) {
        // no token on the upgrade: the socket may still send an `auth` message first (a 403 from
        // the app's connect hook, or a hook that failed, is final)
        if (token !== undefined || !(e instanceof OmnipushError) || e.code !== 'unauthorized') throw e;
        principal = { id: 'unauthenticated', kind: 'anonymous', grants: DENY_ALL };
        // it waits in the pre-auth pool, not in the budget of authenticated connections
        place = ctx.preAuth.enter(address, ctx.config.websocket.authTimeout * 1000, (why) => {
          if (conn) conn.authWindowEnded(why);
          else socket.destroy();
        });
        if (!place) throw new OmnipushError('too_many_connections', 'too many unauthenticated connections from your address; try again later');
        const held = place;
        socket.once('close', () => held.leave());
      }
      // a socket without credentials yet is no connection of anyone: counted once it authenticates
      if (!place) {
        ctx.quotas.checkConnection(principal, address, await ctx.quotas.connectionsElsewhere(principal));
        ctx.connections.acquire();
      }
    } catch (e) {
      refuse(socket, e, ctx.commonHeaders(req));
      return false;
    }
    if (socket.destroyed) {
      if (place) place.leave();
      else ctx.connections.release();
      return false;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      conn = this.accept(ws, socket, head, principal, place, address, clientId);
    });
    // without a client check `ws` completes the upgrade at once: no connection now means it refused
    // the handshake (answered 400, or the client had gone), and the slot taken for it is given back
    if (conn === undefined) {
      if (place) place.leave();
      else ctx.connections.release();
      return false;
    }
    return true;
  }

  private accept(ws: WebSocket, socket: Socket, head: Buffer, principal: Principal, place: PreAuthPlace | null, address: string, clientId: string | undefined): WsConnection {
    const { ctx } = this;
    // the socket gets its own error listener (ws's, or the plain socket's, both close it): a second one held a list
    socket.off('error', destroySocket);
    socket.setNoDelay(true);
    const slice = this.nextSlice++ % SLICES;
    const plain = ws instanceof DoorSocket ? null : new PlainDoorSocket(socket, ctx.config.websocket.maxFrameBytes, ctx.config.limits.maxQueueBytes);
    const wire: DoorWire = plain ?? (ws as DoorSocket);
    const conn = new WsConnection(wire, plain?.writer ?? null, principal, ctx, this, slice, address);
    conn.clientId = clientId;
    conn.authPlace = place;
    conn.budgeted = place === null;
    if (place === null) conn.register();
    this.slices[slice].add(conn);
    this.pings.count(++this.count);
    ctx.metrics.connections.inc({ transport: 'websocket' });
    plain?.start(head);
    return conn;
  }

  /** A connection's socket closed (ws emits `close` once). */
  forget(conn: WsConnection): void {
    this.slices[conn.slice].delete(conn);
    this.pings.count(--this.count);
    this.ctx.metrics.connections.dec({ transport: 'websocket' });
    if (conn.budgeted) {
      conn.budgeted = false;
      this.ctx.connections.release();
    }
    conn.onClosed();
  }

  /** One slice per tick: pings and dead-peer drops (expiry and the auth window have their own timers). */
  private sweep(): void {
    const slice = this.slices[this.sweepAt++ % SLICES];
    for (const c of slice) c.sweep();
  }

  /** Closes every socket with 1001 (shutdown). */
  close(): void {
    this.pings.close();
    for (const s of this.slices) for (const c of s) c.end(CLOSE.goingAway, 'server shutting down');
  }
}

// Shared listeners (`this` is the emitter): no closure per socket.
function destroySocket(this: Socket): void {
  this.destroy();
}

function terminateSocket(this: WebSocket): void {
  this.terminate();
}

/** Answers a refused upgrade with an HTTP error and a JSON body, then closes the socket. */
function refuse(socket: Socket, e: unknown, headers: Record<string, string>): void {
  const err = e instanceof OmnipushError ? e : new OmnipushError('internal', 'internal error');
  const status = statusFor(err.code);
  const body = JSON.stringify(errorBody(err));
  let head = `HTTP/1.1 ${status} ${err.code}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`;
  if (status === 401) head += 'WWW-Authenticate: Bearer realm="omnipush"\r\n';
  if (status === 503) head += 'Retry-After: 5\r\n';
  if (status === 429) head += `Retry-After: ${Math.max(1, Math.ceil(Number(err.details?.retryAfter ?? 1)))}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (socket.writable) socket.end(`${head}\r\n${body}`);
  else socket.destroy();
}
