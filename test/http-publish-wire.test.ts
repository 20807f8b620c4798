import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { RawHttpClient as RawClient } from './helpers/raw-http.js';
import { startTestServer } from './helpers/server.js';

function publishHead(body: string, extra = ''): string {
  return `POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`;
}

function chunked(parts: string[]): string {
  return parts.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
}

const CHUNKED_HEAD = 'POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';

async function history(base: string, topic: string): Promise<Array<{ cursor: string; data: string }>> {
  const r = await fetch(`${base}/v1/history?topic=${encodeURIComponent(topic)}&since=all`);
  return ((await r.json()) as { messages: Array<{ cursor: string; data: string }> }).messages;
}

/**
 * `POST /v1/publish` however its bytes arrive on the wire: head and body in one segment (taken at
 * once from the parser's buffer), the body later or in chunks (read as it comes), several requests
 * pipelined. Every way answers the same: status, body and headers.
 */
describe('HTTP publish on the wire', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ http: { maxBodyBytes: 4096 } });
  });
  after(() => server.close());

  it('answers a publish whose body came with its head, with the documented headers', async () => {
    const c = new RawClient(server.http);
    await c.ready;
    const body = JSON.stringify({ topic: 'wire/one', data: 'hello' });
    c.send(publishHead(body) + body);
    const [a] = await c.responses(1);
    c.close();
    assert.equal(a.status, 200);
    const j = JSON.parse(a.body) as { cursor: string; topic: string };
    assert.equal(j.topic, 'wire/one');
    assert.deepEqual(Object.keys(j), ['cursor', 'topic']);
    assert.equal(a.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(a.headers['cache-control'], 'no-store');
    assert.equal(a.headers['link'], '</.well-known/omnipush>; rel="omnipush"');
    assert.equal(Number(a.headers['content-length']), Buffer.byteLength(a.body));
    const h = await history(server.http, 'wire/one');
    assert.deepEqual(
      h.map((m) => [m.cursor, m.data]),
      [[j.cursor, 'hello']],
    );
  });

  it('waits for a body that comes after its head, or in chunks', async () => {
    const c = new RawClient(server.http);
    await c.ready;
    const body = JSON.stringify({ topic: 'wire/late', data: 'late' });
    c.send(publishHead(body));
    // pauses shape the arrival (head, then the body in two segments); nothing waits on them
    await new Promise((r) => setTimeout(r, 50));
    c.send(body.slice(0, 10));
    await new Promise((r) => setTimeout(r, 20));
    c.send(body.slice(10));
    const [late] = await c.responses(1);
    assert.equal(late.status, 200, late.body);

    const parts = ['{"topic":"wire/late",', '"data":"chunked"}'];
    c.send(CHUNKED_HEAD + chunked(parts.slice(0, 1)).replace(/0\r\n\r\n$/, ''));
    await new Promise((r) => setTimeout(r, 20));
    c.send(chunked(parts.slice(1)));
    const [inChunks] = await c.responses(1);
    c.close();
    assert.equal(inChunks.status, 200, inChunks.body);
    assert.deepEqual(
      (await history(server.http, 'wire/late')).map((m) => m.data),
      ['late', 'chunked'],
    );
  });

  it('answers pipelined publishes in order on one connection', async () => {
    const c = new RawClient(server.http);
    await c.ready;
    const bodies = [1, 2, 3].map((i) => JSON.stringify({ topic: 'wire/pipe', data: `m${i}` }));
    c.send(bodies.map((b) => publishHead(b) + b).join(''));
    const answers = await c.responses(3);
    c.close();
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200],
    );
    const cursors = answers.map((a) => (JSON.parse(a.body) as { cursor: string }).cursor);
    assert.deepEqual(
      (await history(server.http, 'wire/pipe')).map((m) => [m.cursor, m.data]),
      cursors.map((cur, i) => [cur, `m${i + 1}`]),
    );
  });

  it('refuses a chunked body past http.maxBodyBytes that came whole, and keeps serving', async () => {
    const c = new RawClient(server.http);
    await c.ready;
    const big = JSON.stringify({ topic: 'wire/big', data: 'x'.repeat(5000) });
    c.send(CHUNKED_HEAD + chunked([big]));
    const [a] = await c.responses(1);
    c.close();
    assert.equal(a.status, 413);
    assert.equal((JSON.parse(a.body) as { error: { code: string } }).error.code, 'payload_too_large');
    assert.deepEqual(await history(server.http, 'wire/big'), []);
    const ok = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'wire/big', data: 'small' }) });
    assert.equal(ok.status, 200);
  });

  it('counts answered publishes in omnipush_http_requests_total by route and status', async () => {
    const count = async (status: number): Promise<number> => {
      const text = await (await fetch(`${server.http}/metrics`)).text();
      const m = new RegExp(`omnipush_http_requests_total\\{route="/v1/publish",status="${status}"\\} (\\d+)`).exec(text);
      return m ? Number(m[1]) : 0;
    };
    const ok0 = await count(200);
    const bad0 = await count(400);
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'wire/n', data: 'x' }) })).status, 200);
    assert.equal((await fetch(`${server.http}/v1/publish`, { method: 'POST', body: '{nope' })).status, 400);
    assert.equal(await count(200), ok0 + 3);
    assert.equal(await count(400), bad0 + 1);
  });
});
