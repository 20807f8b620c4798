/**
 * The ceiling for WebSocket fan-out: `ws` with each message framed once and the same frame bytes
 * written to every socket — what no real server can beat, since it does nothing else.
 * With `--batched`, the frames of one publish request are concatenated and written once per socket:
 * the ceiling for a server that batches per socket per tick, as ours does.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { announce, handlePublish } from './publish-endpoint.js';

const server = createServer((req, res) => {
  if (handlePublish(req, res, broadcast)) return;
  res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: '/v1/ws', perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('error', () => ws.terminate()));

/** An unmasked final text frame (RFC 6455 §5.2), as a server sends it. */
function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x81, 127]), bigLength(n)]);
  return Buffer.concat([head, payload]);
}

function bigLength(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

const batched = process.argv.includes('--batched');
let frames: Buffer[] = [];

function writeAll(block: Buffer): void {
  for (const ws of wss.clients) (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(block);
}

function broadcast(data: string): void {
  const frame = textFrame(Buffer.from(data));
  if (!batched) return writeAll(frame);
  frames.push(frame);
  if (frames.length === 1) {
    process.nextTick(() => {
      const block = frames.length === 1 ? frames[0] : Buffer.concat(frames);
      frames = [];
      writeAll(block);
    });
  }
}

server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
