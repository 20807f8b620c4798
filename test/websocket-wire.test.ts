import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { closePayload, GUID, RawWs } from './helpers/raw-ws.js';
import { startTestServer, waitFor } from './helpers/server.js';

describe('WebSocket wire (RFC 6455)', () => {
  let server: RunningServer;
  const paths = ['/v1/ws', '/echo'];
  before(async () => {
    server = await startTestServer({ websocket: { echoPath: '/echo', maxFrameBytes: 64 * 1024 } });
  });
  after(() => server.close());

  it('answers the handshake with the right Sec-WebSocket-Accept (RFC example key too)', async () => {
    const rfc = await RawWs.open(server.http, '/v1/ws', 'dGhlIHNhbXBsZSBub25jZQ==');
    assert.match(rfc.head, /^HTTP\/1\.1 101/);
    assert.match(rfc.head, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    rfc.sock.destroy();
    const key = randomBytes(16).toString('base64');
    const c = await RawWs.open(server.http, '/v1/ws', key);
    const expected = createHash('sha1').update(key + GUID).digest('base64');
    assert.ok(c.head.includes(`Sec-WebSocket-Accept: ${expected}`) || c.head.toLowerCase().includes(`sec-websocket-accept: ${expected.toLowerCase()}`));
    c.sock.destroy();
    const nowhere = await RawWs.open(server.http, '/nowhere');
    assert.match(nowhere.head, /^HTTP\/1\.1 404/);
  });

  it('echoes text as text and binary as binary', async () => {
    const c = await RawWs.open(server.http, '/echo');
    c.send(1, 'héllo');
    c.send(2, Buffer.from([0, 255, 1]));
    await waitFor(() => c.frames.length >= 2, 'echoes');
    assert.deepEqual(c.frames.map((f) => [f.opcode, [...f.payload]]), [
      [1, [...Buffer.from('héllo')]],
      [2, [0, 255, 1]],
    ]);
    c.sock.destroy();
  });

  it('reassembles fragments with a ping in between, and answers the ping with a pong', async () => {
    for (const path of paths) {
      const c = await RawWs.open(server.http, path);
      const msg = path === '/echo' ? 'fragmented message' : JSON.stringify({ type: 'ping', id: 'frag' });
      c.send(1, msg.slice(0, 5), { fin: false });
      c.send(9, 'are you there');
      c.send(0, msg.slice(5, 9), { fin: false });
      c.send(0, msg.slice(9), { fin: true });
      await waitFor(() => c.frames.some((f) => f.opcode === 10) && c.texts().length >= 1, `pong and reply on ${path}`);
      assert.equal(c.frames.find((f) => f.opcode === 10)!.payload.toString(), 'are you there');
      assert.equal(c.texts()[0], path === '/echo' ? msg : JSON.stringify({ type: 'pong', id: 'frag' }));
      c.sock.destroy();
    }
  });

  const protocolErrors: Array<[string, (c: RawWs) => void]> = [
    ['unmasked client frame', (c) => c.send(1, 'hi', { mask: false })],
    ['ping payload over 125 bytes', (c) => c.send(9, 'x'.repeat(126))],
    ['reserved bits without an extension', (c) => c.send(1, 'hi', { rsv: 4 })],
    ['fragmented control frame', (c) => c.send(9, 'x', { fin: false })],
    ['continuation without a start', (c) => c.send(0, 'x')],
    ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op): [string, (c: RawWs) => void] => [`reserved opcode ${op}`, (c) => c.send(op, 'x')]),
    ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000].map((code): [string, (c: RawWs) => void] => [`invalid close code ${code}`, (c) => c.send(8, closePayload(code))]),
    ['close frame with a 1-byte payload', (c) => c.send(8, Buffer.from([3]))],
  ];
  for (const [what, act] of protocolErrors) {
    it(`closes with 1002 on ${what}`, async () => {
      for (const path of paths) {
        const c = await RawWs.open(server.http, path);
        act(c);
        await c.expectClose(1002, `${what} on ${path}`);
      }
    });
  }

  it('closes with 1007 on invalid UTF-8, also when split across fragments', async () => {
    for (const path of paths) {
      const c = await RawWs.open(server.http, path);
      c.send(1, Buffer.from([0x68, 0xc3, 0x28]));
      await c.expectClose(1007, `invalid UTF-8 on ${path}`);
      const d = await RawWs.open(server.http, path);
      d.send(1, Buffer.from([0x68, 0xe2, 0x82]), { fin: false });
      d.send(0, Buffer.from([0x28]), { fin: true });
      await d.expectClose(1007, `invalid UTF-8 across fragments on ${path}`);
      const e = await RawWs.open(server.http, path);
      e.send(8, Buffer.concat([closePayload(1000), Buffer.from([0xff])]));
      await e.expectClose(1007, `invalid UTF-8 close reason on ${path}`);
    }
  });

  it('echoes valid close codes', async () => {
    for (const code of [1000, 1001, 3000, 4999]) {
      for (const path of paths) {
        const c = await RawWs.open(server.http, path);
        c.send(8, closePayload(code, 'bye'));
        await c.expectClose(code, `close ${code} on ${path}`);
      }
    }
  });

  it('closes with 1009 on a frame over the limit, and the server keeps serving', async () => {
    for (const path of paths) {
      const c = await RawWs.open(server.http, path);
      c.send(1, 'x'.repeat(70 * 1024));
      await c.expectClose(1009, `oversize on ${path}`);
    }
    const ok = await RawWs.open(server.http, '/v1/ws');
    ok.send(1, JSON.stringify({ type: 'ping', id: 1 }));
    await waitFor(() => ok.texts().length === 1, 'still serving');
    ok.sock.destroy();
  });
});

/** The first line of the server's answer to an upgrade request with this `Sec-WebSocket-Key`. */
function upgradeStatus(base: string, key: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n')) {
        resolve(text.slice(0, text.indexOf('\r\n')));
        s.destroy();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve(text || 'closed without an answer'));
    s.write(`GET /v1/ws HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`);
  });
}

describe('WebSocket handshakes refused by ws', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ limits: { maxConnections: 2 } });
  });
  after(() => server.close());

  it('give their connection slot back: bad keys never fill the connection limit', async () => {
    for (let i = 0; i < 5; i++) assert.match(await upgradeStatus(server.http, 'not-a-key'), /^HTTP\/1\.1 400/, `bad key #${i + 1}`);
    const a = await RawWs.open(server.http, '/v1/ws');
    const b = await RawWs.open(server.http, '/v1/ws');
    assert.match(a.head, /^HTTP\/1\.1 101/);
    assert.match(b.head, /^HTTP\/1\.1 101/);
    // the limit itself still holds
    assert.match(await upgradeStatus(server.http, randomBytes(16).toString('base64')), /^HTTP\/1\.1 503/);
    a.sock.destroy();
    b.sock.destroy();
  });
});
