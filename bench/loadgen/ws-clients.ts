/**
 * Load generator: N raw WebSocket clients over node:net (a light client, so the server, not the
 * load generator, is what gets measured). Modes: `omnipush` (our /v1/ws protocol: subscribe, then
 * JSON message frames), `ws` (plain text frames from the ceiling peer), `socketio` (Engine.IO 4 /
 * Socket.IO 4 over WebSocket: `40` to join, `42[...]` events, `2`→`3` pings). Each message carries
 * `<ms>|` in its text; latency is measured from it.
 * IPC: {cmd:'connect', url, mode, topic, count, localAddress?, token?, countRefused?} · {cmd:'stats', reset} · {cmd:'close'}.
 * With `countRefused`, `connect` answers how many clients got in and how many were refused or cut
 * before they were ready; without it a refused client fails the generator (as a scenario that
 * expects all of them in wants).
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { stampWithin } from '../lib/histogram.js';
import { statsReply, tally } from '../lib/tally.js';
import { carry, EMPTY, sharedRead } from '../lib/shared-read.js';

type Mode = 'omnipush' | 'ws' | 'socketio';

const sockets: Socket[] = [];

/** A masked client text frame (RFC 6455 §5.3). */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff]);
  const mask = randomBytes(4);
  for (let i = 0; i < n; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, payload]);
}

/** Counts a delivered frame and its latency, read off the bytes (no string per message). */
function record(buf: Buffer, start: number, end: number): void {
  tally.delivered++;
  if (!tally.timing) return;
  const ts = stampWithin(buf, start, end);
  if (ts > 0) tally.hist.add(Date.now() - ts);
}

function openOne(url: URL, mode: Mode, topic: string, localAddress?: string, token?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // a source address of its own per generator: one address pair has only ~28k ephemeral ports
    const s = connect({ port: Number(url.port), host: url.hostname, localAddress, onread: sharedRead((chunk) => onBytes(chunk)) });
    s.setNoDelay(true);
    sockets.push(s);
    let buf: Buffer = EMPTY;
    let upgraded = false;
    let ready = mode === 'ws';
    const path = mode === 'socketio' ? '/socket.io/?EIO=4&transport=websocket' : token ? `/v1/ws?access_token=${encodeURIComponent(token)}` : '/v1/ws';
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`);
    });
    const onText = (buf: Buffer, start: number, end: number) => {
      // once subscribed, a text frame is a delivery: counted from its bytes, the hot path
      if (ready && (mode !== 'socketio' || (buf[start] === 0x34 && buf[start + 1] === 0x32))) return record(buf, start, end);
      const text = buf.toString('latin1', start, end);
      if (mode === 'socketio') {
        if (text === '2') return void s.write(clientFrame('3'));
        if (text.startsWith('0')) return void s.write(clientFrame('40'));
        if (text.startsWith('40')) {
          ready = true;
          return resolve();
        }
        return;
      }
      if (text.includes('"subscribed"')) {
        ready = true;
        resolve();
      } else if (text.includes('"error"')) reject(new Error(text));
    };
    const onBytes = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return void (buf = carry(buf, 0));
        if (!buf.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) {
          reject(new Error(`upgrade refused: ${buf.subarray(0, 60).toString()}`));
          return void s.destroy();
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
        if (mode === 'omnipush') s.write(clientFrame(JSON.stringify({ type: 'subscribe', id: 1, topics: [topic], since: 'now' })));
        if (mode === 'ws') resolve();
      }
      let off = 0;
      while (buf.length - off >= 2) {
        const b0 = buf[off];
        let len = buf[off + 1] & 0x7f;
        let hdr = 2;
        if (len === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (len === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        if (buf.length - off < hdr + len) break;
        const opcode = b0 & 0x0f;
        if (opcode === 1) onText(buf, off + hdr, off + hdr + len);
        else if (opcode === 9) s.write(Buffer.from([0x8a, 0x80, 0, 0, 0, 0])); // pong, empty masked payload
        off += hdr + len;
      }
      buf = carry(buf, off);
    };
    s.on('error', () => undefined);
    s.on('close', () => {
      tally.closed++;
      if (!ready) reject(new Error('closed before ready'));
    });
  });
}

process.on('message', async (m: { id: number; cmd: string; url?: string; mode?: Mode; topic?: string; count?: number; reset?: boolean; hist?: boolean; timing?: boolean; localAddress?: string; token?: string; countRefused?: boolean }) => {
  let result: unknown = null;
  if (m.cmd === 'connect') {
    const url = new URL(m.url!);
    const batch = 200;
    let failed = 0;
    for (let i = 0; i < m.count!; i += batch) {
      const n = Math.min(batch, m.count! - i);
      await Promise.all(Array.from({ length: n }, () => m.countRefused ? openOne(url, m.mode!, m.topic!, m.localAddress, m.token).catch(() => void failed++) : openOne(url, m.mode!, m.topic!, m.localAddress, m.token)));
    }
    result = { connected: sockets.length - failed, failed };
  } else if (m.cmd === 'stats') {
    result = statsReply(m);
  } else if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    result = { ok: true };
  }
  process.send!({ id: m.id, result });
});
