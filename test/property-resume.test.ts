import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { filterMatches } from '../src/core/topic.js';
import type { RunningServer } from '../src/server.js';
import { startCluster } from './helpers/cluster.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { prng } from './helpers/prng.js';

interface Published {
  topic: string;
  data: string;
  cursor: string;
}

const TOPICS = ['prop/a', 'prop/b', 'prop/c/d', 'prop/c/e', 'other/x'];
const FILTER_SETS = [['prop/a'], ['prop/+'], ['prop/#'], ['prop/c/+', 'prop/a'], ['#'], ['other/x', 'prop/c/d']];

function qs(filters: string[]): string {
  return filters.map((f) => `topic=${encodeURIComponent(f)}`).join('&');
}

/** One of the nodes, at random: in a cluster every reconnect may land on another node. */
function pick(bases: string[], rnd: () => number): string {
  return bases[Math.floor(rnd() * bases.length)];
}

/** An SSE subscriber that disconnects at random moments and resumes with Last-Event-ID. */
async function flakySseSubscriber(bases: string[], filters: string[], start: string, rnd: () => number, stop: () => boolean, got: string[]): Promise<number> {
  let last = start;
  let reconnects = 0;
  while (!stop()) {
    const s = await openRawSse(`${pick(bases, rnd)}/v1/sse?${qs(filters)}`, { 'Last-Event-ID': last });
    assert.equal(s.status, 200);
    await Promise.race([s.ended, new Promise((r) => setTimeout(r, 5 + rnd() * 60))]);
    s.close();
    for (const e of s.events()) {
      assert.notEqual(e.event, 'gap', 'no gap expected while history is complete');
      got.push(e.data);
      last = e.id!;
    }
    reconnects++;
  }
  return reconnects;
}

/** A long-poll subscriber that sometimes abandons a poll mid-way and always repolls from its cursor. */
async function flakyPoller(bases: string[], filters: string[], start: string, rnd: () => number, stop: () => boolean, got: string[]): Promise<number> {
  let cursor = start;
  let polls = 0;
  while (!stop()) {
    const abandon = rnd() < 0.2;
    const ac = new AbortController();
    const t = abandon ? setTimeout(() => ac.abort(), rnd() * 20) : undefined;
    try {
      const r = await fetch(`${pick(bases, rnd)}/v1/poll?${qs(filters)}&since=${cursor}&timeout=1&limit=${1 + Math.floor(rnd() * 50)}`, { signal: ac.signal });
      const j = (await r.json()) as { messages: Array<{ data: string }>; cursor: string; gap?: unknown };
      assert.equal(j.gap, undefined);
      for (const m of j.messages) got.push(m.data);
      cursor = j.cursor;
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e;
    } finally {
      clearTimeout(t);
    }
    polls++;
  }
  return polls;
}

const HISTORY = { maxCount: 100_000, pruneInterval: 3600, rules: [{ filter: 'gaptest/#', maxCount: 10 }] };

/** One server; or three nodes over one Redis (store and bus), where subscribers resume and publishers publish on random nodes. */
const VARIANTS: Array<{ name: string; skip: string | false; start(): Promise<{ nodes: RunningServer[]; stop(): Promise<void> }> }> = [
  {
    name: 'one node',
    skip: false,
    async start() {
      const server = await startTestServer({ history: HISTORY });
      return { nodes: [server], stop: () => server.close() };
    },
  },
  {
    name: 'three nodes on a Redis bus',
    skip: redisMissing || false,
    async start() {
      const redis = await startRedis();
      const nodes = await startCluster(redis, 'prop:', 3, { history: HISTORY });
      return {
        nodes,
        async stop() {
          await Promise.all(nodes.map((n) => n.close()));
          await redis.remove();
        },
      };
    },
  },
];

for (const variant of VARIANTS) describe(`resume property (${variant.name}): random disconnects lose nothing and repeat nothing`, { skip: variant.skip }, () => {
  let nodes: RunningServer[];
  let server: RunningServer;
  let stopAll: () => Promise<void>;
  before(async () => {
    ({ nodes, stop: stopAll } = await variant.start());
    server = nodes[0];
  });
  after(() => stopAll());

  it('every SSE and long-poll subscriber ends with exactly the published sequence for its filters', async () => {
    const seed = Number(process.env.OMNIPUSH_PROPERTY_SEED ?? Date.now() % 1e9);
    const rnd = prng(seed);
    const startCursor = ((await (await fetch(`${server.http}/v1/poll?topic=%23&since=now&timeout=0`)).json()) as { cursor: string }).cursor;
    const published: Published[] = [];
    let publishing = true;
    const total = 3000;

    const subs = FILTER_SETS.flatMap((filters, i) => [
      { kind: 'sse', filters, got: [] as string[], rnd: prng(seed + i + 1) },
      { kind: 'poll', filters, got: [] as string[], rnd: prng(seed + 100 + i) },
    ]);
    const expectedFor = (filters: string[]) => published.filter((p) => filters.some((f) => filterMatches(f, p.topic))).map((p) => p.data);
    const done = (s: (typeof subs)[number]) => !publishing && s.got.length >= expectedFor(s.filters).length;
    const runs = subs.map((s) =>
      s.kind === 'sse' ? flakySseSubscriber(nodes.map((x) => x.http), s.filters, startCursor, s.rnd, () => done(s), s.got) : flakyPoller(nodes.map((x) => x.http), s.filters, startCursor, s.rnd, () => done(s), s.got),
    );

    // publish in random-sized batches, sequentially, so acknowledgement order is seq order
    let n = 0;
    while (n < total) {
      const size = 1 + Math.floor(rnd() * 40);
      const batch = Array.from({ length: Math.min(size, total - n) }, () => {
        const topic = TOPICS[Math.floor(rnd() * TOPICS.length)];
        return { topic, data: `${n++}:${topic}` };
      });
      const r = await fetch(`${pick(nodes.map((x) => x.http), rnd)}/v1/publish`, { method: 'POST', body: JSON.stringify({ messages: batch }) });
      assert.equal(r.status, 200);
      const { cursors } = (await r.json()) as { cursors: string[] };
      batch.forEach((b, i) => published.push({ ...b, cursor: cursors[i] }));
      if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
    }
    publishing = false;

    const counts = await waitFor(
      async () => {
        if (!subs.every(done)) return null;
        return Promise.all(runs);
      },
      `all subscribers caught up (seed ${seed})`,
      90_000,
    );
    for (const s of subs) {
      assert.deepEqual(s.got, expectedFor(s.filters), `${s.kind} ${s.filters.join(',')} (seed ${seed})`);
    }
    // the subscribers really did disconnect and come back many times
    assert.ok(
      counts.every((c) => c >= 3),
      `reconnects/polls per subscriber: ${counts.join(',')}`,
    );
  });

  it('after pruning, a resume from before the pruned range gets the gap signal first (SSE and long-poll)', async () => {
    const cursors: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await fetch(`${server.http}/v1/topics/gaptest/x`, { method: 'POST', body: `g${i}` });
      cursors.push(((await r.json()) as { cursor: string }).cursor);
    }
    assert.ok((await server.hub.prune()) >= 20);
    const sse = await openRawSse(`${server.http}/v1/sse?topic=gaptest/%23`, { 'Last-Event-ID': cursors[3] });
    await waitFor(() => sse.events().length >= 11, 'gap + 10 kept messages');
    sse.close();
    const ev = sse.events();
    assert.equal(ev[0].event, 'gap');
    assert.deepEqual(
      ev.slice(1).map((e) => e.data),
      Array.from({ length: 10 }, (_, i) => `g${20 + i}`),
    );
    const poll = (await (await fetch(`${server.http}/v1/poll?topic=gaptest/%23&since=${cursors[3]}`)).json()) as { gap?: { reason: string }; messages: Array<{ data: string }> };
    assert.equal(poll.gap?.reason, 'pruned');
    assert.equal(poll.messages[0].data, 'g20');
    // a cursor inside what is still kept resumes without a gap
    const fine = (await (await fetch(`${server.http}/v1/poll?topic=gaptest/%23&since=${cursors[25]}`)).json()) as { gap?: unknown; messages: Array<{ data: string }> };
    assert.equal(fine.gap, undefined);
    assert.deepEqual(
      fine.messages.map((m) => m.data),
      ['g26', 'g27', 'g28', 'g29'],
    );
  });
});
