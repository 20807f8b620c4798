import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Delivery } from '../src/core/encoded.js';
import { OmnipushError } from '../src/core/errors.js';
import { ALLOW_ALL, type Principal } from '../src/core/grants.js';
import { Hub, type GapInfo, type HubSubscriber } from '../src/core/hub.js';
import type { HistoryQuery } from '../src/core/store.js';
import type { StoredMessage } from '../src/core/message.js';
import { MemoryStore } from '../src/store/memory.js';

const anyone: Principal = { id: 'anyone', kind: 'anonymous', grants: ALLOW_ALL };

/** Records what the hub hands a subscriber (a stand-in for a transport; the hub is real). */
class Recorder implements HubSubscriber {
  readonly transport = 'test';
  got: StoredMessage[] = [];
  gaps: GapInfo[] = [];
  closed: OmnipushError | null = null;
  constructor(readonly principal: Principal = anyone) {}
  deliver(d: Delivery): void {
    this.got.push(d.message);
  }
  gap(g: GapInfo): void {
    this.gaps.push(g);
  }
  close(reason: OmnipushError): void {
    this.closed = reason;
  }
  data(): string[] {
    return this.got.map((m) => m.payload.toString());
  }
}

async function newHub(opts: ConstructorParameters<typeof Hub>[1] = {}, store = new MemoryStore()): Promise<Hub> {
  await store.open();
  return new Hub(store, opts);
}

const msg = (topic: string, data: string, extra: Record<string, unknown> = {}) => ({ topic, payload: Buffer.from(data), ...extra });

/** A store whose history reads wait until released, to publish during a replay. */
class SlowHistoryStore extends MemoryStore {
  gate: Promise<void> = Promise.resolve();
  override async history(q: HistoryQuery): Promise<StoredMessage[]> {
    await this.gate;
    return super.history(q);
  }
}

describe('Hub', () => {
  it('fans out in seq order, once per subscriber even with overlapping filters', async () => {
    const hub = await newHub();
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['a/+', 'a/#', 'a/b'], 'now'));
    await hub.publishMany(anyone, [msg('a/b', '1'), msg('x', 'no'), msg('a/c', '2')]);
    assert.deepEqual(r.data(), ['1', '2']);
    assert.ok(r.got[0].seq < r.got[1].seq);
  });

  it('gives retained messages first, one per topic, and an empty retained publish clears it', async () => {
    const hub = await newHub();
    await hub.publish(anyone, msg('r/1', 'old', { retain: true }));
    await hub.publish(anyone, msg('r/1', 'new', { retain: true }));
    await hub.publish(anyone, msg('r/2', 'two', { retain: true }));
    await hub.publish(anyone, msg('r/3', 'plain'));
    const a = new Recorder();
    await hub.subscribe(a, hub.checkSubscribe(anyone, ['r/#']));
    assert.deepEqual(a.data(), ['new', 'two']);
    await hub.publish(anyone, msg('r/1', '', { retain: true }));
    const b = new Recorder();
    await hub.subscribe(b, hub.checkSubscribe(anyone, ['r/#']));
    assert.deepEqual(b.data(), ['two']);
  });

  it('replays history after a cursor and then live, with no gap and no duplicate while publishing continues', async () => {
    const store = new SlowHistoryStore();
    const hub = await newHub({ historyPageSize: 7 }, store);
    const first = await hub.publish(anyone, msg('h', '0'));
    for (let i = 1; i < 50; i++) await hub.publish(anyone, msg('h', String(i)));
    let release!: () => void;
    store.gate = new Promise((r) => (release = r));
    const rec = new Recorder();
    const subscribed = hub.subscribe(rec, hub.checkSubscribe(anyone, ['h'], first.cursor));
    // publish while the replay is held up
    const live = Array.from({ length: 30 }, (_, i) => hub.publish(anyone, msg('h', String(50 + i))));
    await Promise.all(live);
    release();
    await subscribed;
    for (let i = 80; i < 90; i++) await hub.publish(anyone, msg('h', String(i)));
    assert.deepEqual(
      rec.data(),
      Array.from({ length: 89 }, (_, i) => String(i + 1)),
    );
  });

  it('signals a gap when history after the cursor was pruned, and for cursors of another store', async () => {
    const hub = await newHub({ defaultRetention: { maxCount: 3, maxAgeMs: 3600_000 } });
    const c = [];
    for (let i = 0; i < 8; i++) c.push(await hub.publish(anyone, msg('g', String(i))));
    assert.equal(await hub.prune(), 5);
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['g'], c[1].cursor));
    assert.equal(r.gaps[0]?.reason, 'pruned');
    assert.deepEqual(r.data(), ['5', '6', '7']);
    const ok = new Recorder();
    await hub.subscribe(ok, hub.checkSubscribe(anyone, ['g'], c[5].cursor));
    assert.deepEqual(ok.gaps, []);
    assert.deepEqual(ok.data(), ['6', '7']);
    const other = new Recorder();
    await hub.subscribe(other, hub.checkSubscribe(anyone, ['g'], 'zzzzzzzz_1'));
    assert.equal(other.gaps[0]?.reason, 'unknown_epoch');
    assert.throws(() => hub.checkSubscribe(anyone, ['g'], 'garbage'), (e: unknown) => e instanceof OmnipushError && e.code === 'invalid_cursor');
  });

  it('checks grants, limits and fields', async () => {
    const hub = await newHub({ maxPayloadBytes: 4 });
    const limited: Principal = { id: 'b', kind: 'token', grants: { publish: { allow: ['mine/#'], deny: [] }, subscribe: { allow: ['mine/#'], deny: ['mine/private'] } } };
    const codeOf = async (p: Promise<unknown> | (() => unknown)) => {
      try {
        await (typeof p === 'function' ? p() : p);
        return 'ok';
      } catch (e) {
        return (e as OmnipushError).code;
      }
    };
    assert.equal(await codeOf(hub.publish(limited, msg('yours', 'x'))), 'forbidden');
    assert.equal(await codeOf(hub.publish(limited, msg('mine/a', 'toolong'))), 'payload_too_large');
    assert.equal(await codeOf(hub.publish(limited, msg('mine/a', 'x', { event: 'a\nb' }))), 'invalid_request');
    assert.equal(await codeOf(hub.publish(limited, msg('mine/a', 'x', { ttl: -1 }))), 'invalid_request');
    assert.equal(await codeOf(() => hub.checkSubscribe(limited, ['#'])), 'forbidden');
    assert.equal(await codeOf(() => hub.checkSubscribe(limited, ['mine/private'])), 'forbidden');
    const r = new Recorder(limited);
    await hub.subscribe(r, hub.checkSubscribe(limited, ['mine/+'], 'now'));
    await hub.publish(anyone, msg('mine/private', 'p'));
    await hub.publish(anyone, msg('mine/open', 'o'));
    assert.deepEqual(r.data(), ['o']);
  });

  it('leaves expired messages out of replays', async () => {
    let now = 1_000_000;
    const hub = await newHub({ now: () => now });
    await hub.publish(anyone, msg('t', 'short', { ttl: 1 }));
    await hub.publish(anyone, msg('t', 'long', { ttl: 100 }));
    now += 5000;
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['t'], 'all'));
    assert.deepEqual(r.data(), ['long']);
  });

  it('closes a replaying subscriber whose pending live messages pass the queue bound', async () => {
    const store = new SlowHistoryStore();
    const hub = await newHub({ maxQueueBytes: 4096 }, store);
    await hub.publish(anyone, msg('q', 'seed'));
    let release!: () => void;
    store.gate = new Promise((r) => (release = r));
    const slow = new Recorder();
    const fast = new Recorder();
    await hub.subscribe(fast, hub.checkSubscribe(anyone, ['q'], 'now'));
    const sub = hub.subscribe(slow, hub.checkSubscribe(anyone, ['q'], 'all'));
    for (let i = 0; i < 20; i++) await hub.publish(anyone, msg('q', 'x'.repeat(500)));
    release();
    await sub;
    assert.equal(slow.closed?.code, 'slow_consumer');
    assert.equal(fast.got.length, 20);
    assert.equal(hub.subscriberCount, 1);
  });

  it('history() pages with more and cursor, and close() ends subscribers', async () => {
    const hub = await newHub();
    for (let i = 0; i < 5; i++) await hub.publish(anyone, msg('p', String(i)));
    const a = await hub.history(anyone, ['p'], undefined, 2);
    assert.equal(a.more, true);
    const b = await hub.history(anyone, ['p'], a.cursor, 10);
    assert.deepEqual([...a.messages, ...b.messages].map((m) => m.payload.toString()), ['0', '1', '2', '3', '4']);
    assert.equal(b.more, false);
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['p'], 'now'));
    await hub.close();
    assert.equal(r.closed?.code, 'shutting_down');
    await assert.rejects(hub.publish(anyone, msg('p', 'late')), (e: unknown) => (e as OmnipushError).code === 'shutting_down');
  });
});
