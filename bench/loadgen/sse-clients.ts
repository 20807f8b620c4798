/**
 * Load generator: N raw SSE connections (node:net). Counts `data:` lines and records
 * publish→deliver latency from the timestamp at the start of each payload (`<ms>|...`).
 * Driven over IPC: {cmd:'connect', url, path, count} · {cmd:'stats', reset} · {cmd:'close'}.
 */
import { connect, type Socket } from 'node:net';
import { stampOf } from '../lib/histogram.js';
import { statsReply, tally } from '../lib/tally.js';
import { carry, EMPTY, sharedRead } from '../lib/shared-read.js';

const sockets: Socket[] = [];
const DATA = Buffer.from('data: ');

function openOne(host: string, port: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host, onread: sharedRead((chunk) => onBytes(chunk)) });
    let rest: Buffer = EMPTY;
    let headerDone = false;
    s.setNoDelay(true);
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`));
    const onBytes = (chunk: Buffer) => {
      let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
      if (!headerDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          rest = carry(buf, 0);
          return;
        }
        if (!buf.toString('latin1', 0, 12).startsWith('HTTP/1.1 200')) {
          reject(new Error(`status: ${buf.toString('latin1', 0, 40)}`));
          s.destroy();
          return;
        }
        headerDone = true;
        buf = buf.subarray(end + 4);
        resolve();
      }
      // lines are read off the bytes: no string per message
      const now = tally.timing ? Date.now() : 0;
      let i = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, i);
        if (nl < 0) break;
        if (nl - i > DATA.length && buf.compare(DATA, 0, DATA.length, i, i + DATA.length) === 0) {
          tally.delivered++;
          if (now) {
            const ts = stampOf(buf, i + DATA.length, nl);
            if (ts > 0) tally.hist.add(now - ts);
          }
        }
        i = nl + 1;
      }
      rest = carry(buf, i);
    };
    s.on('error', () => undefined);
    s.on('close', () => {
      tally.closed++;
      if (!headerDone) reject(new Error('closed before headers'));
    });
    sockets.push(s);
  });
}

process.on('message', async (m: { id: number; cmd: string; url?: string; path?: string; count?: number; reset?: boolean; hist?: boolean; timing?: boolean }) => {
  let result: unknown = null;
  if (m.cmd === 'connect') {
    const u = new URL(m.url!);
    const batch = 200;
    for (let i = 0; i < m.count!; i += batch) {
      const n = Math.min(batch, m.count! - i);
      await Promise.all(Array.from({ length: n }, () => openOne(u.hostname, Number(u.port), m.path!)));
    }
    result = { connected: sockets.length };
  } else if (m.cmd === 'stats') {
    result = statsReply(m);
  } else if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    result = { ok: true };
  }
  process.send!({ id: m.id, result });
});
