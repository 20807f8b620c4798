import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor, within } from './helpers/server.js';

/**
 * Idle keep-alive connections close well before the server's 5 s timeout: on a loaded machine a
 * request could otherwise go out on a connection the server is closing, and fail with a reset.
 */
const dispatcher = new Agent({ keepAliveTimeout: 1000 });

interface PollResult {
  messages: Array<{ topic: string; cursor: string; data?: string; data_base64?: string; event?: string }>;
  cursor: string;
  more: boolean;
  gap?: { reason: string };
}

async function publish(base: string, topic: string, data: string): Promise<string> {
  const r = await fetch(`${base}/v1/topics/${topic}`, { method: 'POST', body: data, dispatcher });
  assert.equal(r.status, 200);
  return ((await r.json()) as { cursor: string }).cursor;
}

async function poll(base: string, query: string): Promise<PollResult> {
  const r = await fetch(`${base}/v1/poll?${query}`, { dispatcher });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as PollResult;
}

describe('long-polling', () => {
  let server: RunningServer;
  before(async () => {
    // thousands of held polls from one loopback address: more than quotas.connectionsPerAddress allows by default
    server = await startTestServer({ longpoll: { maxMessages: 50 }, quotas: { connectionsPerAddress: 0 } });
  });
  after(() => server.close());

  it('answers at once when messages after the cursor exist', async () => {
    const c0 = await publish(server.http, 'lp/a', 'x0');
    await publish(server.http, 'lp/a', 'x1');
    await publish(server.http, 'lp/a', 'x2');
    const t0 = Date.now();
    const r = await poll(server.http, `topic=lp/a&since=${c0}&timeout=20`);
    assert.ok(Date.now() - t0 < 5000, 'did not hold');
    assert.deepEqual(
      r.messages.map((m) => m.data),
      ['x1', 'x2'],
    );
    assert.equal(r.more, false);
  });

  it('holds until a message arrives, then answers with it and the next cursor', async () => {
    const first = await poll(server.http, 'topic=lp/hold&since=now&timeout=0');
    assert.deepEqual(first.messages, []);
    const pending = poll(server.http, `topic=lp/hold&since=${first.cursor}&timeout=20`);
    // the poll is held: it is counted as an open long-poll connection
    await waitFor(async () => (await (await fetch(`${server.http}/metrics`, { dispatcher })).text()).includes('omnipush_connections{transport="longpoll"} 1'), 'held poll in metrics');
    const c = await publish(server.http, 'lp/hold', 'arrived');
    const r = await within(pending, 10_000, 'held poll answer');
    assert.deepEqual(
      r.messages.map((m) => [m.data, m.cursor]),
      [['arrived', c]],
    );
    // the next poll from the returned cursor gets nothing old
    const again = await poll(server.http, `topic=lp/hold&since=${r.cursor}&timeout=0`);
    assert.deepEqual(again.messages, []);
  });

  it('times out with an empty list and a cursor that loses nothing published afterwards', async () => {
    const r = await poll(server.http, 'topic=lp/timeout&since=now&timeout=0.2');
    assert.deepEqual(r.messages, []);
    await publish(server.http, 'lp/timeout', 'later');
    const next = await poll(server.http, `topic=lp/timeout&since=${r.cursor}&timeout=5`);
    assert.deepEqual(
      next.messages.map((m) => m.data),
      ['later'],
    );
  });

  it('pages with limit and more=true, and continues from the cursor', async () => {
    const start = (await poll(server.http, 'topic=lp/page&since=now&timeout=0')).cursor;
    for (let i = 0; i < 7; i++) await publish(server.http, 'lp/page', `p${i}`);
    const a = await poll(server.http, `topic=lp/page&since=${start}&limit=3`);
    assert.equal(a.messages.length, 3);
    assert.equal(a.more, true);
    const b = await poll(server.http, `topic=lp/page&since=${a.cursor}&limit=3`);
    const c = await poll(server.http, `topic=lp/page&since=${b.cursor}&limit=3&timeout=1`);
    assert.deepEqual(
      [...a.messages, ...b.messages, ...c.messages].map((m) => m.data),
      ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6'],
    );
  });

  it('carries binary payloads as data_base64 and wildcard topics', async () => {
    const start = (await poll(server.http, 'topic=lp/bin/%2B&since=now&timeout=0')).cursor;
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
    const r0 = await fetch(`${server.http}/v1/topics/lp/bin/x`, { method: 'POST', body: bytes, dispatcher });
    assert.equal(r0.status, 200);
    const r = await poll(server.http, `topic=lp/bin/%2B&since=${start}`);
    assert.equal(r.messages[0].topic, 'lp/bin/x');
    assert.deepEqual(Buffer.from(r.messages[0].data_base64!, 'base64'), bytes);
  });

  it('thousands of held polls cost little and all get the message', async () => {
    const n = 2000;
    const start = (await poll(server.http, 'topic=lp/many&since=now&timeout=0')).cursor;
    const held = async (k: number) => (await (await fetch(`${server.http}/metrics`, { dispatcher })).text()).includes(`omnipush_connections{transport="longpoll"} ${k}\n`);
    // opened in waves, so that a loaded machine's accept queue never overflows into reset connections
    const polls: Array<ReturnType<typeof poll>> = [];
    for (let wave = 0; wave < n; wave += 250) {
      for (let i = wave; i < Math.min(n, wave + 250); i++) polls.push(poll(server.http, `topic=lp/many&since=${start}&timeout=30`));
      await waitFor(() => held(polls.length), `${polls.length} held polls`, 30_000);
    }
    await publish(server.http, 'lp/many', 'all of you');
    const results = await within(Promise.all(polls), 30_000, 'all polls answered');
    assert.ok(results.every((r) => r.messages.length === 1 && r.messages[0].data === 'all of you'));
    // (memory per held poll is measured by the benchmark, in a server process of its own)
    assert.match(await (await fetch(`${server.http}/metrics`, { dispatcher })).text(), /omnipush_connections\{transport="longpoll"\} 0\b/);
  });

  it('rejects bad parameters with JSON errors', async () => {
    for (const [q, code] of [
      ['since=now', 'invalid_filter'],
      ['topic=a&timeout=-1', 'invalid_request'],
      ['topic=a&timeout=9999', 'invalid_request'],
      ['topic=a&limit=0', 'invalid_request'],
      ['topic=a&since=%00', 'invalid_cursor'],
    ] as const) {
      const r = await fetch(`${server.http}/v1/poll?${q}`, { dispatcher });
      assert.equal(r.status, 400, q);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, code, q);
    }
  });
});
