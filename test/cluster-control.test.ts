import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { LocalControl, RedisControl } from '../src/cluster/control.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { waitFor } from './helpers/server.js';

const log = pino({ level: 'silent' });

describe('cluster control channel over Redis', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  const controls: RedisControl[] = [];
  const node = async (prefix: string, nodeTimeoutMs = 600) => {
    const c = new RedisControl({ url: redis.url, prefix, heartbeatMs: 50, nodeTimeoutMs, log });
    await c.start();
    controls.push(c);
    return c;
  };
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const c of controls) await c.close();
    await redis?.remove();
  });

  it('sees nodes come and go, and carries events to the other nodes only', async () => {
    const a = await node('n:');
    const b = await node('n:');
    assert.notEqual(a.nodeId, b.nodeId);
    await waitFor(() => a.nodes().length === 2 && b.nodes().length === 2, 'both nodes to see each other');
    assert.deepEqual([...a.nodes()], [a.nodeId, b.nodeId].sort());
    const got: string[] = [];
    a.on('ping', (e) => got.push(`a:${String(e.n)}`));
    b.on('ping', (e) => got.push(`b:${String(e.n)}:${e.from === a.nodeId}`));
    a.publish('ping', { n: 1 });
    a.publish('ping', { n: 2 });
    await waitFor(() => got.includes('b:2:true'), 'the second event at b');
    assert.deepEqual(got, ['b:1:true', 'b:2:true'], 'a does not hear itself');
    await b.close();
    await waitFor(() => a.nodes().length === 1, 'a to see b leave');
    assert.equal(a.isLive(b.nodeId), false);
  });

  it('resubscribes its event channel after a reconnect, and a refused resubscription neither ends the process nor the retries', async () => {
    const a = await node('k:');
    const b = await node('k:');
    await waitFor(() => a.nodes().length === 2 && b.nodes().length === 2, 'both nodes to see each other');
    const admin = new Redis(redis.url);
    const rejections: unknown[] = [];
    const onRejection = (e: unknown) => rejections.push(e);
    process.on('unhandledRejection', onRejection);
    try {
      // no channel may be subscribed any more: the reconnected subscribers are refused (NOPERM)
      await admin.call('ACL', 'LOG', 'RESET');
      await admin.call('ACL', 'SETUSER', 'default', 'resetchannels');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitFor(async () => {
        const log = (await admin.call('ACL', 'LOG')) as unknown[][];
        return log.filter((entry) => entry.includes('channel')).length >= 2;
      }, 'both nodes to try to resubscribe and be refused');
      assert.deepEqual(rejections, [], 'a refused resubscription is no unhandled rejection');
      // allowed again: the next reconnect resubscribes, and events flow
      await admin.call('ACL', 'SETUSER', 'default', 'allchannels');
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      const got: number[] = [];
      b.on('ping', (e) => got.push(Number(e.n)));
      let n = 0;
      await waitFor(() => {
        a.publish('ping', { n: ++n });
        return got.length > 0;
      }, 'an event from a to reach b after the reconnect', 10_000);
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
      await admin.call('ACL', 'SETUSER', 'default', 'allchannels').catch(() => undefined);
      admin.disconnect();
    }
  });

  it('grants a lease to one holder; renews and releases only with its token; it expires', async () => {
    const a = await node('l:');
    const b = await node('l:');
    const t = await a.acquire('job', 300);
    assert.ok(t);
    assert.equal(await b.acquire('job', 300), null);
    assert.equal(await b.renew('job', 'not-the-token', 300), false);
    await b.release('job', 'not-the-token');
    assert.equal(await b.acquire('job', 300), null, 'a wrong token frees nothing');
    assert.equal(await a.renew('job', t, 300), true);
    await a.release('job', t);
    const t2 = await b.acquire('job', 200);
    assert.ok(t2, 'free after release');
    assert.equal(await a.renew('job', t, 300), false, 'an old token renews nothing');
    const t3 = await waitFor(() => a.acquire('job', 300), 'the unrenewed lease to expire');
    assert.ok(t3);
  });

  it('counts claim generations, names the previous holder, and unclaims only its own', async () => {
    const a = await node('c:');
    const b = await node('c:');
    assert.deepEqual(await a.claim('s', 'x'), { gen: 1, previous: undefined });
    assert.deepEqual(await b.claim('s', 'x'), { gen: 2, previous: a.nodeId });
    await a.unclaim('s', 'x');
    assert.deepEqual(await a.claim('s', 'x'), { gen: 3, previous: b.nodeId }, 'a could not drop b\'s claim');
    await a.unclaim('s', 'x');
    assert.deepEqual(await b.claim('s', 'x'), { gen: 1, previous: undefined });
  });

  it('reads claims, and takes one over only as it was seen (one of two racers wins)', async () => {
    const a = await node('ci:');
    const b = await node('ci:');
    assert.equal(await a.claimOf('s', 'x'), undefined);
    await a.claim('s', 'x');
    const seen = await b.claimOf('s', 'x');
    assert.deepEqual(seen, { node: a.nodeId, gen: 1 });
    assert.equal(await b.claimIf('s', 'x', undefined), 0, 'not as seen: it is claimed');
    assert.equal(await b.claimIf('s', 'x', { node: a.nodeId, gen: 2 }), 0, 'not as seen: another generation');
    const wins = await Promise.all([b.claimIf('s', 'x', seen), a.claimIf('s', 'x', seen)]);
    assert.deepEqual(wins.sort(), [0, 2], 'one racer takes it, with the next generation');
    assert.equal((await a.claimOf('s', 'x'))?.gen, 2);
    assert.equal(await a.claimIf('s', 'free', undefined), 1, 'an unclaimed key as seen (nobody\'s)');
    assert.deepEqual(
      [...(await b.claims('s'))].sort(),
      [
        ['free', { node: a.nodeId, gen: 1 }],
        ['x', (await a.claimOf('s', 'x'))!],
      ],
    );
  });

  it('maps: take once among racers, compare-and-set, take only an expected value', async () => {
    const a = await node('m:');
    const b = await node('m:');
    await a.mapSet('w', 'k', 'v1');
    const wins = await Promise.all([a.mapTake('w', 'k'), b.mapTake('w', 'k'), a.mapTake('w', 'k')]);
    assert.deepEqual(wins.filter(Boolean).length, 1);
    await a.mapSet('w', 'k', 'v1');
    assert.equal(await b.mapReplace('w', 'k', 'other', 'v2'), false);
    assert.equal(await b.mapReplace('w', 'k', 'v1', 'v2'), true);
    assert.equal(await a.mapTake('w', 'k', 'v1'), false);
    assert.deepEqual([...(await a.mapAll('w'))], [['k', 'v2']]);
    assert.equal(await a.mapTake('w', 'k', 'v2'), true);
    assert.equal((await a.mapAll('w')).size, 0);
  });

  it('a lone process is its own cluster', async () => {
    const l = new LocalControl();
    assert.equal(l.clustered, false);
    assert.deepEqual([...l.nodes()], [l.nodeId]);
    assert.ok(await l.acquire());
    assert.equal(await l.mapTake('m', 'x'), false);
    await l.mapSet('m', 'x', '1');
    assert.equal(await l.mapTake('m', 'x'), true);
  });
});
