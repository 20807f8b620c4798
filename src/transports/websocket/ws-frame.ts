import type { WireFormat } from '../../core/encoded.js';
import type { StoredMessage } from '../../core/message.js';
import { toMessageJson } from '../../wire/json-message.js';

/** An unmasked, final text frame (RFC 6455 §5.2) as a server sends it. */
export function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([0x81, n]);
  else if (n < 65536) head = Buffer.from([0x81, 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload], head.length + n);
}

/** The text of a `message` frame: the shared JSON message shape with `type` first. */
export function messageText(m: StoredMessage): string {
  return JSON.stringify({ type: 'message', ...toMessageJson(m) });
}

/** A delivery framed once, complete with its WebSocket header, shared by every subscriber. */
export const WS_MESSAGE_FRAME: WireFormat<Buffer> = {
  name: 'ws-frame',
  encode: (m) => textFrame(Buffer.from(messageText(m))),
};

/** The same text without framing, for sockets where `ws` must frame (permessage-deflate on). */
export const WS_MESSAGE_TEXT: WireFormat<string> = {
  name: 'ws-text',
  encode: messageText,
};
