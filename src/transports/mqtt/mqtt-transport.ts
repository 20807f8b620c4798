import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { WebSocketServer } from 'ws';
import { HandshakeOnly } from '../../wire/ws-plain-socket.js';
import type { UserDirectory } from '../../auth/users.js';
import type { TransportContext } from '../context.js';
import { Broker } from './broker.js';
import { MqttConnection } from './connection.js';
import { socketLink, WsLink, type Link } from './link.js';
import { SysTopics } from './sys-topics.js';

/** How often the sweep runs (keepalive checks, expiry, grouped session writes). */
const SWEEP_MS = 250;

/** The connection a TCP or TLS socket carries, for the listeners every such socket shares. */
const CONN = Symbol('mqttConnection');
type ConnSocket = Socket & { [CONN]: MqttConnection };

// One listener function for every socket, finding its connection on the socket: a closure per
// listener per socket (and the wrapper `once` makes) cost ~0.4 KB per idle connection.
function destroyOnError(this: Socket): void {
  this.destroy();
}

function onSocketData(this: ConnSocket, d: Buffer): void {
  this[CONN].onData(d);
}

function onSocketClose(this: ConnSocket): void {
  this[CONN].onClosed();
}

function pem(v: string): string {
  return v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8');
}

export interface MqttAddresses {
  tcp?: { host: string; port: number };
  tls?: { host: string; port: number };
}

/**
 * The MQTT door (docs/mqtt.md): TCP, TLS and WebSocket listeners in front of one broker.
 */
export class MqttTransport {
  readonly broker: Broker;
  private readonly sys: SysTopics;
  private tcp: Server | null = null;
  private tls: TlsServer | null = null;
  private readonly wss: WebSocketServer;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly ctx: TransportContext,
    users: UserDirectory,
  ) {
    this.broker = new Broker(ctx, users);
    this.sys = new SysTopics(ctx.hub, this.broker);
    ctx.metrics.deliveryCounts.mqtt ??= 0;
    ctx.metrics.connections.set({ transport: 'mqtt' }, 0);
    const broker = this.broker;
    ctx.metrics.mqttSessions = () => ({ connected: broker.live.size, total: broker.sessions.size });
    this.wss = new WebSocketServer({
      noServer: true,
      WebSocket: HandshakeOnly,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    this.timer = setInterval(() => this.broker.sweep(Date.now()), SWEEP_MS);
    this.timer.unref();
  }

  /** Opens the listeners; resolves with their addresses. */
  async listen(): Promise<MqttAddresses> {
    const cfg = this.ctx.config.mqtt;
    const host = cfg.host ?? this.ctx.config.http.host;
    await this.broker.sessions.purgeExpired(Date.now());
    const out: MqttAddresses = {};
    this.tcp = createServer({ noDelay: true }, (s) => this.acceptSocket(s, 'tcp'));
    out.tcp = await listenOn(this.tcp, host, cfg.port);
    if (cfg.tls) {
      const { cert, key } = cfg.tls;
      if (!existsSync(cert) && !cert.includes('-----BEGIN')) throw new Error(`mqtt.tls.cert: ${cert} is neither PEM nor a readable file`);
      // a TLS handshake comes before the pre-auth pool sees the socket: it gets the connect window, not node's 120 s
      const handshakeTimeout = Math.min(cfg.connectTimeout, this.ctx.config.limits.preAuth.timeout) * 1000;
      this.tls = createTlsServer({ cert: pem(cert), key: pem(key), handshakeTimeout }, (s) => this.acceptSocket(s, 'tls'));
      this.tls.on('tlsClientError', () => undefined);
      out.tls = await listenOn(this.tls, host, cfg.tls.port);
    }
    this.sys.start(cfg.sysInterval);
    return out;
  }

  /** Claims a WebSocket upgrade for `/mqtt`. */
  handles(path: string): boolean {
    const p = this.ctx.config.mqtt.wsPath;
    return p !== '' && path === p;
  }

  async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on('error', destroyOnError);
    const address = this.ctx.addresses.of(req);
    // `ws` answers the handshake; the link reads and writes the frames (its reader has its own error listener)
    this.wss.handleUpgrade(req, socket, head, () => {
      socket.off('error', destroyOnError);
      socket.setNoDelay(true);
      const link = new WsLink(socket, this.ctx.config.mqtt.maxPacketBytes + 8, this.ctx.config.limits.maxQueueBytes, this.slow, address);
      const conn = this.open(link, 'ws', address);
      if (!conn) return;
      link.start(conn, head);
    });
  }

  private acceptSocket(socket: Socket, kind: 'tcp' | 'tls'): void {
    this.ctx.metrics.loopDelay.wake();
    socket.on('error', destroyOnError);
    socket.setNoDelay(true);
    const conn = this.open(socketLink(socket, this.ctx.config.limits.maxQueueBytes, this.slow), kind, socket.remoteAddress);
    // reading the address made node cache {address, family, port} on the socket (~0.1 KB per idle
    // connection); the connection keeps the address, and node asks the handle again if need be
    (socket as unknown as { _peername?: unknown })._peername = undefined;
    if (!conn) return;
    (socket as ConnSocket)[CONN] = conn;
    socket.on('data', onSocketData);
    // 'close' comes once: `on` spares the wrapper `once` would make
    socket.on('close', onSocketClose);
  }

  /** Counts a connection whose link was cut for holding more unsent bytes than `limits.maxQueueBytes`. */
  private readonly slow = (): void => {
    this.ctx.metrics.slowConsumerCloses.inc({ transport: 'mqtt' });
  };

  /**
   * A new connection waits for its CONNECT in the pre-auth pool, with `mqtt.connectTimeout` to send
   * it whole; it takes a slot of the connection budget only once authenticated (handleConnect).
   * Null (and the link cut) when its address has too many unauthenticated sockets already.
   */
  private open(link: Link, kind: 'tcp' | 'tls' | 'ws', address: string | undefined): MqttConnection | null {
    const conn = new MqttConnection(this.broker, link, kind);
    const place = this.ctx.preAuth.enter(address ?? '?', this.ctx.config.mqtt.connectTimeout * 1000, () => this.broker.connectWindowEnded(conn));
    if (!place) {
      link.destroy();
      return null;
    }
    conn.place = place;
    this.broker.track(conn);
    return conn;
  }

  /** Ends every connection (0x8B), saves sessions, closes the listeners. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.sys.stop();
    this.tcp?.close();
    this.tls?.close();
    await this.broker.close();
  }
}

function listenOn(server: Server | TlsServer, host: string, port: number): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      if (!a || typeof a === 'string') return reject(new Error('no address'));
      resolve({ host: a.address, port: a.port });
    });
  });
}
