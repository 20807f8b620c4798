import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { SocketWriter, type SocketWriterOwner } from '../../wire/socket-writer.js';
import { wsFrameHeader, WS_BINARY } from '../../wire/ws-frame-header.js';

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
    // a peer that never reads would hold the socket open
    const s = this.socket;
    setTimeout(() => s.destroy(), 2000).unref();
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

/** One unmasked binary WebSocket frame (RFC 6455 §5.2) holding a tick's worth of packets. */
export function binaryFrame(payload: Buffer): Buffer[] {
  return [wsFrameHeader(WS_BINARY, payload.length), payload];
}

/**
 * MQTT over WebSocket: `ws` parses what the client sends; what we send is framed by us and written
 * to the raw socket (as the WebSocket door does), one binary message per tick.
 */
export function wsLink(ws: WebSocket, socket: Socket, maxQueueBytes: number, onOverflow: () => void, address: string): Link {
  const writer = new SocketWriter(
    socket,
    maxQueueBytes,
    {
      overflowed() {
        onOverflow();
        link.destroy();
      },
    },
    binaryFrame,
  );
  const link: Link = {
    write: (buf, now) => writer.write(buf, now),
    // ws stops reading the socket; messages of data it has already read may still be emitted
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    end() {
      writer.close(true);
      ws.close(1000);
      setTimeout(() => ws.terminate(), 2000).unref();
    },
    destroy() {
      writer.close(false);
      ws.terminate();
    },
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
    // the client's, through trusted proxies (the upgrade request's X-Forwarded-For)
    address,
  };
  return link;
}
