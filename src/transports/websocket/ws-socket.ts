import { WebSocket } from 'ws';
import type { DoorSocketOwner } from '../../wire/ws-plain-socket.js';

/**
 * A WebSocket as a connection uses it: `ws`'s ({@link DoorSocket}, with permessage-deflate on)
 * or the door's own (`PlainDoorSocket`).
 */
export interface DoorWire {
  attach(owner: DoorSocketOwner): void;
  /** A text message, in order with everything sent before it. */
  send(text: string): void;
  ping(): void;
  /** Starts the closing handshake. */
  close(code: number, reason: string): void;
  /** Cuts the socket. */
  terminate(): void;
}

/** `ws`'s receiver, as far as this file looks into it. */
interface ReceiverChunks {
  _buffers?: unknown;
}

/**
 * The door's `WebSocket`: its events go straight to its connection instead of through listeners.
 * `ws` keeps listeners in a dictionary-mode object (~50 bytes per event name), so four listeners
 * on each of 10k idle sockets cost ~2 MB, and a socket must never be left without an `'error'`
 * handler (an unhandled `'error'` would throw). Here `'error'` always ends the socket.
 */
export class DoorSocket extends WebSocket implements DoorWire {
  private owner: DoorSocketOwner | null = null;

  attach(owner: DoorSocketOwner): void {
    this.owner = owner;
  }

  // ws emits with at most two arguments; fixed parameters keep an incoming frame free of a rest array
  override emit(event: string | symbol, a?: unknown, b?: unknown): boolean {
    const owner = this.owner;
    switch (event) {
      case 'message':
        if (owner) {
          owner.onFrame(a as Buffer, b as boolean);
          this.releaseChunkList();
        }
        return true;
      case 'pong':
        owner?.onPong();
        return true;
      case 'close':
        owner?.onSocketClosed();
        return true;
      case 'error':
        this.terminate();
        return true;
      default:
        return super.emit(event, a, b);
    }
  }

  /**
   * `ws`'s receiver queues incoming chunks in an array that keeps the capacity it grew to (~150
   * bytes) after being emptied: an idle socket that sent one `subscribe` would hold it for life.
   * Once a message is read whole and nothing else waits, a fresh empty array replaces it.
   */
  private releaseChunkList(): void {
    const r = (this as unknown as { _receiver?: ReceiverChunks })._receiver;
    if (r && Array.isArray(r._buffers) && r._buffers.length === 0) r._buffers = [];
  }
}
