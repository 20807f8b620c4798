import type { Socket } from 'node:net';
import { SocketWriter, type SocketWriterOwner } from '../../wire/socket-writer.js';
import { wsFrame, WS_BINARY } from '../../wire/ws-frame-header.js';
import { PlainDoorSocket, type DoorSocketOwner } from '../../wire/ws-plain-socket.js';
import { MqttProtocolError, RC } from './reason-codes.js';

/** The byte pipe under an MQTT connection: TCP, TLS or a WebSocket. Writes are batched per tick. */
export interface Link {
  /** `now`: see {@link SocketWriter.write}. */
  write(buf: Buffer, now?: boolean): boolean;
  /** Stops reading from the peer (TCP flow control holds back what it sends); data already read may still come. */
  pause(): void;
  /** Reads again after {@link pause}. */
  resume(): void;
  /** Flushes what is queued, then closes. */
  end(): void;
  destroy(): void;
  readonly remote: string;
  /** The peer's IP address alone (quotas count by it). */
  readonly address: string | undefined;
}

/** After a link's close: a peer that never reads (or never answers the close) would hold the socket open. */
function cutLater(socket: Socket): void {
  setTimeout(() => socket.destroy(), 2000).unref();
}

/**
 * TCP or TLS: packets straight to the socket, batched per tick. It is its own writer (a subclass
 * rather than a second object per connection), and the counting callback is the transport's: no
 * closure per connection.
 */
class SocketLink extends SocketWriter implements Link, SocketWriterOwner {
  constructor(
    socket: Socket,
    maxQueueBytes: number,
    private readonly onOverflow: () => void,
  ) {
    super(socket, maxQueueBytes, null);
  }

  /** `address:port`, or `closed` once the socket is gone (node's cached peer address is not kept: 56 B per connection). */
  get remote(): string {
    const a = this.socket.remoteAddress;
    return a === undefined ? 'closed' : `${a}:${this.socket.remotePort}`;
  }

  get address(): string | undefined {
    return this.socket.remoteAddress;
  }

  /** The socket holds more unsent bytes than allowed: it is cut (nothing more can be written). */
  overflowed(): void {
    this.onOverflow();
    this.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    this.close(true);
    this.socket.end();
    cutLater(this.socket);
  }

  destroy(): void {
    this.close(false);
    this.socket.destroy();
  }
}

/** `onOverflow` counts a connection cut for holding too many unsent bytes; the link cuts it. */
export function socketLink(socket: Socket, maxQueueBytes: number, onOverflow: () => void): Link {
  return new SocketLink(socket, maxQueueBytes, onOverflow);
}

/** What a WebSocket link tells the MQTT connection it carries. */
export interface LinkReader {
  onData(chunk: Buffer): void;
  fail(e: unknown): void;
  onClosed(): void;
}

/**
 * MQTT over WebSocket: after `ws`'s handshake the socket is read and written by the door's own
 * {@link PlainDoorSocket}, as on the WebSocket door. Each packet goes out as one binary frame
 * through the connection's bounded queue (a tick's frames in one write), in order with the pongs
 * the client's pings are owed; the client's binary messages are fed to the MQTT framer.
 */
export class WsLink implements Link, DoorSocketOwner {
  private readonly ws: PlainDoorSocket;
  /** Set by {@link start}: the connection is made with its link. */
  private reader: LinkReader | null = null;
  readonly remote: string;

  constructor(
    private readonly socket: Socket,
    maxMessageBytes: number,
    maxQueueBytes: number,
    private readonly onOverflow: () => void,
    /** the client's, through trusted proxies (the upgrade request's X-Forwarded-For) */
    readonly address: string | undefined,
  ) {
    this.ws = new PlainDoorSocket(socket, maxMessageBytes, maxQueueBytes);
    this.ws.attach(this);
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }

  /** Starts reading for `reader`: `head` (bytes that came with the upgrade request) first, then the socket. */
  start(reader: LinkReader, head: Buffer): void {
    this.reader = reader;
    this.ws.start(head);
  }

  write(buf: Buffer, now?: boolean): boolean {
    return this.ws.writer.write(wsFrame(WS_BINARY, buf), now);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** A close frame after what is queued; the socket ends when the client answers it, or after 2 s. */
  end(): void {
    this.ws.close(1000);
    cutLater(this.socket);
  }

  destroy(): void {
    this.ws.writer.close(false);
    this.ws.terminate();
  }

  onFrame(data: Buffer, isBinary: boolean): void {
    if (isBinary) this.reader?.onData(data);
    else this.reader?.fail(new MqttProtocolError(RC.malformed, 'MQTT over WebSocket uses binary frames'));
  }

  onPong(): void {
    /* MQTT has its own keepalive: the server sends no pings here */
  }

  onSocketClosed(): void {
    this.reader?.onClosed();
  }

  onProtocolError(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  overflowed(): void {
    this.onOverflow();
    this.destroy();
  }
}
