import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALLOW_ALL, DENY_ALL, canPublish, canReceive, subscribeVerdict, type Grants, type Principal } from '../src/core/grants.js';
import { filterMatches } from '../src/core/topic.js';

const principal = (grants: Grants): Principal => ({ id: 'p', kind: 'token', grants });

const alice = principal({
  publish: { allow: ['chat/alice/#', 'status/+'], deny: ['status/admin'] },
  subscribe: { allow: ['chat/#', 'news/+'], deny: ['chat/secret/#', 'chat/+/admin'] },
});

describe('canPublish', () => {
  it('needs an allow filter; deny wins', () => {
    assert.equal(canPublish(alice, 'chat/alice/x'), true);
    assert.equal(canPublish(alice, 'chat/alice'), true, 'a/# covers a');
    assert.equal(canPublish(alice, 'chat/bob/x'), false, 'no allow filter matches');
    assert.equal(canPublish(alice, 'status/alice'), true);
    assert.equal(canPublish(alice, 'status/admin'), false, 'allowed by status/+ but denied');
    assert.equal(canPublish(alice, 'status/a/b'), false);
    const denyAll = principal({ publish: { allow: ['#'], deny: ['#'] }, subscribe: { allow: [], deny: [] } });
    assert.equal(canPublish(denyAll, 'x'), false, 'deny wins over an identical allow');
  });

  it('ALLOW_ALL and DENY_ALL; # does not reach $ topics', () => {
    const all = principal(ALLOW_ALL);
    const none = principal(DENY_ALL);
    assert.equal(canPublish(all, 'any/topic'), true);
    assert.equal(canPublish(all, '$SYS/x'), false);
    assert.equal(canPublish(none, 'any/topic'), false);
    const sys = principal({ publish: { allow: ['$SYS/#'], deny: [] }, subscribe: { allow: [], deny: [] } });
    assert.equal(canPublish(sys, '$SYS/x'), true);
  });
});

describe('subscribeVerdict and canReceive', () => {
  it('allows filters wholly inside an allow filter that no deny touches', () => {
    assert.equal(subscribeVerdict(alice, 'chat/room'), 'allow');
    assert.equal(subscribeVerdict(alice, 'chat/room/+/x'), 'allow');
    assert.equal(subscribeVerdict(alice, 'news/+'), 'allow');
    assert.equal(subscribeVerdict(alice, 'news/today'), 'allow');
  });

  it('denies filters wider than every allow filter, and filters a deny covers', () => {
    assert.equal(subscribeVerdict(alice, 'news/#'), 'deny', 'news/# also matches news and news/a/b');
    assert.equal(subscribeVerdict(alice, '#'), 'deny');
    assert.equal(subscribeVerdict(alice, '+/room'), 'deny');
    assert.equal(subscribeVerdict(alice, 'other'), 'deny');
    assert.equal(subscribeVerdict(alice, 'chat/secret/x'), 'deny');
    assert.equal(subscribeVerdict(alice, 'chat/secret/#'), 'deny');
    assert.equal(subscribeVerdict(alice, 'chat/secret'), 'deny', 'chat/secret/# covers its parent');
    assert.equal(subscribeVerdict(alice, 'chat/x/admin'), 'deny');
    assert.equal(subscribeVerdict(principal(DENY_ALL), 'a'), 'deny');
    const same = principal({ publish: DENY_ALL.publish, subscribe: { allow: ['a/#'], deny: ['a/#'] } });
    assert.equal(subscribeVerdict(same, 'a/b'), 'deny', 'deny wins over an identical allow');
  });

  it('answers filter when a deny overlaps part of an allowed filter, then checks each topic', () => {
    assert.equal(subscribeVerdict(alice, 'chat/#'), 'filter');
    assert.equal(subscribeVerdict(alice, 'chat/+'), 'filter', 'chat/+ meets chat/secret');
    assert.equal(subscribeVerdict(alice, 'chat/+/x'), 'filter', 'chat/+/x meets chat/secret/x');
    assert.equal(subscribeVerdict(alice, 'chat/room/+'), 'filter', 'chat/room/+ meets chat/room/admin');
    assert.equal(canReceive(alice, 'chat/secret/x'), false);
    assert.equal(canReceive(alice, 'chat/secret'), false);
    assert.equal(canReceive(alice, 'chat/room/admin'), false);
    assert.equal(canReceive(alice, 'chat/room/x'), true);
    assert.equal(canReceive(alice, 'chat/open'), true);
    assert.equal(canReceive(alice, 'news/a/b'), false, 'no allow filter matches');
  });

  it('is sound on every small grant: allow never lets a denied topic through', () => {
    const levels = ['a', 'b', '+'];
    const filters: string[] = [];
    for (const x of [...levels, '#']) filters.push(x);
    for (const x of levels) for (const y of [...levels, '#']) filters.push(`${x}/${y}`);
    const topics: string[] = [];
    for (const x of ['a', 'b', 'z', '$x']) {
      topics.push(x);
      for (const y of ['a', 'b', 'z']) {
        topics.push(`${x}/${y}`);
        for (const z of ['a', 'z']) topics.push(`${x}/${y}/${z}`);
      }
    }
    let allows = 0;
    let filtered = 0;
    for (const allow of filters) {
      for (const deny of filters) {
        const p = principal({ publish: DENY_ALL.publish, subscribe: { allow: [allow], deny: [deny] } });
        for (const f of filters) {
          const v = subscribeVerdict(p, f);
          const matched = topics.filter((t) => filterMatches(f, t));
          const receivable = matched.filter((t) => canReceive(p, t));
          if (v === 'allow') {
            allows++;
            assert.equal(receivable.length, matched.length, `allow [${allow}] deny [${deny}] sub ${f}: allow lets a denied topic through`);
          }
          if (v === 'filter') filtered++;
          if (receivable.length === 0 && matched.length > 0) assert.notEqual(v, 'allow');
          // a topic canReceive refuses is either denied or not allowed, exactly as canPublish-style rules say
          for (const t of matched) assert.equal(canReceive(p, t), !filterMatches(deny, t) && filterMatches(allow, t));
        }
      }
    }
    assert.ok(allows > 100 && filtered > 100, `both verdicts occur (${allows} allow, ${filtered} filter)`);
  });
});
