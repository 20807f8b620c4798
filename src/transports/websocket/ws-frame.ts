import type { WireFormat } from '../../core/encoded.js';
import type { StoredMessage } from '../../core/message.js';
import { toMessageJson } from '../../wire/json-message.js';
import { wsFrameHeader, WS_TEXT } from '../../wire/ws-frame-header.js';

/** An unmasked, final text frame (RFC 6455 §5.2) as a server sends it. */
export function textFrame(payload: Buffer): Buffer {
  const head = wsFrameHeader(WS_TEXT, payload.length);
  return Buffer.concat([head, payload], head.length + payload.length);
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
