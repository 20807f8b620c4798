import type { WireFormat } from '../../core/encoded.js';
import type { StoredMessage } from '../../core/message.js';
import { toMessageJson } from '../../wire/json-message.js';
import { wsFrame, WS_TEXT } from '../../wire/ws-frame-header.js';

/** The text of a `message` frame: the shared JSON message shape with `type` first. */
export function messageText(m: StoredMessage): string {
  return JSON.stringify({ type: 'message', ...toMessageJson(m) });
}

/** A delivery framed once, complete with its WebSocket header, shared by every subscriber. */
export const WS_MESSAGE_FRAME: WireFormat<Buffer> = {
  name: 'ws-frame',
  encode: (m) => wsFrame(WS_TEXT, Buffer.from(messageText(m))),
};

/** The same text without framing, for sockets where `ws` must frame (permessage-deflate on). */
export const WS_MESSAGE_TEXT: WireFormat<string> = {
  name: 'ws-text',
  encode: messageText,
};
