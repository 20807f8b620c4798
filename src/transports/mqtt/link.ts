import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { SocketWriter } from '../../wire/socket-writer.js';

/** The byte pipe under an MQTT connection: TCP, TLS or a WebSocket. Writes are batched per tick. */
export interface Link {
  write(buf: Buffer): boolean;
  /** Flushes what is queued, then closes. */
  end(): void;
  destroy(): void;
  readonly remote: string;
}

/** TCP or TLS: packets straight to the socket through the per-tick writer. */
class SocketLink implements Link {
  private readonly writer: SocketWriter;

  constructor(
    private readonly socket: Socket,
    maxQueueBytes: number,
    onOverflow: () => void,
  ) {
    this.writer = new SocketWriter(socket, maxQueueBytes, onOverflow);
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  write(buf: Buffer): boolean {
    return this.writer.write(buf);
  }

  end(): void {
    this.writer.close(true);
    this.socket.end();
    // a peer that never reads would hold the socket open
    const s = this.socket;
    setTimeout(() => s.destroy(), 2000).unref();
  }

  destroy(): void {
    this.writer.close(false);
    this.socket.destroy();
  }
}

export function socketLink(socket: Socket, maxQueueBytes: number, onOverflow: () => void): Link {
  return new SocketLink(socket, maxQueueBytes, onOverflow);
}

/** One unmasked binary WebSocket frame (RFC 6455 §5.2) holding a tick's worth of packets. */
export function binaryFrame(payload: Buffer): Buffer[] {
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([0x82, n]);
  else if (n < 65536) head = Buffer.from([0x82, 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x82;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return [head, payload];
}

/**
 * MQTT over WebSocket: `ws` parses what the client sends; what we send is framed by us and written
 * to the raw socket (as the WebSocket door does), one binary message per tick.
 */
export function wsLink(ws: WebSocket, socket: Socket, maxQueueBytes: number, onOverflow: () => void): Link {
  const writer = new SocketWriter(socket, maxQueueBytes, onOverflow, binaryFrame);
  return {
    write: (buf) => writer.write(buf),
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
  };
}
