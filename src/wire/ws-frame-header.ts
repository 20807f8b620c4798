/** WebSocket opcodes a server writes data with. */
export const WS_TEXT = 0x1;
export const WS_BINARY = 0x2;

/**
 * The header of an unmasked, final frame (RFC 6455 §5.2) as a server sends it, for `length` payload
 * bytes. Doors that write WebSocket frames to the raw socket themselves (the WebSocket door's shared
 * message frames, MQTT over WebSocket) build them with it.
 */
export function wsFrameHeader(opcode: number, length: number): Buffer {
  const first = 0x80 | opcode;
  if (length < 126) return Buffer.from([first, length]);
  if (length < 65536) return Buffer.from([first, 126, length >> 8, length & 0xff]);
  const head = Buffer.alloc(10);
  head[0] = first;
  head[1] = 127;
  head.writeBigUInt64BE(BigInt(length), 2);
  return head;
}

/** A whole unmasked, final frame: the header of {@link wsFrameHeader} and `payload`, in one allocation. */
export function wsFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const h = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(h + n);
  frame[0] = 0x80 | opcode;
  if (h === 2) frame[1] = n;
  else if (h === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(frame, h);
  return frame;
}
