import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WsSubscriptions } from '../src/transports/websocket/ws-subscriptions.js';

test('a socket\'s subscriptions behave as a Map through one, many and none', () => {
  const subs = new WsSubscriptions<string>();
  const ref = new Map<string, string>();
  const same = (step: string) => {
    assert.equal(subs.size, ref.size, step);
    assert.deepEqual(subs.values().sort(), [...ref.values()].sort(), step);
    for (const id of ['s1', 's2', 's3', 's4']) {
      assert.equal(subs.get(id), ref.get(id), `${step}: get ${id}`);
      assert.equal(subs.has(id), ref.has(id), `${step}: has ${id}`);
    }
  };
  const steps: Array<[string, () => unknown, () => unknown]> = [
    ['set s1', () => subs.set('s1', 'a'), () => ref.set('s1', 'a')],
    ['set s1 again', () => subs.set('s1', 'b'), () => ref.set('s1', 'b')],
    ['delete an unknown id', () => subs.delete('s9'), () => ref.delete('s9')],
    ['set s2', () => subs.set('s2', 'c'), () => ref.set('s2', 'c')],
    ['set s3', () => subs.set('s3', 'd'), () => ref.set('s3', 'd')],
    ['delete s1', () => subs.delete('s1'), () => ref.delete('s1')],
    ['delete s2', () => subs.delete('s2'), () => ref.delete('s2')],
    ['set s4', () => subs.set('s4', 'e'), () => ref.set('s4', 'e')],
    ['clear', () => subs.clear(), () => ref.clear()],
    ['set s2 after clear', () => subs.set('s2', 'f'), () => ref.set('s2', 'f')],
    ['delete s2 when alone', () => subs.delete('s2'), () => ref.delete('s2')],
  ];
  for (const [step, ours, theirs] of steps) {
    const a = ours();
    const b = theirs();
    if (typeof b === 'boolean') assert.equal(a, b, `${step}: result`);
    same(step);
  }
});

test('values() is a snapshot: removing while walking it visits every subscription once', () => {
  const subs = new WsSubscriptions<string>();
  for (const id of ['s1', 's2', 's3']) subs.set(id, id);
  const seen: string[] = [];
  for (const v of subs.values()) {
    seen.push(v);
    subs.delete(v);
  }
  assert.deepEqual(seen, ['s1', 's2', 's3']);
  assert.equal(subs.size, 0);
});
