import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import type { RunningServer } from '../src/server.js';
import { closePayload, RawWs } from './helpers/raw-ws.js';
import { startTestServer, waitFor } from './helpers/server.js';

/**
 * The WebSocket door reads client frames itself (permessage-deflate off): these speak raw bytes to
 * it, split where a reader is most likely to go wrong.
 */
const LIMIT = 128 * 1024;

/** Lets the server's socket read what was written so far (the server runs in this process). */
const turn = () => new Promise<void>((r) => setImmediate(r));

const pingText = (id: string) => JSON.stringify({ type: 'ping', id });
const pongText = (id: string) => JSON.stringify({ type: 'pong', id });

/** A `ping` request in three fragments with a ping control frame between the first two. */
function fragmented(id: string, pingPayload: string): Buffer {
  const text = Buffer.from(pingText(id));
  return Buffer.concat([
    RawWs.frame(1, text.subarray(0, 5), { fin: false }),
    RawWs.frame(9, pingPayload),
    RawWs.frame(0, text.subarray(5, 12), { fin: false }),
    RawWs.frame(0, text.subarray(12), { fin: true }),
  ]);
}

/** A frame header alone (masked), announcing `length` payload bytes. */
function headerOnly(opcode: number, length: number): Buffer {
  const b1 = 0x80 | 127;
  const head = Buffer.alloc(14);
  head[0] = 0x80 | opcode;
  head[1] = b1;
  head.writeBigUInt64BE(BigInt(length), 2);
  return head;
}

describe('WebSocket door frame reader (raw sockets)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ websocket: { maxFrameBytes: LIMIT } });
  });
  after(() => server.close());

  it('reads a fragmented message with a ping inside, split in two writes at every byte', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    const size = fragmented('k000', 'ping-000').length;
    for (let k = 1; k < size; k++) {
      const id = `k${String(k).padStart(3, '0')}`;
      const bytes = fragmented(id, `ping-${String(k).padStart(3, '0')}`);
      c.sock.write(bytes.subarray(0, k));
      await turn();
      c.sock.write(bytes.subarray(k));
      await waitFor(() => c.texts().includes(pongText(id)), `reply to the message split at byte ${k}`);
    }
    const pongs = c.frames.filter((f) => f.opcode === 10).map((f) => f.payload.toString());
    assert.equal(pongs.length, size - 1);
    assert.equal(pongs.at(-1), `ping-${String(size - 1).padStart(3, '0')}`);
    assert.equal(c.texts().length, size - 1);
    assert.equal(c.closeCode(), undefined);
    c.sock.destroy();
  });

  it('reads frames written one byte at a time: 7-bit, 16-bit and 64-bit lengths, fragments, pings', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    const mid = 'm'.repeat(300);
    const bytes = Buffer.concat([RawWs.frame(1, pingText('short')), fragmented('frag', 'hello'), RawWs.frame(1, pingText(mid))]);
    for (let i = 0; i < bytes.length; i++) {
      c.sock.write(bytes.subarray(i, i + 1));
      await turn();
    }
    await waitFor(() => c.texts().length === 3, 'three replies');
    assert.deepEqual(c.texts(), [pongText('short'), pongText('frag'), pongText(mid)]);
    assert.equal(c.frames.find((f) => f.opcode === 10)?.payload.toString(), 'hello');
    // a 64-bit length (over 65535 bytes), in whatever pieces the kernel makes of it
    const big = 'b'.repeat(70_000);
    c.send(1, pingText(big));
    await waitFor(() => c.texts().length === 4, 'reply to a 70 kB frame');
    assert.equal(c.texts()[3], pongText(big));
    c.sock.destroy();
  });

  it('takes a UTF-8 character split between fragments, and refuses an invalid one written byte by byte (1007)', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    const text = Buffer.from(pingText('é'));
    const cut = text.indexOf(0xc3) + 1;
    c.send(1, text.subarray(0, cut), { fin: false });
    c.send(0, text.subarray(cut), { fin: true });
    await waitFor(() => c.texts().length === 1, 'reply with é');
    assert.equal(c.texts()[0], pongText('é'));
    const bad = RawWs.frame(1, Buffer.from([0x7b, 0xe2, 0x82, 0x28, 0x7d]));
    for (let i = 0; i < bad.length; i++) {
      c.sock.write(bad.subarray(i, i + 1));
      await turn();
    }
    await c.expectClose(1007, 'invalid UTF-8 byte by byte');
  });

  const protocolErrors: Array<[string, Buffer[]]> = [
    ['a text frame inside a fragmented message', [RawWs.frame(1, 'ab', { fin: false }), RawWs.frame(1, 'cd')]],
    ['a binary frame inside a fragmented message', [RawWs.frame(1, 'ab', { fin: false }), RawWs.frame(2, 'cd')]],
    ['an unmasked ping', [RawWs.frame(9, 'x', { mask: false })]],
    ['an unmasked continuation', [RawWs.frame(1, 'ab', { fin: false }), RawWs.frame(0, 'cd', { mask: false })]],
    ['RSV1 (no extension was negotiated)', [RawWs.frame(1, 'hi', { rsv: 4 })]],
    ['RSV2', [RawWs.frame(1, 'hi', { rsv: 2 })]],
    ['RSV3 on a continuation', [RawWs.frame(1, 'ab', { fin: false }), RawWs.frame(0, 'cd', { rsv: 1 })]],
    ['a close frame over 125 bytes', [RawWs.frame(8, closePayload(1000, 'r'.repeat(124)))]],
  ];
  for (const [what, frames] of protocolErrors) {
    it(`closes with 1002 on ${what}, the close frame last, and ends the TCP connection`, async () => {
      const c = await RawWs.open(server.http, '/v1/ws');
      c.send(1, pingText('before'));
      await waitFor(() => c.texts().length === 1, 'a reply first');
      for (const f of frames) c.sock.write(f);
      await waitFor(() => c.ended || c.closed, `the server ending the connection on ${what}`);
      assert.equal(c.closeCode(), 1002, what);
      assert.equal(c.frames.at(-1)!.opcode, 8, 'nothing after the close frame');
      c.sock.destroy();
    });
  }

  it('closes with 1009 from the header alone, before any payload comes, and keeps serving', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    c.sock.write(headerOnly(1, 1024 * 1024));
    await c.expectClose(1009, 'a 1 MB frame announced');
    const d = await RawWs.open(server.http, '/v1/ws');
    d.sock.write(headerOnly(2, 2 ** 60));
    await d.expectClose(1009, 'a length over 2^53');
    const ok = await RawWs.open(server.http, '/v1/ws');
    ok.send(1, pingText('still'));
    await waitFor(() => ok.texts().length === 1, 'still serving');
    ok.sock.destroy();
  });

  it('closes with 1009 on a fragmented message over the limit though each fragment is under it', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    const part = 'p'.repeat(LIMIT / 2 - 10);
    c.send(1, part, { fin: false });
    c.send(0, part, { fin: false });
    c.send(0, 'p'.repeat(100), { fin: true });
    await c.expectClose(1009, 'three fragments over the limit');
  });

  it('answers a binary message with an error frame and stays open', async () => {
    const c = await RawWs.open(server.http, '/v1/ws');
    c.send(2, Buffer.from([1, 2, 3]));
    c.send(1, pingText('after'));
    await waitFor(() => c.texts().length === 2, 'error then reply');
    assert.equal((JSON.parse(c.texts()[0]) as { code: string }).code, 'invalid_request');
    assert.equal(c.texts()[1], pongText('after'));
    c.sock.destroy();
  });

  it('echoes a close without a code, and a code with its reason; reads nothing after a close frame; ends the connection', async () => {
    // every earlier test's socket is gone first: the registry then counts only these
    await waitFor(() => server.registry.size === 0, 'earlier connections gone');
    const empty = await RawWs.open(server.http, '/v1/ws');
    empty.sock.write(Buffer.concat([RawWs.frame(8, ''), RawWs.frame(9, 'late'), RawWs.frame(1, pingText('late'))]));
    await waitFor(() => empty.ended || empty.closed, 'the server ending after the close handshake');
    assert.equal(empty.closeCode(), 1005);
    assert.equal(empty.frames.find((f) => f.opcode === 8)!.payload.length, 0);
    assert.deepEqual(empty.frames.map((f) => f.opcode), [8], 'no pong and no reply after the close frame');
    const reason = await RawWs.open(server.http, '/v1/ws');
    reason.send(8, closePayload(4000, 'bye ✓'));
    await waitFor(() => reason.ended || reason.closed, 'the server ending after the close handshake');
    const echoed = reason.frames.find((f) => f.opcode === 8)!.payload;
    assert.equal(echoed.readUInt16BE(0), 4000);
    assert.equal(echoed.subarray(2).toString(), 'bye ✓');
    empty.sock.destroy();
    reason.sock.destroy();
    await waitFor(() => server.registry.size === 0, 'both connections out of the registry');
  });

  it('closes its side when the client half-closes without a close frame', async () => {
    await waitFor(() => server.registry.size === 0, 'earlier connections gone');
    const c = await RawWs.open(server.http, '/v1/ws');
    await waitFor(() => server.registry.size === 1, 'the connection registered');
    c.sock.end();
    await waitFor(() => c.closed, 'the server closing the socket');
    await waitFor(() => server.registry.size === 0, 'the connection out of the registry');
  });
});

describe('WebSocket door with permessage-deflate on (ws reads and writes)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ websocket: { perMessageDeflate: true } });
  });
  after(() => server.close());

  it('negotiates compression, subscribes and delivers; a plain client works too', async () => {
    for (const deflate of [true, false]) {
      const ws = new WebSocket(`${server.http.replace(/^http/, 'ws')}/v1/ws`, { perMessageDeflate: deflate });
      const texts: string[] = [];
      ws.on('message', (d: Buffer) => texts.push(d.toString()));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      assert.equal(ws.extensions.includes('permessage-deflate'), deflate);
      ws.send(JSON.stringify({ type: 'subscribe', id: 1, topics: ['z/deflate'] }));
      await waitFor(() => texts.some((t) => t.includes('"subscribed"')), 'subscribed');
      const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'z/deflate', data: `hello ${deflate}` }) });
      assert.equal(r.status, 200);
      await waitFor(() => texts.some((t) => t.includes('"message"')), 'the message');
      assert.equal((JSON.parse(texts.find((t) => t.includes('"message"'))!) as { data: string }).data, `hello ${deflate}`);
      ws.close(1000);
      await new Promise((r) => ws.once('close', r));
    }
  });
});
