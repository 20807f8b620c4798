import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { ChurnSlot, PRESENCE_SECRET, PresenceFollower, presenceToken } from './helpers/presence-churn.js';
import { prng } from './helpers/prng.js';
import { startTestServer, waitFor } from './helpers/server.js';

const TOPIC = 'prop/room';

/** The members the server lists for TOPIC, by principal. */
async function listed(base: string, token: string): Promise<string[]> {
  const r = await fetch(`${base}/v1/presence?topic=${TOPIC}&limit=1000`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  return ((await r.json()) as { members: Array<{ sub: string }> }).members.map((m) => m.sub).sort();
}

/**
 * Random joins and leaves (WebSocket and SSE, topic and wildcard) on `bases` while followers take
 * paged snapshots at random moments and follow the events; at rest every follower's view is the
 * true member set.
 */
export async function churnProperty(bases: string[], seed: number, rounds: number): Promise<void> {
  const rnd = prng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const slots: ChurnSlot[] = [];
  for (let i = 0; i < 10; i++) slots.push(new ChurnSlot(`m${i}`, await presenceToken(`m${i}`)));
  const followers: PresenceFollower[] = [];
  const readers: string[] = [];
  const starting: Array<Promise<void>> = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // a follower starts now and then, in the middle of the churn, with small pages
      if (rnd() < 0.08 && readers.length < 5) {
        const n = readers.length;
        readers.push(`reader${n}`);
        const base = pick(bases);
        const pageSize = 1 + Math.floor(rnd() * 4);
        starting.push(
          presenceToken(`reader${n}`).then(async (t) => {
            followers.push(await PresenceFollower.open(base, t, TOPIC, pageSize));
          }),
        );
      }
      const batch: Array<Promise<void>> = [];
      const picked = new Set<ChurnSlot>();
      for (let k = 0; k < 3; k++) {
        const s = pick(slots);
        if (picked.has(s)) continue;
        picked.add(s);
        if (s.open) s.leave();
        else batch.push(s.join(pick(bases), rnd() < 0.5 ? 'ws' : 'sse', rnd() < 0.2 ? 'prop/#' : TOPIC));
      }
      await Promise.all(batch);
      if (rnd() < 0.3) await new Promise((res) => setImmediate(res));
    }
    await Promise.all(starting);
    const expected = [...slots.filter((s) => s.open).map((s) => s.sub), ...readers].sort();
    const reader = await presenceToken('auditor');
    for (const base of bases) {
      let last: string[] = [];
      await waitFor(async () => (last = await listed(base, reader)).join() === expected.join(), `the list on ${base} to settle at ${expected.join()}`).catch((e: Error) => {
        throw new Error(`${e.message}; it is ${last.join()} (seed ${seed})`);
      });
    }
    for (const f of followers) {
      await waitFor(() => f.subs().join() === expected.join(), `follower view ${f.subs().join()} to be ${expected.join()} (seed ${seed})`, 5000);
    }
    assert.ok(followers.length >= 1, 'at least one follower ran');
  } finally {
    for (const s of slots) s.leave();
    for (const f of followers) f.close();
  }
}

describe('presence snapshot + events (property)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: PRESENCE_SECRET } }, presence: { rules: [{ filter: 'prop/+', joinLeave: true }], leaveGrace: 0 } });
  });
  after(() => server.close());

  for (const seed of [11, 4242, Number(process.env.PRESENCE_SEED ?? Date.now() % 100000)]) {
    it(`followers that snapshot mid-churn end with the true member set (seed ${seed})`, async () => {
      await churnProperty([server.http], seed, 120);
    });
  }
});
