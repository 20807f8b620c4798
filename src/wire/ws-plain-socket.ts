import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { SocketWriter, type SocketWriterOwner } from './socket-writer.js';
import { wsFrame, WS_TEXT } from './ws-frame-header.js';
import { WsFrameReader } from './ws-frame-reader.js';

const WS_CLOSE = 0x8;
const WS_PONG = 0xa;
/** An empty ping, the same bytes for every socket. */
const PING_FRAME = Buffer.from([0x89, 0x00]);

/** What a socket tells its connection; the connection sets itself with `attach`. */
export interface DoorSocketOwner {
  onFrame(data: Buffer, isBinary: boolean): void;
  onPong(): void;
  onSocketClosed(): void;
  /** The client broke the protocol: the connection ends with `code` (1002, 1007, 1009). */
  onProtocolError(code: number, reason: string): void;
  /** Its outgoing queue passed its bound. */
  overflowed(): void;
}

/** The door's reader on a socket, for the shared socket listeners below. */
const READER = Symbol('omnipush.wsReader');
type ReadSocket = Socket & { [READER]?: PlainDoorSocket };

/**
 * `ws` for the handshake only: `WebSocketServer.handleUpgrade` checks the request and answers
 * 101, then hands the socket to `setSocket`, which here leaves it alone for a
 * {@link PlainDoorSocket} (the object itself is dropped once the upgrade is done).
 */
export class HandshakeOnly extends WebSocket {
  setSocket(): void {
    /* the door reads and writes the socket itself */
  }
}

/**
 * A door socket without permessage-deflate (the WebSocket door's, and MQTT over WebSocket's):
 * frames are read by {@link WsFrameReader} and every frame we send (messages, packets, replies,
 * pings, pongs) goes through one {@link SocketWriter}, in order;
 * only the close frame is written straight to the socket, after what was queued. An idle socket
 * holds this object and the writer, where `ws` holds a `WebSocket`, a `Receiver` (a `Writable`
 * with its state and lists) and a `Sender`: ~1 KB of heap against ~0.2 KB.
 */
export class PlainDoorSocket extends WsFrameReader implements SocketWriterOwner {
  readonly writer: SocketWriter;
  private owner: DoorSocketOwner | null = null;
  private closeSent = false;

  constructor(
    private readonly socket: Socket,
    protected readonly maxPayload: number,
    maxQueueBytes: number,
  ) {
    super();
    this.writer = new SocketWriter(socket, maxQueueBytes, this);
  }

  attach(owner: DoorSocketOwner): void {
    this.owner = owner;
  }

  /** Starts reading: `head` (bytes that came with the upgrade request) first, then the socket. */
  start(head: Buffer): void {
    const socket = this.socket as ReadSocket;
    socket[READER] = this;
    socket.setTimeout(0);
    socket.on('error', socketError);
    socket.on('close', socketClosed);
    socket.on('end', socketEnded);
    if (head.length > 0) this.read(head);
    // bytes that came while the upgrade was being authenticated wait in the socket, after `head`
    socket.on('data', socketData);
  }

  send(text: string): void {
    this.writer.write(wsFrame(WS_TEXT, Buffer.from(text)));
  }

  ping(): void {
    this.writer.write(PING_FRAME);
  }

  /** Sends a close frame after what was queued (1005: one without a code); the socket ends once both sides sent one. */
  close(code: number, reason: string | Buffer = ''): void {
    if (this.closeSent) return;
    this.closeSent = true;
    this.writer.close(true);
    if (!this.socket.writable) return;
    this.socket.write(closeFrame(code, typeof reason === 'string' ? Buffer.from(reason) : reason));
    // their close came already, or they broke the protocol: nothing more will be read
    if (this.stopped) this.socket.end();
  }

  terminate(): void {
    this.socket.destroy();
  }

  overflowed(): void {
    this.owner?.overflowed();
  }

  protected onMessage(data: Buffer, isBinary: boolean): void {
    this.owner?.onFrame(data, isBinary);
  }

  protected onPing(payload: Buffer): void {
    this.writer.write(wsFrame(WS_PONG, payload));
  }

  protected onPong(): void {
    this.owner?.onPong();
  }

  protected onClose(code: number, reason: Buffer): void {
    if (this.closeSent) this.socket.end();
    // the same code and reason back (RFC 6455 §5.5.1), as `ws` answers
    else this.close(code, reason);
  }

  protected onProtocolError(code: number, message: string): void {
    if (this.owner) this.owner.onProtocolError(code, message);
    else this.close(code, message);
  }

  /** The client half-closed (the HTTP server allows half-open sockets): nothing more to read or send. */
  ended(): void {
    this.halt();
    this.writer.close(false);
    this.socket.end();
  }

  /** The socket closed: its connection is told once. */
  closed(): void {
    this.halt();
    this.writer.close(false);
    this.owner?.onSocketClosed();
  }
}

/** A close frame: `code` and `reason` (cut to the 123 bytes a control frame has room for), or no payload for 1005. */
function closeFrame(code: number, reason: Buffer): Buffer {
  if (code === 1005) return Buffer.from([0x80 | WS_CLOSE, 0]);
  const text = reason.length > 123 ? reason.subarray(0, 123) : reason;
  const body = Buffer.allocUnsafe(2 + text.length);
  body.writeUInt16BE(code, 0);
  text.copy(body, 2);
  return wsFrame(WS_CLOSE, body);
}

// Shared listeners (`this` is the socket): no closure per socket.
function socketData(this: ReadSocket, chunk: Buffer): void {
  this[READER]?.read(chunk);
}

function socketClosed(this: ReadSocket): void {
  const reader = this[READER];
  this[READER] = undefined;
  reader?.closed();
}

function socketEnded(this: ReadSocket): void {
  if (this[READER]) this[READER].ended();
  else this.end();
}

function socketError(this: ReadSocket): void {
  this.destroy();
}
