import { writeSync } from 'node:fs';
import type { Socket } from 'node:net';

/**
 * Per-connection outgoing queue with a byte bound. Writes queued during one tick go out as one
 * socket write at the end of the tick, so a burst of messages costs one syscall per socket.
 * Past the bound (bytes queued here + bytes the socket has not yet handed to the kernel)
 * the owner's `overflowed()` is called once and nothing more is queued.
 */
export interface SocketWriterOwner {
  /** The queue bound was passed; the owner closes its connection. */
  overflowed(): void;
}

export class SocketWriter {
  /** Made at the first write of a tick: an idle connection holds no list. */
  private chunks: Buffer[] | null = null;
  private queued = 0;
  /** In the end-of-tick list already. */
  scheduled = false;
  private dead = false;
  /** ms timestamp of the last write handed to the socket (for heartbeats). */
  lastWriteAt = Date.now();
  /** The socket's libuv handle and its file descriptor, for {@link put}; fd -1: never write past the stream. */
  private readonly handle: unknown;
  private readonly fd: number;

  constructor(
    protected readonly socket: Socket,
    private readonly maxBytes: number,
    // an owner object rather than a callback: a closure per connection costs memory at 10k+ sockets;
    // null when a subclass is its own owner (one object per connection rather than two)
    private readonly owner: SocketWriterOwner | null,
    /** Wraps each flushed block (e.g. chunked transfer framing); identity when absent. */
    private readonly frame?: (block: Buffer) => Buffer | Buffer[],
  ) {
    const handle = (socket as unknown as InternalSocket)._handle;
    this.handle = handle;
    this.fd = directFd(socket, handle);
  }

  get closed(): boolean {
    return this.dead;
  }

  /** Bytes waiting here or in the socket's buffer. */
  get backlog(): number {
    return this.queued + this.socket.writableLength;
  }

  /**
   * Queues `buf`; returns false if the writer is closed or just overflowed. With `now` (the
   * delivery is the only message of its round) and nothing queued, it goes to the socket at once.
   */
  write(buf: Buffer, now = false): boolean {
    if (this.dead) return false;
    if (this.queued + buf.length + this.socket.writableLength > this.maxBytes) {
      this.dead = true;
      this.chunks = null;
      this.queued = 0;
      (this.owner ?? (this as unknown as SocketWriterOwner)).overflowed();
      return false;
    }
    if (now && this.chunks === null) {
      this.lastWriteAt = tickClock();
      // not `destroyed`: that reads the socket's readable state too, one more object per delivery
      // to fetch from memory; `writable` reads only the writable state, as writableLength just did
      if (this.socket.writable) this.send(buf);
      return true;
    }
    (this.chunks ??= []).push(buf);
    this.queued += buf.length;
    // a big burst goes to the kernel now rather than piling up until the end of the tick
    if (this.queued >= EAGER_FLUSH_BYTES) {
      this.flush();
      return true;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      pending.push(this);
      if (pending.length === 1) process.nextTick(flushAll);
    }
    return true;
  }

  /** Writes whatever is queued now. */
  flush(): void {
    if (this.dead || this.queued === 0) return;
    const chunks = this.chunks!;
    const block = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, this.queued);
    this.chunks = null;
    this.queued = 0;
    this.lastWriteAt = tickClock();
    if (!this.socket.writable) return;
    this.send(block);
  }

  private send(block: Buffer): void {
    const framed = this.frame ? this.frame(block) : block;
    if (Array.isArray(framed)) {
      this.socket.cork();
      for (const b of framed) this.socket.write(b);
      this.socket.uncork();
    } else this.put(framed);
  }

  /**
   * Writes `buf` to the socket. When nothing waits in the socket's stream, it goes to the kernel
   * with one write(2) of our own: node's stream write costs ~1 µs of bookkeeping per call, a tenth of
   * a loopback write here, and a fan-out makes one per subscriber. What the kernel does not take
   * (a full send buffer, a partial write) goes through the stream as before, and so does every
   * write after it until the stream has drained, so bytes keep their order. `_handle` is compared
   * too: a socket's fd is closed (and free for the next accept) when its handle is, and node drops
   * `_handle` in the same step.
   */
  private put(buf: Buffer): void {
    const s = this.socket;
    if (this.fd < 0 || s.writableLength !== 0 || s.writableCorked !== 0 || (s as unknown as InternalSocket)._handle !== this.handle) {
      s.write(buf);
      return;
    }
    let n: number;
    try {
      n = writeSync(this.fd, buf);
    } catch {
      // EAGAIN (the send buffer is full) or an error the stream reports and acts on in its own way
      s.write(buf);
      return;
    }
    if (n < buf.length) s.write(buf.subarray(n));
  }

  /**
   * For replays that may outrun the client: flushes, and if the socket still holds more than a
   * quarter of the bound, returns a promise that settles once it has drained (or closed).
   */
  waitForRoom(): Promise<void> | null {
    if (this.dead || this.queued + this.socket.writableLength <= this.maxBytes / 4) return null;
    this.flush();
    if (this.socket.writableLength <= this.maxBytes / 4 || this.socket.destroyed) return null;
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Stops queueing; flushes what is queued first when `flush` is true. */
  close(flush: boolean): void {
    if (flush && !this.dead) this.flush();
    this.dead = true;
    this.chunks = null;
    this.queued = 0;
  }
}

/** What {@link SocketWriter} reads of node's socket beyond its documented API. */
interface InternalSocket {
  _handle: { fd?: number; constructor: { name: string } } | null;
  encrypted?: boolean;
}

/**
 * The fd of a plain TCP socket, or -1: TLS sockets (bytes must go through the cipher), sockets
 * without a handle of their own and platforms without fds (Windows reports -1) use the stream only.
 */
function directFd(socket: Socket, handle: InternalSocket['_handle']): number {
  if ((socket as unknown as InternalSocket).encrypted || handle === null || handle === undefined) return -1;
  if (handle.constructor.name !== 'TCP') return -1;
  const fd = handle.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/**
 * Date.now() read once per tick for every writer's lastWriteAt: heartbeats look at it in seconds,
 * and a clock read per delivery cost ~60 ns of a ~9 µs socket write in a 10k-subscriber burst.
 */
let clock = 0;

function tickClock(): number {
  if (clock === 0) {
    clock = Date.now();
    process.nextTick(resetClock);
  }
  return clock;
}

function resetClock(): void {
  clock = 0;
}

/** Past this many queued bytes a writer flushes at once instead of at the end of the tick. */
const EAGER_FLUSH_BYTES = 64 * 1024;

let pending: SocketWriter[] = [];

function flushAll(): void {
  const list = pending;
  pending = [];
  for (const w of list) {
    w.scheduled = false;
    w.flush();
  }
}
