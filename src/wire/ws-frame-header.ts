/** WebSocket opcodes a server writes data with. */
export const WS_TEXT = 0x1;
export const WS_BINARY = 0x2;

/**
 * A whole unmasked, final frame (RFC 6455 §5.2) as a server sends it: header and `payload` in one
 * allocation. Doors that write WebSocket frames to the raw socket themselves (the WebSocket door's
 * shared message frames and replies, MQTT over WebSocket) build them with it.
 */
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
