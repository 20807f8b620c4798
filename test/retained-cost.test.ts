import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import type { Delivery } from '../src/core/encoded.js';
import { ALLOW_ALL, type Principal } from '../src/core/grants.js';
import { Hub, type HubSubscriber } from '../src/core/hub.js';
import type { StoredMessage } from '../src/core/message.js';
import type { AppendInput, Store } from '../src/core/store.js';
import { filterMatches } from '../src/core/topic.js';
import { MemoryStore } from '../src/store/memory.js';
import { RedisStore } from '../src/store/redis.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { redisMissing } from './helpers/redis.js';
import { within } from './helpers/server.js';
import { storeKinds } from './helpers/store-kinds.js';

/** Unrelated retained topics: a tree of 1000 × 100 leaves under `noise`. */
const N = 100_000;
const noise = (i: number) => `noise/${Math.floor(i / 100)}/${i}`;
/** What the filters below are about, `$` and empty levels included. */
const RELATED = ['s', 's/1/temp', 's/2/temp', 's/2/hum', 's//temp', 'other/1/temp', '$SYS/s/1/temp', 's/1/temp/deep'];
/** Filters whose cost must not depend on the noise: the trie paths they walk do not go through it. */
const CHEAP = [['s/1/temp'], ['s/+/temp'], ['s/#'], ['+/1/temp'], ['s/+/temp', 's/#']];
/** More filters for exactness, some of them walking through the noise. */
const EXACT = [...CHEAP, ['#'], ['+'], ['+/+'], ['noise/7/+'], ['+/+/temp'], ['s/+'], ['s/+/+/deep'], ['#', 's/1/temp'], ['noise/42/4242', 'noise/999/#']];

const anyone: Principal = { id: 'anyone', kind: 'anonymous', grants: ALLOW_ALL };
const retainedInput = (topic: string, i: number): AppendInput => ({ topic, payload: Buffer.from(`v${i}`), retain: true, publishedAt: 1_000, publisher: 'seed' });

async function seed(store: Store, topics: string[]): Promise<void> {
  for (let i = 0; i < topics.length; i += 2000) await store.append(topics.slice(i, i + 2000).map((t, j) => retainedInput(t, i + j)));
}

/** A subscriber that records what the hub hands it. */
class Recorder implements HubSubscriber {
  readonly transport = 'test';
  readonly principal = anyone;
  got: StoredMessage[] = [];
  deliver(d: Delivery): void {
    this.got.push(d.message);
  }
  gap(): void {}
  close(): void {}
}

/** Subscribes without a cursor (retained, then live) and returns what arrived by the time subscribe resolved. */
async function subscribeRetained(hub: Hub, filters: string[]): Promise<StoredMessage[]> {
  const r = new Recorder();
  await hub.subscribe(r, hub.checkSubscribe(anyone, filters));
  hub.unsubscribe(r);
  return r.got;
}

interface LoopFigures<T> {
  /** Event-loop delay (ms) sampled every 1 ms: what a client waiting on this process feels. */
  p99: number;
  max: number;
  /**
   * CPU time (ms) each turn of the event loop took, p99: what this process did between two turns,
   * which other processes on a shared machine cannot stretch the way they stretch wall time.
   */
  turnCpuP99: number;
  result: T;
}

setFlagsFromString('--expose-gc');
/** A full collection now, so garbage the earlier tests left is not collected inside a measurement. */
const collectGarbage = runInNewContext('gc') as () => void;

/** Event-loop figures while `work` runs. */
async function loopFigures<T>(work: () => Promise<T>): Promise<LoopFigures<T>> {
  collectGarbage();
  const h = monitorEventLoopDelay({ resolution: 1 });
  const turns: number[] = [];
  let running = true;
  let last = process.cpuUsage();
  const tick = (): void => {
    const d = process.cpuUsage(last);
    last = process.cpuUsage();
    turns.push((d.user + d.system) / 1000);
    if (running) setImmediate(tick);
  };
  h.enable();
  setImmediate(tick);
  const result = await work();
  running = false;
  h.disable();
  turns.sort((a, b) => a - b);
  return { p99: h.percentile(99) / 1e6, max: h.max / 1e6, turnCpuP99: turns[Math.floor(turns.length * 0.99)] ?? 0, result };
}

/**
 * The delay this machine adds by itself (other processes taking the cores): an idle second's p99.
 * About 1 ms on a quiet machine.
 */
async function idleDelay(): Promise<number> {
  return (await loopFigures(() => new Promise((r) => setTimeout(r, 1000)))).p99;
}

/**
 * The 10 ms budget: CPU per loop turn is what a request costs the loop, whatever else runs on the
 * machine, and is asserted. The wall-clock delay of this process also holds the collections of the
 * 100k-topic store the test keeps in its own heap, and whatever other processes take of the cores:
 * it is reported here, and measured on a server alone by the benchmark (`adversarial`).
 */
function assertBudget(what: string, f: LoopFigures<unknown>, idle: number): void {
  const msg = `${what}: event-loop delay p99 ${f.p99.toFixed(2)} ms (max ${f.max.toFixed(2)}), CPU per loop turn p99 ${f.turnCpuP99.toFixed(2)} ms; idle delay p99 ${idle.toFixed(2)} ms`;
  console.log(`# ${msg}`);
  assert.ok(f.turnCpuP99 <= 10, msg);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timeSubscribes(hub: Hub, filters: string[], reps: number): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await subscribeRetained(hub, filters);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

const { kinds, sqliteDir, redisUrl, redisPrefix } = storeKinds('retained');

for (const [kind, make] of kinds) {
  describe(`${kind} store: retained subscribes cost what they match`, () => {
    let big: Store;
    let none: Store;
    let bigHub: Hub;
    let noneHub: Hub;
    /** Every retained topic of `big`, in seq order (made when needed: 100k strings held all along weigh on GC figures). */
    const allTopics = () => [...Array.from({ length: N }, (_, i) => noise(i)), ...RELATED];

    before(async () => {
      big = make();
      none = make();
      await big.open();
      await none.open();
      await seed(big, allTopics());
      await seed(none, RELATED);
      bigHub = new Hub(big);
      noneHub = new Hub(none);
    });
    after(async () => {
      await big.close();
      await none.close();
      // let the 100k go before the next store's turn, so its GC does not weigh on the next figures
      big = none = undefined as unknown as Store;
      bigHub = noneHub = undefined as unknown as Hub;
    });

    it('returns exactly the matching retained messages, in seq order, each once', async () => {
      const bigTopics = allTopics();
      // the store answers `$` filters too (the hub's grants keep clients off `$SYS`)
      for (const filters of [['$SYS/#'], ['$SYS/+/+/temp'], ['+/+/+/temp']]) {
        const want = bigTopics.filter((t) => filters.some((f) => filterMatches(f, t)));
        assert.deepEqual((await big.retained(filters, 0)).map((m) => m.topic), want, `filters ${JSON.stringify(filters)}`);
      }
      for (const filters of EXACT) {
        const want = bigTopics.filter((t) => filters.some((f) => filterMatches(f, t)));
        const got = await subscribeRetained(bigHub, filters);
        assert.deepEqual(
          got.map((m) => m.topic),
          want,
          `filters ${JSON.stringify(filters)}`,
        );
        assert.ok(got.every((m, i) => i === 0 || m.seq > got[i - 1].seq));
        assert.ok(got.every((m) => m.retain && m.payload.length > 0));
      }
    });

    it('costs about the same with 100,000 unrelated retained topics as with none', async () => {
      for (const filters of CHEAP) {
        await timeSubscribes(noneHub, filters, 3);
        await timeSubscribes(bigHub, filters, 3);
        const base = await timeSubscribes(noneHub, filters, 15);
        const loaded = await timeSubscribes(bigHub, filters, 15);
        // generous for a shared machine; reading the 100k would take tens of ms
        assert.ok(loaded <= base * 3 + 2, `${JSON.stringify(filters)}: median ${loaded.toFixed(2)} ms with 100k unrelated vs ${base.toFixed(2)} ms with none`);
      }
    });

    if (kind !== 'redis') {
      it('keeps every loop turn under 10 ms of CPU while 20 such subscribes run at once', async () => {
        const idle = await idleDelay();
        const f = await loopFigures(async () => {
          // rounds of 20 subscribes at once, for a window long enough to sample
          const until = performance.now() + 3000;
          const counts: number[] = [];
          for (let round = 0; performance.now() < until; round++) {
            const runs = Array.from({ length: 20 }, (_, i) => subscribeRetained(bigHub, CHEAP[(round + i) % CHEAP.length]));
            for (const got of await within(Promise.all(runs), 30_000, '20 subscribes')) counts.push(got.length);
          }
          return counts;
        });
        assert.ok(f.result.length >= 20 && f.result.every((n) => n > 0));
        assertBudget(`${kind}: 20 subscribers at once`, f, idle);
      });

      it('gives a # subscriber all 100,000 in seq order, paged, without stalling the loop', async () => {
        const idle = await idleDelay();
        const f = await loopFigures(() => within(subscribeRetained(bigHub, ['#']), 60_000, '# replay'));
        const got = f.result;
        assert.equal(got.length, N + RELATED.length - 1);
        assert.ok(got.every((m, i) => i === 0 || m.seq > got[i - 1].seq));
        assertBudget(`${kind}: # replay of ${got.length}`, f, idle);
      });
    }
  });
}

describe('memory follows the live data', () => {
  const history = (topic: string, i: number): AppendInput => ({ topic, payload: Buffer.from(`h${i}`), publishedAt: 1_000 });
  const everything = { maxCount: 1000, maxAgeMs: 10 };

  it('sqlite: topics pruned away leave the per-topic map, also after a restart, and their gap marks stay', async () => {
    const dir = sqliteDir();
    const s = new SqliteStore(dir);
    await s.open();
    await s.append(Array.from({ length: 3000 }, (_, i) => history(`p/${i}`, i)));
    await s.append([{ ...history('keep', 0), publishedAt: 50_000 }]);
    assert.equal(s.indexSizes().topics, 3001);
    assert.equal(await s.prune(50_000, [], everything), 3000);
    assert.equal(s.indexSizes().topics, 1, 'only the topic that still has history');
    assert.equal(await s.prunedThrough(['p/7']), 8, 'the pruned mark is still known (on disk)');
    assert.equal(await s.prunedThrough(['p/+']), 3000);
    await s.close();
    const again = new SqliteStore(dir);
    await again.open();
    assert.equal(again.indexSizes().topics, 1);
    assert.equal(await again.prunedThrough(['p/#']), 3000);
    await again.close();
  });

  it('memory: cleared retained topics leave the trie and the quota counts, pruned ones the topic map', async () => {
    const s = new MemoryStore();
    await s.open();
    await seed(s, Array.from({ length: 5000 }, (_, i) => `r/${i % 50}/${i}`));
    assert.deepEqual(s.indexSizes(), { topics: 5000, retained: 5000, retainedNodes: 5051, publishers: 1 });
    await s.append(Array.from({ length: 5000 }, (_, i) => ({ ...retainedInput(`r/${i % 50}/${i}`, i), payload: Buffer.alloc(0) })));
    assert.equal(await s.prune(50_000, [], everything), 10_000);
    const sizes = s.indexSizes();
    assert.deepEqual({ ...sizes, topics: 0 }, { topics: 0, retained: 0, retainedNodes: 0, publishers: 0 });
    // pruned-away topics keep only a bounded number of exact gap marks
    assert.ok(sizes.topics <= 10_000);
    assert.deepEqual(await s.retained(['#'], 0), []);
  });

  it('redis: cleared retained topics leave the index, the metadata and the counts', { skip: redisMissing || false }, async () => {
    const prefix = redisPrefix('retained-mem');
    const s = new RedisStore({ url: redisUrl(), prefix });
    await s.open();
    const raw = new Redis(redisUrl());
    try {
      await seed(s, Array.from({ length: 3000 }, (_, i) => `r/${i % 30}/${i}`));
      assert.deepEqual(await Promise.all([raw.zcard(`${prefix}retained:index`), raw.hlen(`${prefix}retained:meta`), raw.hget(`${prefix}retained:count`, 'seed')]), [3000, 3000, '3000']);
      await s.append(Array.from({ length: 3000 }, (_, i) => ({ ...retainedInput(`r/${i % 30}/${i}`, i), payload: Buffer.alloc(0) })));
      assert.deepEqual(await Promise.all([raw.zcard(`${prefix}retained:index`), raw.hlen(`${prefix}retained:meta`), raw.hlen(`${prefix}retained:count`), raw.hlen(`${prefix}retained`)]), [0, 0, 0, 0]);
    } finally {
      raw.disconnect();
      await s.close();
    }
  });
});
