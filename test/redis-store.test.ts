import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { AppendInput } from '../src/core/store.js';
import { MemoryStore } from '../src/store/memory.js';
import { decodeBusBatch, decodeFields, encodeFields } from '../src/store/redis-codec.js';
import { RedisStore } from '../src/store/redis.js';
import { prng } from './helpers/prng.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { waitFor } from './helpers/server.js';

const input = (topic: string, data: string, extra: Partial<AppendInput> = {}): AppendInput => ({ topic, payload: Buffer.from(data), publishedAt: 1_000, ...extra });
const texts = (ms: Array<{ payload: Buffer }>) => ms.map((m) => m.payload.toString());
const all = { filters: ['#'], afterSeq: 0, toSeq: Number.MAX_SAFE_INTEGER, limit: 1_000_000, now: 0 };

let prefixes = 0;
const prefix = () => `rs${++prefixes}:`;

describe('redis store', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  const stores: RedisStore[] = [];
  const open = async (url: string, p: string) => {
    const s = new RedisStore({ url, prefix: p });
    await s.open();
    stores.push(s);
    return s;
  };
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await redis.remove();
  });

  it('keeps fields it does not know, Buffers included, in history, retained messages and the bus', async () => {
    const p = prefix();
    const s = await open(redis.url, p);
    const sub = new Redis(redis.url);
    const frames: Buffer[] = [];
    sub.on('messageBuffer', (_ch: Buffer, msg: Buffer) => frames.push(msg));
    await sub.subscribe(s.busChannel);
    const extra = { responseTopic: 'reply/here', correlationData: Buffer.from([0, 1, 2, 255]), payloadFormat: 1, nested: { list: [Buffer.from('x'), null, true, 'ü'] } };
    await s.append([{ ...input('x/1', 'hello', { retain: true, properties: [['k', 'v']] }), ...extra } as AppendInput]);
    const [h] = await s.history(all);
    const [r] = await s.retained(['x/1'], 0);
    await waitFor(() => frames.length === 1, 'the batch on the bus');
    const [b] = s.decodeBusFrame(frames[0]);
    await sub.quit();
    assert.equal(b.cursor, h.cursor);
    for (const got of [h, r, b]) {
      const m = got as unknown as Record<string, unknown>;
      assert.equal(m.responseTopic, 'reply/here');
      assert.ok(Buffer.isBuffer(m.correlationData), 'correlation data comes back as a Buffer');
      assert.deepEqual(m.correlationData, Buffer.from([0, 1, 2, 255]));
      assert.equal(m.payloadFormat, 1);
      assert.deepEqual(m.nested, { list: [Buffer.from('x'), null, true, 'ü'] });
      assert.deepEqual(m.properties, [['k', 'v']]);
      assert.equal((m.payload as Buffer).toString(), 'hello');
      assert.equal(m.retain, true);
    }
    assert.equal(h.seq, 1);
    assert.equal(b.seq, 1);
    assert.equal(s.busChannel, `${p}bus`);
    // values the codec could not give back as they were are refused, not silently changed
    assert.throws(() => encodeFields({ at: new Date() }), /cannot store at: unsupported value of type Date/);
    assert.deepEqual(decodeFields(encodeFields({ n: -1.5, big: 2 ** 40, s: '', u8: new Uint8Array([7]) })), { n: -1.5, big: 2 ** 40, s: '', u8: Buffer.from([7]) });
  });

  it('gives two stores on one Redis one consecutive seq order under concurrent appends, published on the bus in that order', async () => {
    const p = prefix();
    const a = await open(redis.url, p);
    const b = await open(redis.url, p);
    assert.equal(a.epoch, b.epoch, 'both opened the same history');
    const sub = new Redis(redis.url);
    const frames: Buffer[] = [];
    sub.on('messageBuffer', (_ch: Buffer, msg: Buffer) => frames.push(msg));
    await sub.subscribe(`${p}bus`);

    const acked = new Map<number, string>();
    const writer = async (s: RedisStore, name: string) => {
      for (let i = 0; i < 60; i++) {
        const batch = Array.from({ length: 1 + (i % 7) }, (_, j) => input(`c/${j % 3}`, `${name}${i}.${j}`));
        const out = await s.append(batch);
        for (let j = 1; j < out.length; j++) assert.equal(out[j].seq, out[j - 1].seq + 1, 'a batch gets consecutive seqs');
        for (const m of out) acked.set(m.seq, m.payload.toString());
      }
    };
    // several writers per store, so batches of both stores are in flight at once
    await Promise.all([writer(a, 'a'), writer(a, 'A'), writer(b, 'b'), writer(b, 'B')]);
    const n = acked.size;
    assert.equal(n, 4 * [...Array(60).keys()].reduce((t, i) => t + 1 + (i % 7), 0));
    assert.deepEqual(
      [...acked.keys()].sort((x, y) => x - y),
      Array.from({ length: n }, (_, i) => i + 1),
      'seqs 1..n, none twice, none skipped',
    );
    const storeInSeqOrder = [...acked].sort((x, y) => x[0] - y[0]).map(([, v]) => v[0].toLowerCase());
    const switches = storeInSeqOrder.filter((w, i) => i > 0 && w !== storeInSeqOrder[i - 1]).length;
    assert.ok(switches > 2, `appends of the two stores interleave (${switches} switches)`);

    const stored = await a.history({ ...all, toSeq: n });
    assert.deepEqual(
      stored.map((m) => [m.seq, m.payload.toString()]),
      [...acked].sort((x, y) => x[0] - y[0]),
    );
    assert.equal(Math.max(a.lastSeq(), b.lastSeq()), n);

    await waitFor(() => frames.reduce((t, f) => t + decodeBusBatch(f).length, 0) >= n, 'every batch on the bus');
    await sub.quit();
    const onBus = frames.flatMap((f) => decodeBusBatch(f));
    assert.deepEqual(
      onBus.map((m) => m.seq),
      Array.from({ length: n }, (_, i) => i + 1),
      'the bus carries batches in seq order',
    );
    assert.deepEqual(
      onBus.map((m) => (m.fields.payload as Buffer).toString()),
      onBus.map((m) => acked.get(m.seq)),
    );
  });

  it('a new instance on the same Redis keeps epoch, seqs, history, retained, pruned marks and records', async () => {
    const p = prefix();
    const a = await open(redis.url, p);
    await a.append([input('t', '1'), input('t', '2', { retain: true }), input('u', '3')]);
    await a.putRecords([{ kind: 'sess', key: 'c1', value: Buffer.from('state') }]);
    await a.setMeta('m', 'v');
    assert.equal(await a.prune(10_000, [{ filter: 'u', maxCount: 1, maxAgeMs: 1 }], { maxCount: 1000, maxAgeMs: 3600_000 }), 1);
    const epoch = a.epoch;
    await a.close();

    const b = await open(redis.url, p);
    assert.equal(b.epoch, epoch);
    assert.equal(b.lastSeq(), 3);
    assert.deepEqual(texts(await b.history(all)), ['1', '2']);
    assert.deepEqual(texts(await b.retained(['t'], 0)), ['2']);
    assert.equal(await b.prunedThrough(['u']), 3);
    assert.equal(await b.prunedThrough(['+']), 3);
    assert.equal((await b.getRecord('sess', 'c1'))?.toString(), 'state');
    assert.equal(await b.getMeta('m'), 'v');
    const [m] = await b.append([input('u', '4')]);
    assert.equal(m.seq, 4, 'a pruned seq is never handed out again');
    assert.equal(m.cursor, `${epoch}_4`);
  });

  it('shares its retained index through Redis: one node sees what another retained and cleared, and the quota counts', async () => {
    const p = prefix();
    const a = await open(redis.url, p);
    const b = await open(redis.url, p);
    await a.append([input('n/1/t', 'one', { retain: true, publisher: 'x' }), input('n/2/t', 'two', { retain: true, publisher: 'x' })]);
    assert.deepEqual(texts(await b.retained(['n/+/t'], 0)), ['one', 'two']);
    assert.equal(await b.retainedCount('x', 10), 2);
    await b.append([input('n/1/t', '', { retain: true, publisher: 'y' })]);
    assert.deepEqual(texts(await a.retained(['n/#'], 0)), ['two']);
    assert.equal(await a.retainedCount('x', 10), 1);
  });

  it('builds the retained index once for a store written before it existed', async () => {
    const p = prefix();
    const a = await open(redis.url, p);
    await a.append([input('o/1', 'one', { retain: true, publisher: 'x' }), input('o/2', 'two', { retain: true }), input('o/3', 'h')]);
    const raw = new Redis(redis.url);
    try {
      // the layout of a store from before the index
      await raw.del(`${p}retained:index`, `${p}retained:meta`, `${p}retained:count`);
      await raw.hdel(`${p}state`, 'rindex');
      const b = await open(redis.url, p);
      assert.deepEqual(texts(await b.retained(['o/+'], 0)), ['one', 'two']);
      assert.equal(await b.retainedCount('x', 10), 1);
      assert.equal(await raw.hget(`${p}state`, 'rindex'), '1');
    } finally {
      raw.disconnect();
    }
  });

  it('reads wildcard history over many topics in seq order, with paging and expired messages left out', async () => {
    const s = await open(redis.url, prefix());
    const batch: AppendInput[] = [];
    for (let i = 0; i < 1500; i++) batch.push(input(`w/${i % 300}/x`, `m${i}`, i % 5 === 0 ? { expiresAt: 500 } : {}));
    batch.push(input('$SYS/w', 'sys'), input('other', 'o'));
    await s.append(batch);
    const live = batch.filter((_, i) => i < 1500 && i % 5 !== 0).map((m) => m.payload.toString());
    const q = { afterSeq: 0, toSeq: s.lastSeq(), limit: 10_000, now: 1_000 };
    // 300 topics: more than are read one by one, so this walks the global log
    assert.deepEqual(texts(await s.history({ ...q, filters: ['w/+/x'] })), live);
    assert.deepEqual(texts(await s.history({ ...q, filters: ['#'] })), [...live, 'o']);
    // a window in the middle, cut by limit
    const page = await s.history({ ...q, filters: ['w/#'], afterSeq: 700, limit: 50 });
    assert.equal(page.length, 50);
    assert.ok(page[0].seq > 700 && page.every((m, i) => i === 0 || m.seq > page[i - 1].seq));
    // few topics behind a wildcard: read topic by topic, same answer as the log walk
    const few = await s.history({ ...q, filters: ['w/1/+', 'w/2/#', 'w/1/x'] });
    assert.deepEqual(
      texts(few),
      batch.filter((m, i) => i % 5 !== 0 && (m.topic === 'w/1/x' || m.topic === 'w/2/x')).map((m) => m.payload.toString()),
    );
  });

  it('answers random history and prunedThrough queries as the memory store does', async () => {
    const seed = Number(process.env.OMNIPUSH_PROPERTY_SEED ?? 20261124);
    const rnd = prng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const r = await open(redis.url, prefix());
    const m = new MemoryStore();
    await m.open();
    // skewed topics: a few busy ones and a long tail, under two roots and a $ root
    const topics = [...Array.from({ length: 260 }, (_, i) => `a/${i % 13}/${i}`), 'a/hot', 'b/hot', 'b/x/y', '$SYS/a'];
    const topicFor = () => (rnd() < 0.5 ? pick(['a/hot', 'b/hot', 'b/x/y', '$SYS/a']) : pick(topics));
    for (let round = 0; round < 30; round++) {
      const batch = Array.from({ length: 1 + Math.floor(rnd() * 80) }, (_, i) =>
        input(topicFor(), `${round}.${i}`, { publishedAt: round * 100, ...(rnd() < 0.1 ? { expiresAt: Math.floor(rnd() * 3000) } : {}) }),
      );
      const [x, y] = await Promise.all([r.append(batch), m.append(batch)]);
      assert.deepEqual(
        x.map((s) => s.seq),
        y.map((s) => s.seq),
      );
      if (round % 10 === 9) {
        const rules = [{ filter: 'a/+/+', maxCount: 2, maxAgeMs: 1e9 }, { filter: 'b/#', maxCount: 1e9, maxAgeMs: 1000 }];
        const fallback = { maxCount: 40, maxAgeMs: 1e9 };
        assert.equal(await r.prune(round * 100, rules, fallback), await m.prune(round * 100, rules, fallback), `pruned count, seed ${seed}`);
      }
    }
    const filterSets = [['#'], ['a/#'], ['a/+/+'], ['a/3/#'], ['a/hot'], ['a/hot', 'b/hot'], ['b/+'], ['+/hot', 'a/1/+'], ['$SYS/#'], ['+/+/+'], ['nothing/#'], ['a/5/+', 'b/x/#', 'a/hot']];
    const last = r.lastSeq();
    for (let i = 0; i < 150; i++) {
      const afterSeq = Math.floor(rnd() * last);
      const q = { filters: pick(filterSets), afterSeq, toSeq: afterSeq + 1 + Math.floor(rnd() * (last - afterSeq)), limit: pick([1, 3, 17, 100, 5000]), now: Math.floor(rnd() * 3000) };
      const [x, y] = await Promise.all([r.history(q), m.history(q)]);
      assert.deepEqual(
        x.map((s) => [s.seq, s.topic, s.payload.toString()]),
        y.map((s) => [s.seq, s.topic, s.payload.toString()]),
        `history ${JSON.stringify(q)}, seed ${seed}`,
      );
      assert.equal(await r.prunedThrough(q.filters), await m.prunedThrough(q.filters), `prunedThrough ${q.filters.join(',')}, seed ${seed}`);
    }
  });

  it('prunes a topic far over its limit and many topics in one call, in bounded steps', async () => {
    const s = await open(redis.url, prefix());
    await s.append(Array.from({ length: 2600 }, (_, i) => input('big', `b${i}`)));
    await s.append(Array.from({ length: 750 }, (_, i) => input(`many/${i % 250}`, `m${i}`)));
    const removed = await s.prune(10_000, [{ filter: 'big', maxCount: 10, maxAgeMs: 3600_000 }], { maxCount: 1, maxAgeMs: 3600_000 });
    assert.equal(removed, 2590 + 500);
    assert.deepEqual(
      texts(await s.history({ ...all, filters: ['big'] })),
      Array.from({ length: 10 }, (_, i) => `b${2590 + i}`),
    );
    assert.equal((await s.history({ ...all, filters: ['many/+'] })).length, 250);
    assert.equal(await s.prunedThrough(['big']), 2590);
    assert.equal(await s.prunedThrough(['many/#']), 2600 + 500);
    assert.equal(await s.prune(10_000, [], { maxCount: 1000, maxAgeMs: 3600_000 }), 0, 'nothing left to prune');
  });
});
