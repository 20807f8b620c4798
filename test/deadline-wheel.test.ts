import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Deadline, DEADLINE_SLOT_MS } from '../src/transports/deadline.js';

/** Resolves with the time a new deadline at `at` fired; rejects if it has not within `ms`. */
function firing(at: number, ms = 5000): { deadline: Deadline; fired: Promise<number> } {
  let deadline!: Deadline;
  const fired = new Promise<number>((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`deadline for ${at} did not fire within ${ms} ms`)), ms);
    deadline = new Deadline(at, () => {
      clearTimeout(guard);
      resolve(Date.now());
    });
  });
  return { deadline, fired };
}

// a loaded machine may run a timer late, never early: the upper bound is generous, the lower one exact
const LATE_MS = DEADLINE_SLOT_MS + 1000;

test('deadlines fire in order, never before their moment and at most a slot (plus timer lateness) after it', async () => {
  const t0 = Date.now();
  const ats = [t0 + 330, t0 + 50, t0 + 170, t0 + 171, t0 + 600];
  const runs = ats.map((at) => firing(at));
  const firedAt = await Promise.all(runs.map((r) => r.fired));
  for (let i = 0; i < ats.length; i++) {
    assert.ok(firedAt[i] >= ats[i], `deadline ${i} fired ${ats[i] - firedAt[i]} ms early`);
    assert.ok(firedAt[i] - ats[i] <= LATE_MS, `deadline ${i} fired ${firedAt[i] - ats[i]} ms late`);
  }
  const order = ats.map((_, i) => i).sort((a, b) => firedAt[a] - firedAt[b] || ats[a] - ats[b]);
  assert.deepEqual(order.map((i) => ats[i]), [...ats].sort((a, b) => a - b));
});

test('a cancelled deadline never fires; a moved one fires at its new moment, not its old one', async () => {
  const t0 = Date.now();
  let cancelledFired = false;
  const cancelled = new Deadline(t0 + 100, () => {
    cancelledFired = true;
  });
  cancelled.cancel();
  const moved = firing(t0 + 100);
  moved.deadline.reset(t0 + 700);
  assert.equal(moved.deadline.when, t0 + 700);
  // a later deadline in the same wheel: by the time it fires, the cancelled one's slot is long past
  const later = firing(t0 + 400);
  await later.fired;
  assert.equal(cancelledFired, false);
  const at = await moved.fired;
  assert.ok(at >= t0 + 700, `the moved deadline fired ${t0 + 700 - at} ms before its new moment`);
});

test('a deadline armed from inside another one\'s action still fires', async () => {
  const t0 = Date.now();
  const second = new Promise<number>((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error('the deadline armed from an action never fired')), 5000);
    new Deadline(t0 + 50, () => {
      new Deadline(Date.now() + 150, () => {
        clearTimeout(guard);
        resolve(Date.now());
      });
    });
  });
  assert.ok((await second) >= t0 + 200);
});

test('a deadline already past fires at the next sweep', async () => {
  const { fired } = firing(Date.now() - 10_000);
  const at = await fired;
  assert.ok(at > 0);
});
