import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Delivery, WireFormat } from '../src/core/encoded.js';
import { OmnipushError } from '../src/core/errors.js';
import { ALLOW_ALL, type Principal } from '../src/core/grants.js';
import { Hub, type GapInfo, type HubOptions, type HubSubscriber, type PublishRequest } from '../src/core/hub.js';
import { formatCursor, type StoredMessage } from '../src/core/message.js';
import type { HistoryQuery, RetainedRef } from '../src/core/store.js';
import { filterMatches } from '../src/core/topic.js';
import { MemoryStore } from '../src/store/memory.js';
import { prng } from './helpers/prng.js';

const anyone: Principal = { id: 'anyone', kind: 'anonymous', grants: ALLOW_ALL };

/** Subscribes to chat/# but must not see chat/secret/...: a partially denied filter. */
const partial: Principal = {
  id: 'partial',
  kind: 'token',
  grants: { publish: { allow: [], deny: [] }, subscribe: { allow: ['chat/#'], deny: ['chat/secret/#'] } },
};

type HubEvent = { kind: 'message'; m: StoredMessage } | { kind: 'gap'; g: GapInfo } | { kind: 'close'; e: OmnipushError };

/** Rejects with `what` if `p` has not settled within `ms`; never a fixed sleep. */
async function deadline<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise the test opens when it chooses. */
class Gate {
  open!: () => void;
  readonly promise = new Promise<void>((r) => (this.open = r));
}

/**
 * Records what the hub hands a subscriber: a stand-in for a transport; the hub itself is real.
 * It notes contract breaches (out of order, duplicates, anything after close) instead of throwing,
 * since deliver() must not throw.
 */
class Recorder implements HubSubscriber {
  readonly transport = 'test';
  readonly events: HubEvent[] = [];
  readonly breaches: string[] = [];
  private lastSeq = 0;
  private calls = 0;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly principal: Principal = anyone,
    private readonly opts: { format?: WireFormat<unknown>; yieldEvery?: number } = {},
  ) {}

  deliver(d: Delivery): void {
    const m = d.message;
    if (this.closed) this.breaches.push(`seq ${m.seq} delivered after close`);
    if (m.seq <= this.lastSeq) this.breaches.push(`seq ${m.seq} after ${this.lastSeq}`);
    this.lastSeq = m.seq;
    if (this.opts.format) d.encoded(this.opts.format);
    this.record({ kind: 'message', m });
  }
  gap(g: GapInfo): void {
    if (this.got.length) this.breaches.push('gap after messages');
    this.record({ kind: 'gap', g });
  }
  close(e: OmnipushError): void {
    if (this.closed) this.breaches.push('closed twice');
    this.record({ kind: 'close', e });
  }
  /** With `yieldEvery`, every n-th replayed message makes the hub wait a turn of the event loop. */
  backpressure(): Promise<void> | null {
    if (!this.opts.yieldEvery || ++this.calls % this.opts.yieldEvery !== 0) return null;
    return new Promise((r) => setImmediate(r));
  }

  get got(): StoredMessage[] {
    return this.events.flatMap((e) => (e.kind === 'message' ? [e.m] : []));
  }
  get gaps(): GapInfo[] {
    return this.events.flatMap((e) => (e.kind === 'gap' ? [e.g] : []));
  }
  get closed(): OmnipushError | undefined {
    for (const e of this.events) if (e.kind === 'close') return e.e;
    return undefined;
  }
  data(): string[] {
    return this.got.map((m) => m.payload.toString());
  }
  seqs(): number[] {
    return this.got.map((m) => m.seq);
  }

  /** Resolves once `pred` holds (checked after every event). */
  until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    if (pred()) return Promise.resolve();
    return deadline(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!pred()) return;
          this.listeners.delete(check);
          resolve();
        };
        this.listeners.add(check);
      }),
      what,
      ms,
    );
  }

  private record(e: HubEvent): void {
    this.events.push(e);
    for (const l of [...this.listeners]) l();
  }
}

/** MemoryStore whose reads can be held at a gate, or made to take a turn of the event loop each. */
class GatedStore extends MemoryStore {
  historyGate: Gate | null = null;
  retainedGate: Gate | null = null;
  yieldOnRead = false;
  historyReads = 0;
  override async history(q: HistoryQuery): Promise<StoredMessage[]> {
    this.historyReads++;
    if (this.historyGate) await this.historyGate.promise;
    if (this.yieldOnRead) await new Promise((r) => setImmediate(r));
    return super.history(q);
  }
  override async *retainedIndex(filters: string[], pageSize: number): AsyncGenerator<RetainedRef[]> {
    if (this.retainedGate) await this.retainedGate.promise;
    if (this.yieldOnRead) await new Promise((r) => setImmediate(r));
    yield* super.retainedIndex(filters, pageSize);
  }
}

async function newHub<S extends MemoryStore = MemoryStore>(opts: HubOptions = {}, store?: S): Promise<{ hub: Hub; store: S }> {
  const s = store ?? (new MemoryStore() as S);
  await s.open();
  return { hub: new Hub(s, opts), store: s };
}

const msg = (topic: string, data: string, extra: Partial<PublishRequest> = {}): PublishRequest => ({ topic, payload: Buffer.from(data), ...extra });

async function codeOf(fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof OmnipushError, `expected an OmnipushError, got ${String(e)}`);
    return e.code;
  }
}

describe('Hub: publish and fan-out', () => {
  it('stores each publish with a cursor and fans out to matching subscribers in seq order', async () => {
    let published = 0;
    let deliveries = 0;
    const { hub } = await newHub({ observer: { published: (n) => (published += n), fannedOut: (n) => (deliveries += n) } });
    const filters = [['a/+'], ['a/#', 'b'], ['#'], ['nothing']];
    const recs = filters.map(() => new Recorder());
    for (let i = 0; i < recs.length; i++) await hub.subscribe(recs[i], hub.checkSubscribe(anyone, filters[i], 'now'));
    const topics = ['a/1', 'a/2', 'b', 'a', 'a/1/x', 'c'];
    // a burst that the hub stores as one group, then one by one
    const burst = await Promise.all(Array.from({ length: 60 }, (_, i) => hub.publish(anyone, msg(topics[i % topics.length], `m${i}`))));
    const single: StoredMessage[] = [];
    for (let i = 60; i < 90; i++) single.push(await hub.publish(anyone, msg(topics[i % topics.length], `m${i}`)));
    const all = [...burst, ...single];
    assert.deepEqual(
      all.map((m) => m.seq),
      Array.from({ length: 90 }, (_, i) => i + 1),
      'seqs are consecutive in publish order',
    );
    for (const m of all) {
      assert.equal(m.cursor, formatCursor(hub.epoch, m.seq));
      assert.equal(m.publisher, 'anyone');
      assert.equal(m.retain, false);
    }
    assert.equal(hub.headCursor(), all[89].cursor);
    let total = 0;
    for (let i = 0; i < recs.length; i++) {
      const want = all.filter((m) => filters[i].some((f) => filterMatches(f, m.topic)));
      assert.deepEqual(recs[i].seqs(), want.map((m) => m.seq), `subscriber ${filters[i].join(',')}`);
      assert.deepEqual(recs[i].data(), want.map((m) => m.payload.toString()));
      assert.deepEqual(recs[i].breaches, []);
      total += want.length;
    }
    assert.ok(recs[3].got.length === 0 && recs[2].got.length === 90);
    assert.equal(published, 90);
    assert.equal(deliveries, total);
  });

  it('delivers once per subscriber with overlapping filters, live and while catching up', async () => {
    const { hub, store } = await newHub({}, new GatedStore());
    const overlapping = ['o/#', 'o/+', 'o/a', '+/a', '#'];
    const live = new Recorder();
    await hub.subscribe(live, hub.checkSubscribe(anyone, overlapping, 'now'));
    await hub.publish(anyone, msg('o/a', '1'));
    store.historyGate = new Gate();
    const catching = new Recorder();
    const subscribed = hub.subscribe(catching, hub.checkSubscribe(anyone, overlapping, 'all'));
    await hub.publish(anyone, msg('o/a', '2'));
    await hub.publish(anyone, msg('o/b', '3'));
    store.historyGate.open();
    await deadline(subscribed, 'replay');
    await hub.publish(anyone, msg('o/a', '4'));
    assert.deepEqual(live.data(), ['1', '2', '3', '4']);
    assert.deepEqual(catching.data(), ['1', '2', '3', '4']);
    assert.deepEqual([...live.breaches, ...catching.breaches], []);
  });

  it('encodes a message once per wire format, however many subscribers share it', async () => {
    let encodes = 0;
    const format: WireFormat<Buffer> = {
      name: 'counting',
      encode: (m) => {
        encodes++;
        return Buffer.from(`frame ${m.seq}`);
      },
    };
    const { hub } = await newHub();
    const recs = Array.from({ length: 5 }, () => new Recorder(anyone, { format }));
    for (const r of recs) await hub.subscribe(r, hub.checkSubscribe(anyone, ['e'], 'now'));
    for (let i = 0; i < 3; i++) await hub.publish(anyone, msg('e', String(i)));
    assert.equal(encodes, 3);
    assert.ok(recs.every((r) => r.got.length === 3));
  });

  it('stops delivering after unsubscribe, and refuses the same subscriber twice', async () => {
    const { hub } = await newHub();
    const r = new Recorder();
    const plan = hub.checkSubscribe(anyone, ['u'], 'now');
    await hub.subscribe(r, plan);
    assert.equal(await codeOf(() => hub.subscribe(r, plan)), 'invalid_request');
    await hub.publish(anyone, msg('u', '1'));
    hub.unsubscribe(r);
    hub.unsubscribe(r);
    await hub.publish(anyone, msg('u', '2'));
    assert.deepEqual(r.data(), ['1']);
    assert.equal(hub.subscriberCount, 0);
    assert.equal(r.closed, undefined, 'unsubscribe is the transport leaving, not the hub closing it');
  });
});

describe('Hub: retained messages', () => {
  it('gives a new subscriber the newest retained message of each topic first, then live ones', async () => {
    const { hub, store } = await newHub({}, new GatedStore());
    await hub.publish(anyone, msg('r/1', 'old', { retain: true }));
    await hub.publish(anyone, msg('r/1', 'new', { retain: true }));
    await hub.publish(anyone, msg('r/2', 'two', { retain: true }));
    await hub.publish(anyone, msg('r/3', 'plain'));
    await hub.publish(anyone, msg('s/1', 'elsewhere', { retain: true }));
    const a = new Recorder();
    await hub.subscribe(a, hub.checkSubscribe(anyone, ['r/#']));
    assert.deepEqual(a.data(), ['new', 'two'], 'retained only, oldest first; no plain history');
    assert.ok(a.got.every((m) => m.retain));

    // publishes that land while the retained read is under way come after, exactly once
    store.retainedGate = new Gate();
    const b = new Recorder();
    const subscribed = hub.subscribe(b, hub.checkSubscribe(anyone, ['r/+']));
    await hub.publish(anyone, msg('r/4', 'live'));
    await hub.publish(anyone, msg('r/2', 'two-b', { retain: true }));
    store.retainedGate.open();
    await deadline(subscribed, 'retained replay');
    await hub.publish(anyone, msg('r/1', 'after'));
    assert.deepEqual(b.data(), ['new', 'live', 'two-b', 'after']);
    assert.deepEqual(b.breaches, []);
  });

  it('clears a topic’s retained message with an empty retained publish', async () => {
    const { hub } = await newHub();
    await hub.publish(anyone, msg('r/1', 'one', { retain: true }));
    await hub.publish(anyone, msg('r/2', 'two', { retain: true }));
    const watcher = new Recorder();
    await hub.subscribe(watcher, hub.checkSubscribe(anyone, ['r/#'], 'now'));
    await hub.publish(anyone, msg('r/1', '', { retain: true }));
    // MQTT 3.3.1.3: the clearing publish itself still goes to current subscribers
    assert.deepEqual(watcher.got.map((m) => [m.topic, m.payload.length, m.retain]), [['r/1', 0, true]]);
    const late = new Recorder();
    await hub.subscribe(late, hub.checkSubscribe(anyone, ['r/#']));
    assert.deepEqual(late.data(), ['two']);
    await hub.publish(anyone, msg('r/1', 'again', { retain: true }));
    const later = new Recorder();
    await hub.subscribe(later, hub.checkSubscribe(anyone, ['r/#']));
    assert.deepEqual(later.data(), ['two', 'again']);
  });

  it('does not hand out an expired retained message', async () => {
    let now = 5_000_000;
    const { hub } = await newHub({ now: () => now });
    await hub.publish(anyone, msg('t/a', 'brief', { retain: true, ttl: 2 }));
    await hub.publish(anyone, msg('t/b', 'lasting', { retain: true }));
    const before = new Recorder();
    await hub.subscribe(before, hub.checkSubscribe(anyone, ['t/+']));
    assert.deepEqual(before.data(), ['brief', 'lasting']);
    now += 2000;
    const after = new Recorder();
    await hub.subscribe(after, hub.checkSubscribe(anyone, ['t/+']));
    assert.deepEqual(after.data(), ['lasting']);
  });
});

describe('Hub: resume from a cursor', () => {
  interface ResumeCase {
    seed: number;
    total: number;
    /** Subscribe once this many messages are published... */
    subscribeAt: number;
    /** ...resuming from the cursor of this one. */
    cursorAt: number;
    burst: boolean;
    pageSize: number;
    yieldEvery?: number;
    principal?: Principal;
  }

  async function resumeWhilePublishing(c: ResumeCase): Promise<void> {
    const store = new GatedStore();
    store.yieldOnRead = true; // each history page takes a turn of the event loop, so publishes interleave
    const { hub } = await newHub({ historyPageSize: c.pageSize }, store);
    const rnd = prng(c.seed);
    const topics = ['chat/1', 'chat/2', 'chat/secret/x', 'other', 'chat/1/deep'];
    const filters = ['chat/+', 'chat/1', 'chat/secret/#'];
    const p = c.principal ?? anyone;
    const rec = new Recorder(p, { yieldEvery: c.yieldEvery });
    const published: StoredMessage[] = [];
    let subscribed: Promise<void> | undefined;
    let fromSeq = 0;
    let seqAtSubscribe = 0;
    let seqAtReplayEnd = -1;
    let i = 0;
    while (i < c.total) {
      const n = c.burst ? 1 + Math.floor(rnd() * 6) : 1;
      const batch: Array<Promise<StoredMessage>> = [];
      for (let k = 0; k < n && i < c.total; k++, i++) {
        batch.push(hub.publish(anyone, msg(topics[Math.floor(rnd() * topics.length)], `m${i}`)));
      }
      published.push(...(await Promise.all(batch)));
      if (!subscribed && published.length >= c.subscribeAt) {
        const from = published[c.cursorAt];
        fromSeq = from.seq;
        seqAtSubscribe = store.lastSeq();
        subscribed = hub.subscribe(rec, hub.checkSubscribe(p, c.principal ? ['chat/#'] : filters, from.cursor));
        subscribed.then(
          () => (seqAtReplayEnd = store.lastSeq()),
          () => {},
        );
      }
    }
    await deadline(subscribed!, 'replay to finish');
    await hub.idle();
    const receives = (m: StoredMessage) =>
      c.principal ? filterMatches('chat/#', m.topic) && !filterMatches('chat/secret/#', m.topic) : filters.some((f) => filterMatches(f, m.topic));
    const want = published.filter((m) => m.seq > fromSeq && receives(m)).map((m) => m.seq);
    assert.ok(want.length > 50, 'enough messages to mean something');
    assert.deepEqual(rec.seqs(), want, `seed ${c.seed}: exactly the messages after the cursor, in order`);
    assert.deepEqual(rec.breaches, []);
    assert.deepEqual(rec.gaps, []);
    assert.ok(seqAtReplayEnd > seqAtSubscribe, `publishes landed during the replay (${seqAtSubscribe} → ${seqAtReplayEnd})`);
    assert.ok(store.historyReads > 3, 'the replay took several pages');
  }

  it('replays after the cursor, then live, with no gap and no duplicate while publishes continue', async () => {
    await resumeWhilePublishing({ seed: 7, total: 400, subscribeAt: 200, cursorAt: 40, burst: false, pageSize: 4 });
  });

  it('…with publishes arriving in groups', async () => {
    await resumeWhilePublishing({ seed: 8, total: 500, subscribeAt: 250, cursorAt: 10, burst: true, pageSize: 5 });
  });

  it('…with a subscriber that applies back-pressure during the replay', async () => {
    await resumeWhilePublishing({ seed: 9, total: 400, subscribeAt: 220, cursorAt: 30, burst: true, pageSize: 16, yieldEvery: 3 });
  });

  it('…with a partially denied filter checked per message', async () => {
    await resumeWhilePublishing({ seed: 10, total: 400, subscribeAt: 200, cursorAt: 20, burst: true, pageSize: 6, principal: partial });
  });

  it("since='now' skips history and retained messages", async () => {
    const { hub } = await newHub();
    await hub.publish(anyone, msg('n', 'old'));
    await hub.publish(anyone, msg('n', 'kept', { retain: true }));
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['n'], 'now'));
    await hub.publish(anyone, msg('n', 'new'));
    assert.deepEqual(r.data(), ['new']);
  });

  it("since='all' (or '0') replays every stored message, not only retained ones, then live", async () => {
    const { hub } = await newHub();
    await hub.publish(anyone, msg('s/1', 'a'));
    await hub.publish(anyone, msg('x', 'skip'));
    await hub.publish(anyone, msg('s/2', 'b', { retain: true }));
    await hub.publish(anyone, msg('s/1', 'c'));
    for (const since of ['all', '0']) {
      const r = new Recorder();
      await hub.subscribe(r, hub.checkSubscribe(anyone, ['s/+'], since));
      assert.deepEqual(r.data(), ['a', 'b', 'c'], since);
      assert.deepEqual(r.gaps, []);
    }
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['s/+'], 'all'));
    await hub.publish(anyone, msg('s/3', 'd'));
    assert.deepEqual(r.data(), ['a', 'b', 'c', 'd']);
  });

  it('signals a gap first when history after the cursor was pruned, then sends the rest', async () => {
    const { hub } = await newHub({ defaultRetention: { maxCount: 3, maxAgeMs: 3600_000 } });
    const c: StoredMessage[] = [];
    for (let i = 0; i < 8; i++) c.push(await hub.publish(anyone, msg('g', String(i))));
    await hub.publish(anyone, msg('other', 'x'));
    assert.equal(await hub.prune(), 5, 'g keeps 3 of 8');
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['g'], c[1].cursor));
    await hub.publish(anyone, msg('g', 'live'));
    assert.equal(r.events[0].kind, 'gap');
    assert.deepEqual(r.gaps, [{ from: c[1].cursor, reason: 'pruned' }]);
    assert.deepEqual(r.data(), ['5', '6', '7', 'live']);
    assert.deepEqual(r.breaches, []);
    // resuming from the last pruned message or later loses nothing: no gap
    for (const [k, want] of [
      [4, ['5', '6', '7']],
      [6, ['7']],
    ] as const) {
      const ok = new Recorder();
      await hub.subscribe(ok, hub.checkSubscribe(anyone, ['g'], c[k].cursor));
      assert.deepEqual(ok.gaps, [], `cursor ${k}`);
      assert.deepEqual(ok.data().slice(0, want.length), want);
    }
    // pruning of a topic the filters do not match is no gap for them
    const elsewhere = new Recorder();
    await hub.subscribe(elsewhere, hub.checkSubscribe(anyone, ['other'], c[0].cursor));
    assert.deepEqual(elsewhere.gaps, []);
    assert.deepEqual(elsewhere.data(), ['x']);
  });

  it('signals a gap for a cursor of another store or one ahead of this store, then replays everything', async () => {
    const { hub } = await newHub();
    const { hub: otherHub } = await newHub();
    for (let i = 0; i < 5; i++) await otherHub.publish(anyone, msg('e', `other${i}`));
    const foreign = (await otherHub.publish(anyone, msg('e', 'x'))).cursor;
    await hub.publish(anyone, msg('e', 'a'));
    await hub.publish(anyone, msg('e', 'b'));
    const r = new Recorder();
    await hub.subscribe(r, hub.checkSubscribe(anyone, ['e'], foreign));
    assert.equal(r.events[0].kind, 'gap');
    assert.deepEqual(r.gaps, [{ from: foreign, reason: 'unknown_epoch' }]);
    assert.deepEqual(r.data(), ['a', 'b']);
    const ahead = formatCursor(hub.epoch, 99);
    const r2 = new Recorder();
    await hub.subscribe(r2, hub.checkSubscribe(anyone, ['e'], ahead));
    assert.deepEqual(r2.gaps, [{ from: ahead, reason: 'ahead' }]);
    assert.deepEqual(r2.data(), ['a', 'b']);
  });

  it('refuses malformed cursors with invalid_cursor', async () => {
    const { hub } = await newHub();
    await hub.publish(anyone, msg('c', '1'));
    for (const bad of ['garbage', 'abc_', '_1', 'ABC_1', 'a_1_2', 'a-1', 'x'.repeat(100), 'abcdefgh_zzzzzzzzzzzz', 'abc_1 ']) {
      assert.equal(await codeOf(() => hub.checkSubscribe(anyone, ['c'], bad)), 'invalid_cursor', bad);
      assert.equal(await codeOf(() => hub.history(anyone, ['c'], bad, 10)), 'invalid_cursor', bad);
    }
  });
});

describe('Hub: grants and limits', () => {
  it('refuses a forbidden publish and stores nothing', async () => {
    const { hub, store } = await newHub();
    const limited: Principal = { id: 'b', kind: 'token', grants: { publish: { allow: ['mine/#'], deny: ['mine/locked'] }, subscribe: { allow: [], deny: [] } } };
    assert.equal(await codeOf(() => hub.publish(limited, msg('yours', 'x'))), 'forbidden');
    assert.equal(await codeOf(() => hub.publish(limited, msg('mine/locked', 'x'))), 'forbidden');
    assert.equal(await codeOf(() => hub.publishMany(limited, [msg('mine/a', 'ok'), msg('yours', 'no')])), 'forbidden');
    await hub.idle();
    assert.equal(store.lastSeq(), 0, 'nothing from a refused group is stored');
    const m = await hub.publish(limited, msg('mine/a', 'ok'));
    assert.equal(m.publisher, 'b');
    // publish reports errors as rejections, never synchronous throws
    const p = hub.publish(limited, msg('yours', 'x'));
    assert.ok(p instanceof Promise);
    await assert.rejects(p, (e: unknown) => e instanceof OmnipushError && e.code === 'forbidden');
  });

  it('refuses forbidden and malformed subscriptions', async () => {
    const { hub } = await newHub();
    assert.equal(await codeOf(() => hub.checkSubscribe(partial, ['#'])), 'forbidden');
    assert.equal(await codeOf(() => hub.checkSubscribe(partial, ['chat/secret/x'])), 'forbidden');
    assert.equal(await codeOf(() => hub.checkSubscribe(partial, ['chat/a', 'news'])), 'forbidden', 'one bad filter spoils the request');
    assert.equal(await codeOf(() => hub.checkSubscribe(partial, ['chat/#/x'])), 'invalid_filter');
    assert.equal(await codeOf(() => hub.checkSubscribe(partial, [])), 'invalid_filter');
    assert.equal(await codeOf(() => hub.checkSubscribe(anyone, Array.from({ length: 65 }, (_, i) => `t/${i}`))), 'invalid_filter');
    const plan = hub.checkSubscribe(partial, ['chat/a', 'chat/a', 'chat/b']);
    assert.deepEqual(plan.filters, ['chat/a', 'chat/b'], 'duplicates folded');
    assert.equal(plan.perMessageCheck, false);
    assert.equal(hub.checkSubscribe(partial, ['chat/#']).perMessageCheck, true);
  });

  it('checks each message for a partially denied filter: live, replay and history()', async () => {
    const { hub } = await newHub();
    const topics = ['chat/a', 'chat/secret/x', 'chat/secret', 'chat/b/c', 'news'];
    for (const t of topics) await hub.publish(anyone, msg(t, `old ${t}`));
    const live = new Recorder(partial);
    await hub.subscribe(live, hub.checkSubscribe(partial, ['chat/#'], 'now'));
    const replay = new Recorder(partial);
    await hub.subscribe(replay, hub.checkSubscribe(partial, ['chat/#'], 'all'));
    for (const t of topics) await hub.publish(anyone, msg(t, `new ${t}`));
    const allowed = ['chat/a', 'chat/b/c'];
    assert.deepEqual(live.got.map((m) => m.topic), allowed);
    assert.deepEqual(replay.got.map((m) => m.topic), [...allowed, ...allowed]);
    const h = await hub.history(partial, ['chat/#'], 'all', 100);
    assert.deepEqual(h.messages.map((m) => m.payload.toString()), ['old chat/a', 'old chat/b/c', 'new chat/a', 'new chat/b/c']);
  });

  it('enforces the payload limit and validates fields', async () => {
    const { hub } = await newHub({ maxPayloadBytes: 10 });
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p', '0123456789'))), 'ok');
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p', '0123456789a'))), 'payload_too_large');
    try {
      await hub.publish(anyone, msg('p', 'x'.repeat(11)));
      assert.fail('should have been refused');
    } catch (e) {
      assert.deepEqual((e as OmnipushError).details, { limit: 10 });
    }
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p/+', 'x'))), 'invalid_topic');
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p', 'x', { event: 'a\nb' }))), 'invalid_request');
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p', 'x', { ttl: 0 }))), 'invalid_request');
    assert.equal(await codeOf(() => hub.publish(anyone, msg('p', 'x', { qos: 3 as 0 }))), 'invalid_request');
    assert.equal(await codeOf(() => hub.publish(anyone, { topic: 'p', payload: 'str' as unknown as Buffer })), 'invalid_request');
  });
});

describe('Hub: expiry', () => {
  it('leaves expired messages out of replays and history (injected clock)', async () => {
    let now = 1_000_000;
    const { hub } = await newHub({ now: () => now });
    const first = await hub.publish(anyone, msg('t', 'first'));
    const short = await hub.publish(anyone, msg('t', 'short', { ttl: 1.5 }));
    await hub.publish(anyone, msg('t', 'long', { ttl: 100 }));
    await hub.publish(anyone, msg('t', 'forever'));
    assert.equal(short.expiresAt, 1_001_500);
    assert.equal(short.publishedAt, 1_000_000);
    const seen = async (since: string) => {
      const r = new Recorder();
      await hub.subscribe(r, hub.checkSubscribe(anyone, ['t'], since));
      hub.unsubscribe(r);
      return r.data();
    };
    assert.deepEqual(await seen(first.cursor), ['short', 'long', 'forever']);
    now += 1499;
    assert.deepEqual(await seen('all'), ['first', 'short', 'long', 'forever']);
    now += 1;
    assert.deepEqual(await seen('all'), ['first', 'long', 'forever'], 'expired at expiresAt');
    assert.deepEqual(await seen(first.cursor), ['long', 'forever']);
    now += 100_000;
    assert.deepEqual(await seen('all'), ['first', 'forever']);
    assert.deepEqual((await hub.history(anyone, ['t'], undefined, 10)).messages.map((m) => m.payload.toString()), ['first', 'forever']);
  });
});

describe('Hub: slow consumers', () => {
  it('closes a replaying subscriber whose waiting live messages pass the queue bound, and no one else', async () => {
    const closedFor: string[] = [];
    const { hub, store } = await newHub({ maxQueueBytes: 4096, observer: { slowConsumerClosed: (t) => closedFor.push(t) } }, new GatedStore());
    await hub.publish(anyone, msg('q', 'seed'));
    const fast = new Recorder();
    await hub.subscribe(fast, hub.checkSubscribe(anyone, ['q'], 'now'));
    store.historyGate = new Gate();
    const slow = new Recorder();
    const subscribed = hub.subscribe(slow, hub.checkSubscribe(anyone, ['q'], 'all'));
    const big = 'x'.repeat(500);
    for (let i = 0; i < 20 && !slow.closed; i++) await hub.publish(anyone, msg('q', big));
    assert.equal(slow.closed?.code, 'slow_consumer', 'closed while its replay is still held up');
    assert.deepEqual(closedFor, ['test']);
    assert.equal(hub.subscriberCount, 1);
    const sent = fast.got.length;
    assert.ok(sent > 4096 / 600 && sent < 20, `the bound was hit after ~8 messages (${sent})`);
    store.historyGate.open();
    await deadline(subscribed, 'the closed subscriber’s replay to wind up');
    await hub.publish(anyone, msg('q', 'after'));
    assert.equal(slow.got.length, 0, 'nothing after the close');
    assert.deepEqual(slow.breaches, []);
    assert.equal(fast.got.length, sent + 1);
  });

  it('closes a slow subscriber that is waiting for its retained messages', async () => {
    const { hub, store } = await newHub({ maxQueueBytes: 2048 }, new GatedStore());
    store.retainedGate = new Gate();
    const slow = new Recorder();
    const subscribed = hub.subscribe(slow, hub.checkSubscribe(anyone, ['q']));
    for (let i = 0; i < 20 && !slow.closed; i++) await hub.publish(anyone, msg('q', 'y'.repeat(500)));
    assert.equal(slow.closed?.code, 'slow_consumer');
    store.retainedGate.open();
    await deadline(subscribed, 'the closed subscriber’s retained replay to wind up');
    assert.deepEqual(slow.got, []);
    assert.deepEqual(slow.breaches, []);
  });

  it('keeps a catching-up subscriber under the bound, in order', async () => {
    const { hub, store } = await newHub({ maxQueueBytes: 64 * 1024 }, new GatedStore());
    for (let i = 0; i < 5; i++) await hub.publish(anyone, msg('q', `h${i}`));
    store.historyGate = new Gate();
    const r = new Recorder();
    const subscribed = hub.subscribe(r, hub.checkSubscribe(anyone, ['q'], 'all'));
    for (let i = 0; i < 20; i++) await hub.publish(anyone, msg('q', `l${i}`));
    assert.equal(r.got.length, 0, 'live messages wait while the replay is held');
    store.historyGate.open();
    await deadline(subscribed, 'replay');
    assert.equal(r.closed, undefined);
    assert.deepEqual(r.data(), [...Array.from({ length: 5 }, (_, i) => `h${i}`), ...Array.from({ length: 20 }, (_, i) => `l${i}`)]);
  });
});

describe('Hub: close', () => {
  it('finishes accepted publishes, then closes every subscriber with shutting_down', async () => {
    const { hub, store } = await newHub({}, new GatedStore());
    const live = new Recorder();
    await hub.subscribe(live, hub.checkSubscribe(anyone, ['z'], 'now'));
    store.historyGate = new Gate();
    const replaying = new Recorder();
    const subscribed = hub.subscribe(replaying, hub.checkSubscribe(anyone, ['z'], 'all'));
    let accepted = false;
    const p = hub.publish(anyone, msg('z', 'last')).then((m) => {
      accepted = true;
      return m;
    });
    await hub.close();
    assert.equal(accepted, true, 'close waited for the accepted publish');
    assert.equal((await p).payload.toString(), 'last');
    assert.deepEqual(live.data(), ['last']);
    assert.equal(live.closed?.code, 'shutting_down');
    assert.equal(replaying.closed?.code, 'shutting_down');
    assert.equal(hub.subscriberCount, 0);
    store.historyGate.open();
    await deadline(subscribed, 'replay to wind up');
    assert.deepEqual(replaying.got, []);
    assert.equal(await codeOf(() => hub.publish(anyone, msg('z', 'late'))), 'shutting_down');
    assert.equal(await codeOf(() => hub.subscribe(new Recorder(), hub.checkSubscribe(anyone, ['z']))), 'shutting_down');
  });
});

describe('Hub: history()', () => {
  it('pages with limit, more and cursor', async () => {
    const { hub } = await newHub();
    for (let i = 0; i < 10; i++) {
      await hub.publish(anyone, msg('h', String(i)));
      await hub.publish(anyone, msg('noise', String(i)));
    }
    const pages: string[][] = [];
    let since: string | undefined;
    for (;;) {
      const r = await hub.history(anyone, ['h'], since, 4);
      assert.equal(r.gap, false);
      pages.push(r.messages.map((m) => m.payload.toString()));
      if (!r.more) {
        assert.equal(r.cursor, hub.headCursor(), 'the last page hands back the head cursor');
        break;
      }
      assert.equal(r.cursor, r.messages[r.messages.length - 1].cursor);
      since = r.cursor;
    }
    assert.deepEqual(pages, [['0', '1', '2', '3'], ['4', '5', '6', '7'], ['8', '9']]);
    const six = await hub.history(anyone, ['h'], undefined, 6);
    const exact = await hub.history(anyone, ['h'], six.cursor, 4);
    assert.deepEqual(exact.messages.map((m) => m.payload.toString()), ['6', '7', '8', '9']);
    assert.equal(exact.more, false, 'exactly `limit` left is not more');
    const empty = await hub.history(anyone, ['h'], hub.headCursor(), 4);
    assert.deepEqual(empty, { messages: [], gap: false, cursor: hub.headCursor(), more: false });
  });

  it('reports a gap for pruned history and unknown cursors', async () => {
    const { hub } = await newHub({ defaultRetention: { maxCount: 2, maxAgeMs: 3600_000 } });
    const c: StoredMessage[] = [];
    for (let i = 0; i < 6; i++) c.push(await hub.publish(anyone, msg('h', String(i))));
    await hub.prune();
    const pruned = await hub.history(anyone, ['h'], c[0].cursor, 10);
    assert.equal(pruned.gap, true);
    assert.deepEqual(pruned.messages.map((m) => m.payload.toString()), ['4', '5']);
    const fine = await hub.history(anyone, ['h'], c[3].cursor, 10);
    assert.equal(fine.gap, false);
    const foreign = await hub.history(anyone, ['h'], 'zzzzzzzz_1', 10);
    assert.equal(foreign.gap, true);
    assert.deepEqual(foreign.messages.map((m) => m.payload.toString()), ['4', '5']);
  });

  it('never skips an allowed message when paging a partially denied filter', async () => {
    const { hub } = await newHub();
    const rnd = prng(42);
    const published: StoredMessage[] = [];
    for (let i = 0; i < 120; i++) published.push(await hub.publish(anyone, msg(rnd() < 0.4 ? 'chat/secret/x' : `chat/${i % 3}`, String(i))));
    const want = published.filter((m) => !m.topic.startsWith('chat/secret')).map((m) => m.seq);
    for (const limit of [1, 2, 3, 7, 50]) {
      const got: number[] = [];
      let since: string | undefined;
      for (let pages = 0; ; pages++) {
        assert.ok(pages < 200, 'paging ends');
        const r = await hub.history(partial, ['chat/#'], since, limit);
        assert.ok(r.messages.length <= limit);
        got.push(...r.messages.map((m) => m.seq));
        if (!r.more) break;
        since = r.cursor;
      }
      assert.deepEqual(got, want, `limit ${limit}`);
    }
  });
});
