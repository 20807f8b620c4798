import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionRegistry } from '../src/core/connections.js';
import { DENY_ALL, type Principal } from '../src/core/grants.js';
import { QuotaGate, type QuotaLimits } from '../src/core/quota.js';

const off = { messagesPerSecond: 0, bytesPerSecond: 0, burst: 1 };
const limits = (over: Partial<QuotaLimits> = {}): QuotaLimits => ({
  connectionsPerPrincipal: 0,
  connectionsPerAddress: 0,
  subscriptionsPerConnection: 0,
  subscriptionsPerPrincipal: 0,
  publish: { perPrincipal: off, perAddress: off },
  ...over,
});
const alice: Principal = { id: 'alice', kind: 'token', grants: DENY_ALL };
const anon: Principal = { id: 'anonymous', kind: 'anonymous', grants: DENY_ALL };

describe('quota gate (core, with a clock of its own)', () => {
  it('takes a burst, then refills at the rate; a refusal takes nothing and says when to retry', () => {
    let now = 0;
    const g = new QuotaGate(limits({ publish: { perPrincipal: { messagesPerSecond: 2, bytesPerSecond: 0, burst: 2 }, perAddress: off } }), new ConnectionRegistry(), null, () => now);
    try {
      for (let i = 0; i < 4; i++) assert.equal(g.checkPublish(alice, 'a', 1, 10), null, `burst message ${i}`);
      const e = g.checkPublish(alice, 'a', 1, 10);
      assert.equal(e?.code, 'rate_limited');
      assert.equal(e?.details?.retryAfter, 1);
      now = 499;
      assert.notEqual(g.checkPublish(alice, 'a', 1, 10), null, 'not yet one token');
      now = 500;
      assert.equal(g.checkPublish(alice, 'a', 1, 10), null, 'one token after 0.5 s');
      assert.notEqual(g.checkPublish(alice, 'a', 1, 10), null);
      // anonymous is held per address only
      for (let i = 0; i < 10; i++) assert.equal(g.checkPublish(anon, 'a', 1, 10), null);
    } finally {
      g.close();
    }
  });

  it('lets a message bigger than the byte bucket through when it is full, leaving it in debt', () => {
    let now = 0;
    const g = new QuotaGate(limits({ publish: { perPrincipal: off, perAddress: { messagesPerSecond: 0, bytesPerSecond: 100, burst: 1 } } }), new ConnectionRegistry(), null, () => now);
    try {
      assert.equal(g.checkPublish(anon, 'a', 1, 500), null);
      const e = g.checkPublish(anon, 'a', 1, 1);
      assert.equal(e?.details?.limit, 'publish.perAddress');
      now = 4000;
      assert.notEqual(g.checkPublish(anon, 'a', 1, 1), null, 'still paying off 400 bytes at 100 B/s');
      now = 4010;
      assert.equal(g.checkPublish(anon, 'a', 1, 1), null);
      assert.equal(g.checkPublish(anon, 'b', 1, 100), null, 'another address has its own bucket');
      assert.equal(g.bucketCount, 2);
      now = 60_000;
      g.sweep();
      assert.equal(g.bucketCount, 0, 'full buckets are forgotten');
    } finally {
      g.close();
    }
  });

  it('gives back what the address bucket took when the principal bucket refuses', () => {
    const now = 0;
    const rate = { messagesPerSecond: 1, bytesPerSecond: 0, burst: 2 };
    const g = new QuotaGate(limits({ publish: { perPrincipal: rate, perAddress: rate } }), new ConnectionRegistry(), null, () => now);
    const bob: Principal = { id: 'bob', kind: 'token', grants: DENY_ALL };
    try {
      assert.equal(g.checkPublish(alice, 'a', 2, 0), null);
      assert.equal(g.checkPublish(alice, 'b', 1, 0)?.details?.limit, 'publish.perPrincipal');
      // address b was not charged for alice's refused message: bob may send b's whole burst
      assert.equal(g.checkPublish(bob, 'b', 2, 0), null);
    } finally {
      g.close();
    }
  });

  it('counts reserved connections until they are given back', () => {
    const g = new QuotaGate(limits({ connectionsPerPrincipal: 1, connectionsPerAddress: 2 }), new ConnectionRegistry());
    g.checkConnection(alice, 'x');
    g.reserve(alice, 'x');
    assert.throws(() => g.checkConnection(alice, 'y'), /connectionsPerPrincipal/);
    assert.doesNotThrow(() => g.checkConnection(alice, 'y', 0, 1), 'a takeover replaces the connection');
    g.reserve(anon, 'x');
    assert.throws(() => g.checkConnection(anon, 'x'), /connectionsPerAddress/);
    g.unreserve(alice, 'x');
    g.unreserve(anon, 'x');
    assert.equal(g.reserved, 0);
    assert.doesNotThrow(() => g.checkConnection(alice, 'x'));
  });
});
