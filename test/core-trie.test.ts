import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterMatches } from '../src/core/topic.js';
import { SubscriptionTrie } from '../src/core/trie.js';
import { prng } from './helpers/prng.js';

/** Looks inside the trie to check that removals leave no empty nodes behind. */
function nodeCount(t: SubscriptionTrie<unknown>): number {
  interface Node {
    children?: Map<string, Node>;
    plus?: Node;
  }
  const walk = (n: Node): number => {
    let c = 1;
    if (n.children) for (const child of n.children.values()) c += walk(child);
    if (n.plus) c += walk(n.plus);
    return c;
  };
  return walk((t as unknown as { root: Node }).root);
}

const sorted = <T>(xs: Iterable<T>) => [...xs].sort();

describe('SubscriptionTrie', () => {
  it('adds, matches, removes and keeps its size', () => {
    const t = new SubscriptionTrie<string>();
    assert.equal(t.size, 0);
    assert.equal(t.add('a/+', 'x'), true);
    assert.equal(t.add('a/+', 'x'), false, 'the same pair twice is one entry');
    assert.equal(t.add('a/+', 'x2'), true);
    assert.equal(t.add('a/#', 'y'), true);
    assert.equal(t.add('a/b', 'z'), true);
    assert.equal(t.add('#', 'all'), true);
    assert.equal(t.add('#', 'all'), false);
    assert.equal(t.size, 5);
    assert.deepEqual(sorted(t.matchSet('a/b')), ['all', 'x', 'x2', 'y', 'z']);
    assert.deepEqual(sorted(t.matchSet('a')), ['all', 'y'], 'a/# matches its parent level');
    assert.deepEqual(sorted(t.matchSet('a/c/d')), ['all', 'y']);
    assert.deepEqual(sorted(t.matchSet('b')), ['all']);
    assert.equal(t.remove('a/+', 'x'), true);
    assert.equal(t.remove('a/+', 'x'), false, 'already gone');
    assert.equal(t.remove('nope/x', 'x'), false, 'never there');
    assert.equal(t.remove('a/b', 'y'), false, 'value under another filter');
    assert.equal(t.remove('a/#', 'z'), false);
    assert.equal(t.size, 4);
    assert.deepEqual(sorted(t.matchSet('a/b')), ['all', 'x2', 'y', 'z']);
  });

  it('visits a value once per matching filter; matchSet deduplicates', () => {
    const t = new SubscriptionTrie<string>();
    t.add('a/b', 'v');
    t.add('a/+', 'v');
    t.add('a/#', 'v');
    t.add('#', 'v');
    t.add('+/b', 'w');
    const visited: string[] = [];
    t.match('a/b', (v) => visited.push(v));
    assert.deepEqual(visited.sort(), ['v', 'v', 'v', 'v', 'w']);
    assert.deepEqual(sorted(t.matchSet('a/b')), ['v', 'w']);
  });

  it('keeps $ topics away from leading wildcards', () => {
    const t = new SubscriptionTrie<string>();
    for (const f of ['#', '+', '+/monitor/Clients', '+/#', '$SYS/#', '$SYS/monitor/+', 'a/+', 'a/#']) t.add(f, f);
    assert.deepEqual(sorted(t.matchSet('$SYS/monitor/Clients')), ['$SYS/#', '$SYS/monitor/+']);
    assert.deepEqual(sorted(t.matchSet('$SYS')), ['$SYS/#']);
    assert.deepEqual(sorted(t.matchSet('x/monitor/Clients')), ['#', '+/#', '+/monitor/Clients']);
    assert.deepEqual(sorted(t.matchSet('a/$x')), ['#', '+/#', 'a/#', 'a/+'], '$ only counts in the first level');
  });

  it('matches + against empty levels', () => {
    const t = new SubscriptionTrie<string>();
    for (const f of ['+', '+/+', '/+', 'a/+/c', 'sport/+']) t.add(f, f);
    assert.deepEqual(sorted(t.matchSet('/finance')), ['+/+', '/+']);
    assert.deepEqual(sorted(t.matchSet('a//c')), ['a/+/c']);
    assert.deepEqual(sorted(t.matchSet('sport/')), ['+/+', 'sport/+']);
    assert.deepEqual(sorted(t.matchSet('sport')), ['+']);
  });

  it('prunes empty nodes on removal', () => {
    const t = new SubscriptionTrie<number>();
    const empty = nodeCount(t);
    const filters = ['a/b/c/d', 'a/b/+/d', 'a/+/#', '+/+/+', 'x/#', 'a/b', '#', 'a/b/c/d/e/f'];
    filters.forEach((f, i) => t.add(f, i));
    t.add('a/b/c/d', 100);
    assert.ok(nodeCount(t) > empty + 8);
    t.remove('a/b/c/d/e/f', 7);
    const afterDeep = nodeCount(t);
    t.add('a/b/c/d/e/f', 7);
    t.remove('a/b/c/d/e/f', 7);
    assert.equal(nodeCount(t), afterDeep, 'adding and removing a filter leaves the shape as it was');
    t.remove('a/b/c/d', 0);
    assert.deepEqual([...t.matchSet('a/b/c/d')].sort((x, y) => x - y), [1, 2, 6, 100], 'the other value under that filter stays');
    filters.forEach((f, i) => t.remove(f, i));
    t.remove('a/b/c/d', 100);
    assert.equal(t.size, 0);
    assert.equal(nodeCount(t), empty, 'back to the bare root');
    assert.deepEqual([...t.matchSet('a/b/c/d')], []);
  });

  for (const seed of [1, 1234, 99991]) {
    it(`agrees with filterMatches over random filters, topics and removals (seed ${seed})`, () => {
      const rnd = prng(seed);
      const names = ['a', 'b', 'c', '', '$x'];
      const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
      const randomFilter = () => {
        const n = 1 + Math.floor(rnd() * 5);
        return Array.from({ length: n }, (_, j) => {
          const r = rnd();
          if (j === n - 1 && r < 0.2) return '#';
          if (r < 0.45) return '+';
          return pick(names);
        }).join('/');
      };
      const randomTopic = () => Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => pick(names)).join('/');

      // the model: which values sit under which filter
      const model = new Map<number, string>();
      const t = new SubscriptionTrie<number>();
      let nextId = 0;
      const check = (rounds: number) => {
        for (let k = 0; k < rounds; k++) {
          const topic = randomTopic();
          const expected = [...model].filter(([, f]) => filterMatches(f, topic)).map(([id]) => id).sort((x, y) => x - y);
          const visits: number[] = [];
          t.match(topic, (v) => visits.push(v));
          assert.deepEqual(visits.sort((x, y) => x - y), expected, `topic ${JSON.stringify(topic)} (seed ${seed})`);
        }
        assert.equal(t.size, model.size);
      };

      for (let i = 0; i < 500; i++) {
        const f = randomFilter();
        const id = nextId++;
        assert.equal(t.add(f, id), true);
        model.set(id, f);
      }
      check(2000);
      // churn: remove some, add some (including filters already present with new values)
      for (let round = 0; round < 5; round++) {
        for (const [id, f] of [...model]) {
          if (rnd() < 0.3) {
            assert.equal(t.remove(f, id), true);
            model.delete(id);
            assert.equal(t.remove(f, id), false);
          }
        }
        for (let i = 0; i < 100; i++) {
          const f = rnd() < 0.5 && model.size ? pick([...model.values()]) : randomFilter();
          const id = nextId++;
          t.add(f, id);
          model.set(id, f);
        }
        check(400);
      }
      for (const [id, f] of model) assert.equal(t.remove(f, id), true);
      model.clear();
      check(50);
      assert.equal(nodeCount(t), 1);
    });
  }
});
