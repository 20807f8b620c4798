import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import type { AppendInput } from '../src/core/store.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { filterMatches } from '../src/core/topic.js';
import { REPO_ROOT, within } from './helpers/server.js';
import { storeKinds } from './helpers/store-kinds.js';

const input = (topic: string, data: string, extra: Partial<AppendInput> = {}): AppendInput => ({ topic, payload: Buffer.from(data), publishedAt: 1_000, ...extra });
const texts = (ms: Array<{ payload: Buffer }>) => ms.map((m) => m.payload.toString());

const { kinds, sqliteDir } = storeKinds('store');

for (const [kind, make] of kinds) {
  describe(`${kind} store`, () => {
    it('assigns consecutive seqs and cursors and reads history windows', async () => {
      const s = make();
      await s.open();
      const out = await s.append([input('a', '1'), input('b', '2'), input('a', '3')]);
      assert.deepEqual(
        out.map((m) => m.seq),
        [1, 2, 3],
      );
      assert.equal(s.lastSeq(), 3);
      assert.ok(out.every((m) => m.cursor.startsWith(`${s.epoch}_`)));
      const q = { afterSeq: 0, toSeq: 3, limit: 10, now: 0 };
      assert.deepEqual(texts(await s.history({ ...q, filters: ['a'] })), ['1', '3']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['+'] })), ['1', '2', '3']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['a', 'b'], afterSeq: 1 })), ['2', '3']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['#'], toSeq: 2 })), ['1', '2']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['#'], limit: 1 })), ['1']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['nothing'] })), []);
      await s.close();
    });

    it('keeps $ topics away from leading wildcards, properties in order, and skips expired messages', async () => {
      const s = make();
      await s.open();
      await s.append([input('$SYS/x', 'sys'), input('p', 'props', { properties: [['z', '1'], ['a', '2'], ['z', '3']] }), input('e', 'gone', { expiresAt: 500 }), input('e', 'here', { expiresAt: 5000 })]);
      const q = { afterSeq: 0, toSeq: 10, limit: 10, now: 1000 };
      assert.deepEqual(texts(await s.history({ ...q, filters: ['#'] })), ['props', 'here']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['$SYS/#'] })), ['sys']);
      const [p] = await s.history({ ...q, filters: ['p'] });
      assert.deepEqual(p.properties, [['z', '1'], ['a', '2'], ['z', '3']]);
      await s.close();
    });

    it('keeps one retained message per topic, clears it with an empty payload, and keeps it through pruning', async () => {
      const s = make();
      await s.open();
      await s.append([input('r/1', 'a', { retain: true }), input('r/1', 'b', { retain: true }), input('r/2', 'c', { retain: true }), input('r/3', 'x', { retain: true, expiresAt: 10 })]);
      assert.deepEqual(texts(await s.retained(['r/#'], 100)), ['b', 'c']);
      await s.append([input('r/2', '', { retain: true })]);
      assert.deepEqual(texts(await s.retained(['r/#'], 100)), ['b']);
      await s.append(Array.from({ length: 5 }, (_, i) => input('r/1', `n${i}`)));
      await s.prune(10_000, [], { maxCount: 1, maxAgeMs: 3600_000 });
      assert.deepEqual(texts(await s.retained(['r/1'], 100)), ['b'], 'retained survives pruning of its history');
      await s.close();
    });

    it('indexes retained topics by level: exact, +, # (with its parent), $ topics, empty levels, overlapping filters, counts by publisher', async () => {
      const s = make();
      await s.open();
      const topics = ['a', 'a/b', 'a/b/c', 'a/x/c', 'a//c', '/a', 'ab/b', 'a/b!/c', '$SYS/a', 'é/ü', 'z/1', 'z/2/3'];
      await s.append(topics.map((t, i) => input(t, t, { retain: true, publisher: i % 2 ? 'odd' : 'even' })));
      const cases: string[][] = [['a'], ['a/#'], ['a/+'], ['a/+/c'], ['+/b'], ['+'], ['#'], ['+/#'], ['$SYS/#'], ['+/+/c', 'a/#'], ['a/b', 'a/+', '#'], ['é/+'], ['/+'], ['nothing/#']];
      for (const filters of cases) {
        const want = topics.filter((t) => filters.some((f) => filterMatches(f, t)));
        assert.deepEqual(texts(await s.retained(filters, 0)), want, JSON.stringify(filters));
        const refs: string[] = [];
        for await (const page of s.retainedIndex(filters, 2)) {
          assert.ok(page.length <= 2);
          refs.push(...page.map((r) => r.topic));
        }
        assert.deepEqual(refs.sort(), [...want].sort(), `index of ${JSON.stringify(filters)}`);
      }
      assert.deepEqual(texts(await s.retainedOf(['a/b', 'missing', 'a'], 0)), ['a/b', 'a']);
      assert.equal(await s.retainedCount('even', 100), 6);
      assert.equal(await s.retainedCount('even', 4), 4, 'counted up to the cap');
      // replaced by another publisher, then cleared
      await s.append([input('a', 'a2', { retain: true, publisher: 'odd' }), input('a/b', '', { retain: true, publisher: 'odd' })]);
      assert.equal(await s.retainedCount('even', 100), 5);
      assert.equal(await s.retainedCount('odd', 100), 6);
      assert.deepEqual(texts(await s.retained(['a/#'], 0)), ['a/b/c', 'a/x/c', 'a//c', 'a/b!/c', 'a2']);
      await s.close();
    });

    it('prunes by count and age per rule and reports prunedThrough', async () => {
      const s = make();
      await s.open();
      await s.append(Array.from({ length: 10 }, (_, i) => input('keep/x', `k${i}`, { publishedAt: 1000 + i })));
      await s.append(Array.from({ length: 10 }, (_, i) => input('old/x', `o${i}`, { publishedAt: i < 6 ? 0 : 9000 })));
      const removed = await s.prune(10_000, [{ filter: 'keep/#', maxCount: 3, maxAgeMs: 3600_000 }], { maxCount: 1000, maxAgeMs: 5000 });
      assert.equal(removed, 7 + 6);
      const q = { afterSeq: 0, toSeq: 100, limit: 100, now: 10_000 };
      assert.deepEqual(texts(await s.history({ ...q, filters: ['keep/x'] })), ['k7', 'k8', 'k9']);
      assert.deepEqual(texts(await s.history({ ...q, filters: ['old/x'] })), ['o6', 'o7', 'o8', 'o9']);
      assert.equal(await s.prunedThrough(['keep/#']), 7);
      assert.equal(await s.prunedThrough(['old/x']), 16);
      assert.equal(await s.prunedThrough(['+/x']), 16);
      assert.equal(await s.prunedThrough(['other']), 0);
      await s.close();
    });

    it('keeps records by kind and key: atomic batches, deletes, prefix listing in key order', async () => {
      const s = make();
      await s.open();
      await s.putRecords([
        { kind: 'q', key: 'c1/0002', value: Buffer.from('b') },
        { kind: 'q', key: 'c1/0001', value: Buffer.from('a') },
        { kind: 'q', key: 'c2/0001', value: Buffer.from('z') },
        { kind: 'other', key: 'c1/0001', value: Buffer.from('o') },
      ]);
      assert.equal((await s.getRecord('q', 'c1/0001'))?.toString(), 'a');
      assert.equal(await s.getRecord('q', 'nope'), undefined);
      assert.deepEqual(
        (await s.listRecords('q', 'c1/')).map((r) => [r.key, r.value.toString()]),
        [
          ['c1/0001', 'a'],
          ['c1/0002', 'b'],
        ],
      );
      assert.deepEqual(
        (await s.listRecords('q', '', 2)).map((r) => r.key),
        ['c1/0001', 'c1/0002'],
      );
      // page by page: keys after `after` (exclusive), within the prefix
      assert.deepEqual((await s.listRecords('q', '', 2, 'c1/0001')).map((r) => r.key), ['c1/0002', 'c2/0001']);
      assert.deepEqual((await s.listRecords('q', 'c1/', 10, 'c1/0001')).map((r) => r.key), ['c1/0002']);
      assert.deepEqual((await s.listRecords('q', 'c2/', 10, 'a')).map((r) => r.key), ['c2/0001'], 'an `after` before the prefix starts at the prefix');
      assert.deepEqual((await s.listRecords('q', 'c1/', 10, 'c1/0002')).map((r) => r.key), []);
      await s.putRecords([
        { kind: 'q', key: 'c1/0001', value: null },
        { kind: 'q', key: 'c1/0002', value: Buffer.from('B') },
      ]);
      assert.deepEqual(
        (await s.listRecords('q', 'c1/')).map((r) => [r.key, r.value.toString()]),
        [['c1/0002', 'B']],
      );
      await s.close();
    });

    it('lists records after a key, within the prefix (paging)', async () => {
      const s = make();
      await s.open();
      const keys = ['a 1', 'a 2', 'a 3', 'b 1'];
      await s.putRecords(keys.map((key) => ({ kind: 'p', key, value: Buffer.from(key) })));
      const page = async (prefix: string, limit: number, after?: string) => (await s.listRecords('p', prefix, limit, after)).map((r) => r.key);
      assert.deepEqual(await page('a ', 2), ['a 1', 'a 2']);
      assert.deepEqual(await page('a ', 2, 'a 2'), ['a 3']);
      assert.deepEqual(await page('a ', 2, 'a 3'), []);
      // an `after` before the prefix starts at the prefix; the prefix still bounds the end
      assert.deepEqual(await page('b ', 5, 'a 2'), ['b 1']);
      assert.deepEqual(await page('', 5, 'a 3'), ['b 1']);
      await s.close();
    });

    it('stores meta values', async () => {
      const s = make();
      await s.open();
      assert.equal(await s.getMeta('k'), undefined);
      await s.setMeta('k', 'v1');
      await s.setMeta('k', 'v2');
      assert.equal(await s.getMeta('k'), 'v2');
      await s.close();
    });
  });
}

describe('sqlite store across restarts', () => {
  it('keeps epoch, history, retained and seq, and never reuses a seq after pruning everything', async () => {
    const dir = sqliteDir();
    const a = new SqliteStore(dir);
    await a.open();
    await a.append([input('t', '1'), input('t', '2', { retain: true })]);
    const epoch = a.epoch;
    await a.prune(10_000, [], { maxCount: 1000, maxAgeMs: 1 });
    await a.close();
    const b = new SqliteStore(dir);
    await b.open();
    assert.equal(b.epoch, epoch);
    assert.equal(b.lastSeq(), 2);
    assert.deepEqual(texts(await b.retained(['t'], 0)), ['2']);
    assert.equal(await b.prunedThrough(['t']), 2);
    const [m] = await b.append([input('t', '3')]);
    assert.equal(m.seq, 3);
    await b.putRecords([{ kind: 'k', key: 'a', value: Buffer.from('kept') }]);
    await b.close();
    const c = new SqliteStore(dir);
    await c.open();
    assert.equal((await c.getRecord('k', 'a'))?.toString(), 'kept');
    await c.close();
  });

  it('a batch of any size keeps every field of every message, in seq order, across a restart', async () => {
    const dir = sqliteDir();
    const a = new SqliteStore(dir);
    await a.open();
    // 1 + 150 + 63: each size a different mix of the multi-row INSERTs (64, 32, ... 1 rows)
    const sizes = [1, 150, 63];
    const full = (i: number): AppendInput =>
      input(`f/${i % 7}`, `m${i}`, {
        contentType: `text/x-${i}`,
        event: `e${i}`,
        properties: [['k', String(i)], ['k', 'again']],
        expiresAt: 1_000_000 + i,
        publisher: `p${i}`,
        qos: (i % 3) as 0 | 1 | 2,
        payloadFormat: 1,
        responseTopic: `r/${i}`,
        correlationData: Buffer.from([i & 255, 0, 7]),
        publishedAt: 2_000 + i,
      });
    const sent: AppendInput[] = [];
    let i = 0;
    for (const n of sizes) {
      const batch = Array.from({ length: n }, () => (i++ % 2 ? full(i) : input(`f/${i % 7}`, `m${i}`)));
      sent.push(...batch.map((m) => ({ ...m })));
      const out = await a.append(batch);
      assert.deepEqual(out.map((m) => m.payload.toString()), batch.map((m) => m.payload.toString()));
    }
    await a.close();
    const b = new SqliteStore(dir);
    await b.open();
    const all = await b.history({ filters: ['#'], afterSeq: 0, toSeq: b.lastSeq(), limit: 1000, now: 0 });
    assert.deepEqual(all.map((m) => m.seq), sent.map((_, j) => j + 1));
    for (let j = 0; j < sent.length; j++) {
      const { publishedAt, ...fields } = sent[j];
      const got = all[j] as unknown as Record<string, unknown>;
      assert.equal(got.publishedAt, publishedAt);
      assert.equal(got.retain, false);
      for (const [k, v] of Object.entries(fields)) assert.deepEqual(got[k], v, `message ${j + 1}, ${k}`);
    }
    await b.close();
  });

  it('every acknowledged append survives SIGKILL of the writing process', async () => {
    const dir = sqliteDir();
    const script = `
      import { SqliteStore } from ${JSON.stringify(`${REPO_ROOT}dist/src/store/sqlite.js`)};
      const s = new SqliteStore(process.argv[1]);
      await s.open();
      for (let i = 0; ; i++) {
        const out = await s.append(Array.from({ length: 1 + (i % 20) }, (_, j) => ({ topic: 'k/' + (j % 3), payload: Buffer.from(i + ':' + j), publishedAt: Date.now() })));
        process.stdout.write(out.map((m) => m.seq + ' ' + m.payload.toString()).join('\\n') + '\\n');
      }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Map<number, string>();
    const lines = createInterface({ input: child.stdout! });
    const exited = new Promise((r) => child.once('exit', r));
    await within(
      new Promise<void>((resolve) => {
        lines.on('line', (l) => {
          const [seq, data] = l.split(' ');
          acked.set(Number(seq), data);
          if (acked.size >= 5000) resolve();
        });
      }),
      30_000,
      '5000 acknowledged appends',
    );
    child.kill('SIGKILL');
    await exited;
    const s = new SqliteStore(dir);
    await s.open();
    const all = await s.history({ filters: ['#'], afterSeq: 0, toSeq: s.lastSeq(), limit: 1_000_000, now: Date.now() });
    const stored = new Map(all.map((m) => [m.seq, m.payload.toString()]));
    const lost = [...acked].filter(([seq, data]) => stored.get(seq) !== data);
    assert.equal(lost.length, 0, `${lost.length} of ${acked.size} acknowledged appends lost`);
    await s.close();
  });
});
