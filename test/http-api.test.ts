import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { startTestServer } from './helpers/server.js';

type Json = Record<string, unknown>;

async function post(base: string, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; headers: Headers }> {
  const r = await fetch(`${base}${path}`, { method: 'POST', body, headers });
  const text = await r.text();
  return { status: r.status, json: JSON.parse(text) as Json, headers: r.headers };
}

function errCode(j: Json): string {
  return (j.error as { code: string }).code;
}

/** Sends raw bytes and returns the raw response text (for requests fetch cannot make). */
function rawRequest(url: string, text: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(text));
    let buf = '';
    s.on('data', (d) => (buf += d.toString()));
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
}

describe('HTTP API', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ limits: { maxPayloadBytes: 1024 }, http: { maxBodyBytes: 64 * 1024, maxHeaderBytes: 4096 } });
  });
  after(() => server.close());

  it('publishes JSON (text and base64), raw bodies and batches, answering with cursors in order', async () => {
    const a = await post(server.http, '/v1/publish', JSON.stringify({ topic: 'api/a', data: 'text' }));
    assert.equal(a.status, 200);
    assert.equal(a.json.topic, 'api/a');
    const b = await post(server.http, '/v1/publish', JSON.stringify({ topic: 'api/a', data_base64: Buffer.from([0xff, 1, 2]).toString('base64') }));
    const c = await post(server.http, '/v1/topics/api/a?event=ping', 'raw body', { 'content-type': 'text/plain' });
    const d = await post(server.http, '/v1/publish', JSON.stringify({ messages: [{ topic: 'api/a', data: 'b1' }, { topic: 'api/a', data: 'b2', properties: { k: 'v' } }] }));
    const e = await post(server.http, '/v1/publish', JSON.stringify([{ topic: 'api/a', data: 'b3' }]));
    for (const r of [b, c, d, e]) assert.equal(r.status, 200, JSON.stringify(r.json));
    const cursors = [a.json.cursor, b.json.cursor, c.json.cursor, ...(d.json.cursors as string[]), ...(e.json.cursors as string[])];
    assert.equal(new Set(cursors).size, 6);

    const h = await fetch(`${server.http}/v1/history?topic=api/a&since=all`);
    const hist = (await h.json()) as { messages: Array<Json>; cursor: string; more: boolean; gap: boolean };
    assert.deepEqual(
      hist.messages.map((m) => m.cursor),
      cursors,
    );
    assert.equal(hist.messages[0].data, 'text');
    assert.equal(hist.messages[1].data_base64, '/wEC');
    assert.equal(hist.messages[2].event, 'ping');
    assert.equal(hist.messages[2].contentType, 'text/plain');
    assert.deepEqual(hist.messages[4].properties, [['k', 'v']]);
    assert.equal(hist.gap, false);
    assert.equal(hist.more, false);
  });

  it('history pages with limit and since, and refuses filters outside grants', async () => {
    for (let i = 0; i < 5; i++) await post(server.http, '/v1/topics/pages/x', `h${i}`);
    const p1 = (await (await fetch(`${server.http}/v1/history?topic=pages/%2B&limit=2`)).json()) as { messages: Json[]; cursor: string; more: boolean };
    assert.equal(p1.more, true);
    const p2 = (await (await fetch(`${server.http}/v1/history?topic=pages/%2B&limit=10&since=${p1.cursor}`)).json()) as { messages: Json[]; more: boolean };
    assert.deepEqual(
      [...p1.messages, ...p2.messages].map((m) => m.data),
      ['h0', 'h1', 'h2', 'h3', 'h4'],
    );
    assert.equal(p2.more, false);
  });

  it('keeps one retained message per topic and clears it with an empty retained publish', async () => {
    await post(server.http, '/v1/publish', JSON.stringify({ topic: 'ret/t', data: 'first', retain: true }));
    await post(server.http, '/v1/topics/ret/t?retain=1', 'second');
    const r1 = (await (await fetch(`${server.http}/v1/poll?topic=ret/%23&timeout=0`)).json()) as { messages: Json[] };
    assert.deepEqual(
      r1.messages.map((m) => m.data),
      ['second'],
    );
    await post(server.http, '/v1/publish', JSON.stringify({ topic: 'ret/t', data: '', retain: true }));
    const r2 = (await (await fetch(`${server.http}/v1/poll?topic=ret/%23&timeout=0`)).json()) as { messages: Json[] };
    assert.deepEqual(r2.messages, []);
  });

  it('serves discovery and a Link header to it on every response', async () => {
    const r = await fetch(`${server.http}/healthz`);
    assert.match(r.headers.get('link') ?? '', /<\/.well-known\/omnipush>; rel="omnipush"/);
    const d = (await (await fetch(`${server.http}/.well-known/omnipush`)).json()) as Json;
    const transports = d.transports as Record<string, { url: string }>;
    assert.equal(transports.sse.url, `${server.http}/v1/sse`);
    assert.equal(transports.longpoll.url, `${server.http}/v1/poll`);
    assert.equal((d.limits as Json).maxPayloadBytes, 1024);
    assert.equal(d.server, 'omnipush');
  });

  it('answers health, readiness and Prometheus metrics', async () => {
    assert.equal((await fetch(`${server.http}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.http}/readyz`)).status, 200);
    await post(server.http, '/v1/topics/metrics/x', 'm');
    const text = await (await fetch(`${server.http}/metrics`)).text();
    for (const name of ['omnipush_connections', 'omnipush_messages_in_total', 'omnipush_messages_out_total', 'omnipush_queue_closes_total', 'omnipush_publish_to_deliver_seconds', 'omnipush_store_op_seconds']) {
      assert.ok(text.includes(name), `metrics has ${name}`);
    }
    assert.match(text, /omnipush_messages_in_total [1-9]/);
  });

  it('answers CORS preflight', async () => {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'OPTIONS', headers: { Origin: 'http://example.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
    assert.match(r.headers.get('access-control-allow-methods') ?? '', /POST/);
  });

  it('rejects bad input with stable JSON error codes and keeps serving', async () => {
    const big = 'x'.repeat(2000);
    const cases: Array<[string, string | Buffer, number, string]> = [
      ['/v1/publish', '{not json', 400, 'invalid_json'],
      ['/v1/publish', JSON.stringify({ topic: 'a/+/b', data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: 'a/#', data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: '', data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: 'a\u0000b', data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: 'x'.repeat(1025), data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: Array(40).fill('l').join('/'), data: 'x' }), 400, 'invalid_topic'],
      ['/v1/publish', JSON.stringify({ topic: 'a', data: big }), 413, 'payload_too_large'],
      ['/v1/publish', JSON.stringify({ topic: 'a', data: 'x', bogus: 1 }), 400, 'invalid_request'],
      ['/v1/publish', JSON.stringify({ topic: 'a', data: 'x', ttl: -5 }), 400, 'invalid_request'],
      ['/v1/publish', JSON.stringify({ topic: 'a', data_base64: '***' }), 400, 'invalid_request'],
      ['/v1/publish', JSON.stringify({ messages: [] }), 400, 'invalid_request'],
      ['/v1/publish', JSON.stringify({ messages: [{ topic: 'ok', data: '1' }, { topic: 'bad/#' }] }), 400, 'invalid_topic'],
      ['/v1/publish', Buffer.alloc(70 * 1024, 0x61), 413, 'payload_too_large'],
      ['/v1/topics/a/%2B', 'x', 400, 'invalid_topic'],
      ['/v1/topics/a', big, 413, 'payload_too_large'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await post(server.http, path, body);
      assert.equal(r.status, status, `${path} ${String(body).slice(0, 60)}`);
      assert.equal(errCode(r.json), code, `${path} ${String(body).slice(0, 60)}`);
      assert.equal(typeof (r.json.error as Json).message, 'string');
    }
    // a rejected batch stores nothing
    const h = (await (await fetch(`${server.http}/v1/history?topic=ok`)).json()) as { messages: Json[] };
    assert.deepEqual(h.messages, []);

    const notFound = await fetch(`${server.http}/nope`);
    assert.equal(notFound.status, 404);
    assert.equal(errCode((await notFound.json()) as Json), 'not_found');
    const wrongMethod = await fetch(`${server.http}/v1/publish`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(errCode((await wrongMethod.json()) as Json), 'method_not_allowed');
    const badCursor = await fetch(`${server.http}/v1/history?topic=a&since=%%%`);
    assert.equal(badCursor.status, 400);

    // headers beyond the limit: 431 with a JSON body
    const huge = await rawRequest(server.http, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(8000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431/);
    assert.match(huge, /"code":"invalid_request"/);
    const garbage = await rawRequest(server.http, 'NOT HTTP AT ALL\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400/);

    // and the server still serves
    const ok = await post(server.http, '/v1/topics/still/alive', 'yes');
    assert.equal(ok.status, 200);
  });
});
