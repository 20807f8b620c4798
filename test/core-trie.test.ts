import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterMatches } from '../src/core/topic.js';
import { SubscriptionTrie } from '../src/core/trie.js';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SubscriptionTrie', () => {
  it('adds, matches, removes and prunes', () => {
    const t = new SubscriptionTrie<string>();
    assert.equal(t.add('a/+', 'x'), true);
    assert.equal(t.add('a/+', 'x'), false, 'idempotent');
    t.add('a/#', 'y');
    t.add('a/b', 'z');
    t.add('#', 'all');
    assert.equal(t.size, 4);
    assert.deepEqual([...t.matchSet('a/b')].sort(), ['all', 'x', 'y', 'z']);
    assert.deepEqual([...t.matchSet('a')].sort(), ['all', 'y']);
    assert.deepEqual([...t.matchSet('$SYS/a')], []);
    assert.equal(t.remove('a/+', 'x'), true);
    assert.equal(t.remove('a/+', 'x'), false);
    assert.equal(t.remove('nope/x', 'x'), false);
    t.remove('a/#', 'y');
    t.remove('a/b', 'z');
    t.remove('#', 'all');
    assert.equal(t.size, 0);
    assert.deepEqual([...t.matchSet('a/b')], []);
  });

  it('agrees with filterMatches on thousands of random filters and topics', () => {
    const seed = 1234;
    const rnd = prng(seed);
    const alphabet = ['a', 'b', 'c', '', '$x'];
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
    const filters: string[] = [];
    for (let i = 0; i < 400; i++) {
      const n = 1 + Math.floor(rnd() * 4);
      const levels = Array.from({ length: n }, (_, j) => {
        const r = rnd();
        if (j === n - 1 && r < 0.15) return '#';
        if (r < 0.35) return '+';
        return pick(alphabet);
      });
      filters.push(levels.join('/'));
    }
    const t = new SubscriptionTrie<number>();
    filters.forEach((f, i) => t.add(f, i));
    for (let k = 0; k < 3000; k++) {
      const n = 1 + Math.floor(rnd() * 4);
      const topic = Array.from({ length: n }, () => pick(alphabet)).join('/');
      const expected = filters.map((f, i) => (filterMatches(f, topic) ? i : -1)).filter((i) => i >= 0);
      const got = [...t.matchSet(topic)].sort((x, y) => x - y);
      assert.deepEqual(got, expected, `topic ${JSON.stringify(topic)} (seed ${seed})`);
    }
    // remove half and check again
    filters.forEach((f, i) => i % 2 === 0 && t.remove(f, i));
    for (let k = 0; k < 500; k++) {
      const topic = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(alphabet)).join('/');
      const expected = filters.map((f, i) => (i % 2 === 1 && filterMatches(f, topic) ? i : -1)).filter((i) => i >= 0);
      assert.deepEqual([...t.matchSet(topic)].sort((x, y) => x - y), expected);
    }
  });
});
