/**
 * Load generator: N raw SSE connections (node:net). Counts `data:` lines and records
 * publish→deliver latency from the timestamp at the start of each payload (`<ms>|...`).
 * Driven over IPC: {cmd:'connect', url, path, count} · {cmd:'stats', reset} · {cmd:'close'}.
 */
import { connect, type Socket } from 'node:net';
import { Histogram } from '../lib/histogram.js';

const sockets: Socket[] = [];
let delivered = 0;
let hist = new Histogram();
let closedByServer = 0;

function openOne(host: string, port: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let rest = '';
    let headerDone = false;
    s.setNoDelay(true);
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`));
    s.on('data', (chunk: string) => {
      let text = rest + chunk;
      if (!headerDone) {
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) {
          rest = text;
          return;
        }
        if (!text.startsWith('HTTP/1.1 200')) {
          reject(new Error(`status: ${text.slice(0, 40)}`));
          s.destroy();
          return;
        }
        headerDone = true;
        text = text.slice(end + 4);
        resolve();
      }
      const now = Date.now();
      let i = 0;
      for (;;) {
        const nl = text.indexOf('\n', i);
        if (nl < 0) break;
        if (text.startsWith('data: ', i)) {
          delivered++;
          const ts = Number(text.slice(i + 6, text.indexOf('|', i)));
          if (ts > 0) hist.add(now - ts);
        }
        i = nl + 1;
      }
      rest = text.slice(i);
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      closedByServer++;
      if (!headerDone) reject(new Error('closed before headers'));
    });
    sockets.push(s);
  });
}

process.on('message', async (m: { id: number; cmd: string; url?: string; path?: string; count?: number; reset?: boolean }) => {
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
    result = { delivered, hist: hist.counts, closed: closedByServer };
    if (m.reset) {
      delivered = 0;
      hist = new Histogram();
    }
  } else if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    result = { ok: true };
  }
  process.send!({ id: m.id, result });
});
