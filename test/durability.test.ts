import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { spawnServer, tempDir, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

interface Acked {
  cursor: string;
  data: string;
}

describe('restart durability (sqlite)', () => {
  const dir = tempDir('omnipush-durable-');
  after(() => dir.remove());

  it('every acknowledged publish survives kill -9 and resume works across the restart', async () => {
    const first = await spawnServer(['--store', 'sqlite', '--data', dir.path]);
    const acked: Acked[] = [];
    let stop = false;
    // four concurrent publishers, single and batch, until the kill
    const publishers = Array.from({ length: 4 }, (_, p) =>
      (async () => {
        for (let i = 0; !stop; i++) {
          const batch = p % 2 === 0;
          const msgs = batch ? Array.from({ length: 10 }, (_, j) => ({ topic: `dur/${p}`, data: `${p}-${i}-${j}` })) : [{ topic: `dur/${p}`, data: `${p}-${i}` }];
          try {
            const r = await fetch(`${first.http}/v1/publish`, { method: 'POST', body: JSON.stringify(batch ? { messages: msgs } : msgs[0]) });
            if (r.status !== 200) continue;
            const j = (await r.json()) as { cursor?: string; cursors?: string[] };
            const cursors = j.cursors ?? [j.cursor!];
            msgs.forEach((m, k) => acked.push({ cursor: cursors[k], data: m.data }));
          } catch {
            // the server was killed mid-request: this publish was never acknowledged
          }
        }
      })(),
    );
    await fetch(`${first.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'dur/retained', data: 'kept', retain: true }) });
    await waitFor(() => acked.length >= 2000, '2000 acknowledged publishes', 60_000);
    await first.kill();
    stop = true;
    await Promise.all(publishers);

    const second = await spawnServer(['--store', 'sqlite', '--data', dir.path]);
    try {
      const stored = new Map<string, string>();
      let since = 'all';
      for (;;) {
        const h = (await (await fetch(`${second.http}/v1/history?topic=dur/%2B&since=${since}&limit=1000`)).json()) as { messages: Array<{ cursor: string; data: string }>; cursor: string; more: boolean };
        for (const m of h.messages) stored.set(m.cursor, m.data);
        since = h.cursor;
        if (!h.more) break;
      }
      const lost = acked.filter((a) => stored.get(a.cursor) !== a.data);
      assert.equal(lost.length, 0, `${lost.length} of ${acked.length} acknowledged publishes lost, e.g. ${JSON.stringify(lost.slice(0, 3))}`);

      // retained state survived
      const ret = (await (await fetch(`${second.http}/v1/poll?topic=dur/retained&timeout=0`)).json()) as { messages: Array<{ data: string }> };
      assert.deepEqual(
        ret.messages.map((m) => m.data),
        ['kept'],
      );

      // resume across the restart: a cursor from before the crash continues without a gap
      const mid = acked[1000];
      const sse = await openRawSse(`${second.http}/v1/sse?topic=dur/%2B`, { 'Last-Event-ID': mid.cursor });
      const after = (await (await fetch(`${second.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'dur/new', data: 'after restart' }) })).json()) as { cursor: string };
      await waitFor(() => sse.events().some((e) => e.data === 'after restart'), 'live message after replay');
      sse.close();
      const ev = sse.events();
      assert.ok(ev.every((e) => e.event !== 'gap'));
      const ids = ev.map((e) => e.id!);
      assert.equal(new Set(ids).size, ids.length, 'no duplicates');
      const keys = [...stored.keys()];
      const expected = keys.slice(keys.indexOf(mid.cursor) + 1);
      assert.ok(expected.length > 0);
      assert.deepEqual(ids.slice(0, expected.length), expected, 'replay is exactly the stored history after the cursor');
      assert.equal(ev[expected.length].data, 'after restart');
      // the new cursor is after every cursor handed out before the crash: seqs are never reused
      const seq = (c: string) => parseInt(c.split('_')[1], 36);
      assert.ok(acked.every((a) => seq(a.cursor) < seq(after.cursor)));
      assert.equal(await second.stop(), 0, 'SIGTERM exits 0');
    } finally {
      if (second.proc.exitCode === null) await second.kill();
    }
  });
});
