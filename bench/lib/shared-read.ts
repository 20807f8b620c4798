/**
 * One receive buffer for every socket of a load generator (node's `onread` option): each read
 * lands in it and is handled at once, so nothing is allocated per read and no stream machinery
 * runs. A handler that keeps unfinished bytes must copy them (`carry`), since the next read on any
 * socket overwrites the buffer.
 */
const SHARED = Buffer.allocUnsafe(256 * 1024);

export function sharedRead(onBytes: (chunk: Buffer) => void): { buffer: Buffer; callback: (n: number, buf: Buffer) => boolean } {
  return {
    buffer: SHARED,
    callback: (n, buf) => {
      onBytes(buf.subarray(0, n));
      return true;
    },
  };
}

export const EMPTY = Buffer.alloc(0);

/** `buf[off..]` as bytes of its own (empty when nothing is left), safe to keep past this read. */
export function carry(buf: Buffer, off: number): Buffer {
  return off >= buf.length ? EMPTY : Buffer.from(buf.subarray(off));
}
