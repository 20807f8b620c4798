import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import type { RunningServer } from '../src/server.js';
import { exerciseDoors } from './helpers/doors.js';
import { startTestServer, tempDir } from './helpers/server.js';
import { opensslMissing, selfSignedCert, type SelfSigned } from './helpers/tls-cert.js';

describe('http.tls: https on the HTTP port', { skip: opensslMissing || undefined }, () => {
  const dir = tempDir('omnipush-https-');
  let cert: SelfSigned;
  let server: RunningServer;

  before(async () => {
    cert = selfSignedCert(dir.path);
    // a heartbeat far beyond the SSE deadline: only a prompt delivery passes
    server = await startTestServer({ http: { tls: { cert: cert.certFile, key: cert.keyFile } }, sse: { heartbeat: 60 } });
  });
  after(async () => {
    await server?.close();
    dir.remove();
  });

  it('serves discovery, SSE, WebSocket, long-poll and MQTT over WebSocket over https', async () => {
    assert.match(server.http, /^https:\/\/127\.0\.0\.1:\d+$/);
    const report = await exerciseDoors({ base: server.http, ca: cert.cert });
    assert.ok(report.sseLatencyMs < 5000);
  });

  it('refuses plain HTTP and untrusting clients without harm, and keeps serving', async () => {
    const port = new URL(server.http).port;
    // plain HTTP to the TLS port: the handshake fails and only that socket goes
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz' }, (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.end();
    });
    assert.doesNotMatch(plain, /^answered 2/);
    // a client that does not trust the certificate is refused by its own TLS check
    await assert.rejects(fetch(`${server.http}/healthz`), (e: Error & { cause?: { code?: string } }) => /SELF_SIGNED|self-signed|DEPTH_ZERO/i.test(String(e.cause?.code ?? e.cause ?? e)));
    const agent = new Agent({ connect: { ca: cert.cert } });
    try {
      const r = await fetch(`${server.http}/healthz`, { dispatcher: agent });
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { status: 'ok' });
    } finally {
      await agent.close();
    }
  });

  it('takes the PEM text itself as well as paths', async () => {
    const inline = await startTestServer({ http: { tls: { cert: cert.cert, key: cert.key } } });
    const agent = new Agent({ connect: { ca: cert.cert } });
    try {
      const r = await fetch(`${inline.http}/.well-known/omnipush`, { dispatcher: agent });
      const doc = (await r.json()) as { transports: { websocket: { url: string }; sse: { url: string } } };
      assert.equal(doc.transports.sse.url, `${inline.http}/v1/sse`);
      assert.equal(doc.transports.websocket.url, `${inline.http.replace('https', 'wss')}/v1/ws`);
    } finally {
      await agent.close();
      await inline.close();
    }
  });

  it('refuses to start with an unreadable certificate or a key that does not match it', async () => {
    await assert.rejects(startTestServer({ http: { tls: { cert: '/nonexistent/cert.pem', key: cert.keyFile } } }), /http\.tls\.cert: \/nonexistent\/cert\.pem is neither PEM nor a readable file/);
    const other = tempDir('omnipush-https-other-');
    try {
      const second = selfSignedCert(other.path);
      await assert.rejects(startTestServer({ http: { tls: { cert: cert.certFile, key: second.keyFile } } }), /http\.tls: the certificate and key are not usable together/);
    } finally {
      other.remove();
    }
  });
});
