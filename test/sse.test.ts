import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { startProxy } from './helpers/proxy.js';
import { openRawSse } from './helpers/sse.js';

async function publish(base: string, body: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { cursor: string }).cursor;
}

interface Received {
  type: string;
  data: string;
  lastEventId: string;
}

/** Opens an EventSource (the `eventsource` package, an independent WHATWG implementation). */
function listen(url: string, events: string[] = ['message']): { es: EventSource; got: Received[]; opened: Promise<void> } {
  const es = new EventSource(url);
  const got: Received[] = [];
  for (const t of events) es.addEventListener(t, (e) => got.push({ type: e.type, data: e.data, lastEventId: e.lastEventId }));
  const opened = new Promise<void>((resolve, reject) => {
    es.addEventListener('open', () => resolve(), { once: true });
    es.addEventListener('error', (e) => reject(new Error(`EventSource error: ${String((e as { message?: string }).message)}`)), { once: true });
  });
  return { es, got, opened };
}

describe('SSE', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ sse: { heartbeat: 0.2, retry: 50 } });
  });
  after(() => server.close());

  it('frames multi-line, CR, CRLF, unicode and empty data so an EventSource gets them back', async () => {
    const { es, got, opened } = listen(`${server.http}/v1/sse?topic=frame/t`);
    await opened;
    const payloads = ['one line', 'two\nlines', 'cr\rseparated', 'crlf\r\nseparated\r\nthrice', 'trailing newline\n', '\nleading', 'ünïcödé ✓ 😀 日本語', '', ' leading space', 'data: looks like a field', ':colon first'];
    const expected = payloads.map((p) => p.replace(/\r\n|\r/g, '\n'));
    const cursors: string[] = [];
    for (const data of payloads) cursors.push(await publish(server.http, { topic: 'frame/t', data }));
    await waitFor(() => got.length >= payloads.length, 'all framed messages');
    es.close();
    assert.deepEqual(
      got.map((g) => g.data),
      expected,
    );
    assert.deepEqual(
      got.map((g) => g.lastEventId),
      cursors,
      'id: carries the cursor',
    );
  });

  it('sends named events with event:, and the raw stream has the expected headers and fields', async () => {
    const raw = await openRawSse(`${server.http}/v1/sse?topic=named/%2B`);
    assert.equal(raw.status, 200);
    assert.match(String(raw.headers['content-type']), /^text\/event-stream/);
    assert.match(String(raw.headers['cache-control']), /no-cache/);
    assert.equal(raw.headers['x-accel-buffering'], 'no');
    assert.match(String(raw.headers.link), /\.well-known\/omnipush/);
    const { es, got, opened } = listen(`${server.http}/v1/sse?topic=named/%2B`, ['message', 'price']);
    await opened;
    const c1 = await publish(server.http, { topic: 'named/a', data: 'plain' });
    const c2 = await publish(server.http, { topic: 'named/b', data: '42', event: 'price' });
    await waitFor(() => got.length >= 2 && raw.events().length >= 2, 'two events on both clients');
    es.close();
    raw.close();
    assert.deepEqual(got, [
      { type: 'message', data: 'plain', lastEventId: c1 },
      { type: 'price', data: '42', lastEventId: c2 },
    ]);
    const text = raw.text();
    assert.match(text, /^retry: 50\n/m);
    assert.ok(text.includes(`id: ${c2}\nevent: price\ndata: 42\n\n`), text);
  });

  it('refuses event names with line breaks at publish time', async () => {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'x', data: 'y', event: 'a\nb' }) });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'invalid_request');
  });

  it('sends heartbeat comments on an idle stream', async () => {
    const raw = await openRawSse(`${server.http}/v1/sse?topic=quiet`);
    await waitFor(() => (raw.text().match(/^:\n/gm) ?? []).length >= 2, 'two heartbeat comments', 5000);
    raw.close();
  });

  it('resumes from Last-Event-ID and from ?since= with nothing lost or repeated', async () => {
    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push(await publish(server.http, { topic: 'resume/a', data: `m${i}` }));
    const viaHeader = await openRawSse(`${server.http}/v1/sse?topic=resume/a`, { 'Last-Event-ID': cursors[1] });
    const viaQuery = await openRawSse(`${server.http}/v1/sse?topic=resume/a&since=${encodeURIComponent(cursors[1])}`);
    await publish(server.http, { topic: 'resume/a', data: 'm5' });
    for (const s of [viaHeader, viaQuery]) {
      await waitFor(() => s.events().length >= 4, 'replayed + live events');
      s.close();
      assert.deepEqual(
        s.events().map((e) => e.data),
        ['m2', 'm3', 'm4', 'm5'],
      );
    }
  });

  it('an EventSource cut by the network reconnects with Last-Event-ID and misses nothing', async () => {
    const proxy = await startProxy(server.http);
    const { es, got, opened } = listen(`${proxy.url}/v1/sse?topic=cut/me`);
    await opened;
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      sent.push(`n${i}`);
      await publish(server.http, { topic: 'cut/me', data: `n${i}` });
      if (i === 7 || i === 13) {
        await waitFor(() => got.length === sent.length, 'caught up before the cut');
        proxy.cutAll();
      }
    }
    await waitFor(() => got.length >= sent.length, 'all messages after reconnects');
    es.close();
    await proxy.close();
    assert.deepEqual(
      got.map((g) => g.data),
      sent,
    );
  });

  it('signals a gap with a named event when history after the cursor was pruned', async () => {
    const pruned = await startTestServer({ history: { maxCount: 2, pruneInterval: 3600 } });
    try {
      const cursors: string[] = [];
      for (let i = 0; i < 6; i++) cursors.push(await publish(pruned.http, { topic: 'gap/t', data: `g${i}` }));
      assert.ok((await pruned.hub.prune()) >= 4);
      const raw = await openRawSse(`${pruned.http}/v1/sse?topic=gap/t`, { 'Last-Event-ID': cursors[0] });
      await waitFor(() => raw.events().length >= 3, 'gap + two kept messages');
      raw.close();
      const ev = raw.events();
      assert.equal(ev[0].event, 'gap');
      assert.equal((JSON.parse(ev[0].data) as { reason: string }).reason, 'pruned');
      assert.deepEqual(
        ev.slice(1).map((e) => e.data),
        ['g4', 'g5'],
      );
    } finally {
      await pruned.close();
    }
  });

  it('answers bad requests with JSON errors before streaming', async () => {
    const cases: Array<[string, number, string, Record<string, string>?]> = [
      ['/v1/sse', 400, 'invalid_filter'],
      ['/v1/sse?topic=a/%23/b', 400, 'invalid_filter'],
      ['/v1/sse?topic=a&since=not-a-cursor', 400, 'invalid_cursor'],
      ['/v1/sse?topic=a&format=xml', 400, 'invalid_request'],
      ['/v1/sse?topic=a', 400, 'invalid_cursor', { 'Last-Event-ID': 'zz' }],
    ];
    for (const [path, status, code, headers] of cases) {
      const r = await fetch(`${server.http}${path}`, { headers });
      assert.equal(r.status, status, path);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, code, path);
    }
  });

  it('ends open streams with a close event on shutdown, and the stream ends', async () => {
    const s2 = await startTestServer();
    const raw = await openRawSse(`${s2.http}/v1/sse?topic=bye`);
    await s2.close();
    await raw.ended;
    const ev = raw.events();
    assert.equal(ev.at(-1)?.event, 'close');
    assert.equal((JSON.parse(ev.at(-1)!.data) as { code: string }).code, 'shutting_down');
  });
});
