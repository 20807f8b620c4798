import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

describe('slow consumers', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ limits: { maxQueueBytes: 256 * 1024, maxPayloadBytes: 64 * 1024 }, history: { maxCount: 100_000 } });
  });
  after(() => server.close());

  it('closes a subscriber that stops reading at its bound; the others get every message', async () => {
    const fast = await openRawSse(`${server.http}/v1/sse?topic=slow/t`);
    const fast2 = await openRawSse(`${server.http}/v1/sse?topic=slow/%23`);
    const slow = await openRawSse(`${server.http}/v1/sse?topic=slow/t`);
    slow.pause();
    const payload = 'z'.repeat(8 * 1024);
    const total = 1500; // ~12 MB: far past kernel socket buffers and the 256 KB bound
    const rssStart = process.memoryUsage().rss;
    let rssPeak = rssStart;
    for (let i = 0; i < total; i += 50) {
      const messages = Array.from({ length: 50 }, (_, j) => ({ topic: 'slow/t', data: `${i + j}:${payload}` }));
      const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ messages }) });
      assert.equal(r.status, 200);
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }
    await waitFor(() => fast.events().length === total && fast2.events().length === total, 'fast subscribers got everything', 30_000);
    await waitFor(async () => /omnipush_queue_closes_total\{transport="sse"\} 1\b/.test(await (await fetch(`${server.http}/metrics`)).text()), 'slow subscriber closed', 10_000);
    slow.close();
    assert.deepEqual(
      fast.events().map((e) => Number(e.data.split(':')[0])),
      Array.from({ length: total }, (_, i) => i),
    );
    // the slow one got a prefix, not everything, and the server did not buffer the rest for it
    assert.ok(slow.events().length < total);
    assert.ok(rssPeak - rssStart < 150 * 1024 * 1024, `rss grew ${(rssPeak - rssStart) >> 20} MB`);
    fast.close();
    fast2.close();
  });

  it('the closed client resumes from its last cursor and completes', async () => {
    const first = await openRawSse(`${server.http}/v1/sse?topic=slow/resume&since=now`);
    first.pause();
    const payload = 'q'.repeat(8 * 1024);
    for (let i = 0; i < 1200; i += 50) {
      const messages = Array.from({ length: 50 }, (_, j) => ({ topic: 'slow/resume', data: `${i + j}:${payload}` }));
      await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ messages }) });
    }
    // start reading again: we get what was written before the cut, then the stream ends
    first.close();
    const all = (await (await fetch(`${server.http}/v1/history?topic=slow/resume&limit=1`)).json()) as { messages: Array<{ cursor: string }> };
    const resumed = await openRawSse(`${server.http}/v1/sse?topic=slow/resume`, { 'Last-Event-ID': all.messages[0].cursor });
    await waitFor(() => resumed.events().length === 1199, 'resumed stream has the rest', 30_000);
    resumed.close();
    assert.equal(resumed.events()[0].data.split(':')[0], '1');
  });
});
