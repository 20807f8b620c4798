import type { WireFormat } from '../../core/encoded.js';
import type { StoredMessage } from '../../core/message.js';
import { JSON_MESSAGE } from '../../wire/json-message.js';

const LINE_BREAK = /\r\n|\r|\n/;

/**
 * One SSE event block. `data` is split on CR, LF and CRLF into several `data:` lines so that
 * a spec-conformant client rebuilds it (with LF line ends). `id` and `event` must hold no CR, LF
 * or NUL; the hub guarantees that for cursors and event names.
 */
export function sseEvent(data: string, id?: string, event?: string): string {
  let s = '';
  if (id !== undefined) s += `id: ${id}\n`;
  if (event !== undefined) s += `event: ${event}\n`;
  for (const line of data.split(LINE_BREAK)) s += `data: ${line}\n`;
  return s + '\n';
}

/** `data` is the payload as UTF-8 text (the default, what `curl` users expect). */
export const SSE_RAW: WireFormat<Buffer> = {
  name: 'sse-raw',
  encode: (m: StoredMessage) => Buffer.from(sseEvent(m.payload.toString('utf8'), m.cursor, m.event)),
};

/** `data` is the message's JSON envelope (topic, cursor, data or data_base64, properties ...). */
export const SSE_JSON: WireFormat<Buffer> = {
  name: 'sse-json',
  encode: (m: StoredMessage) => {
    const head = `id: ${m.cursor}\n${m.event ? `event: ${m.event}\n` : ''}data: `;
    return Buffer.concat([Buffer.from(head), JSON_MESSAGE.encode(m), Buffer.from('\n\n')]);
  },
};
