import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Delivery } from '../src/core/encoded.js';
import type { Grants, Principal } from '../src/core/grants.js';
import { Hub, type HubSubscriber } from '../src/core/hub.js';
import { MemoryStore } from '../src/store/memory.js';
import { waitFor } from './helpers/server.js';

const publisher: Principal = { id: 'pub', kind: 'token', grants: { publish: { allow: ['#'], deny: [] }, subscribe: { allow: [], deny: [] } } };

const subscribeGrants = (allow: string[], deny: string[] = []): Grants => ({ publish: { allow: [], deny: [] }, subscribe: { allow, deny } });

/** A subscriber whose principal changes, as a socket's does when its credentials are renewed. */
class Renewable implements HubSubscriber {
  readonly transport = 'test';
  readonly topics: string[] = [];
  gate: Promise<void> | null = null;

  constructor(public principal: Principal) {}

  deliver(d: Delivery): void {
    this.topics.push(d.message.topic);
  }

  gap(): void {}

  close(): void {}

  backpressure(): Promise<void> | null {
    return this.gate;
  }
}

const publish = (hub: Hub, topic: string) => hub.publish(publisher, { topic, payload: Buffer.from('x') });

describe('Hub.regrant: renewed credentials on a live subscriber', () => {
  it('drops filters now denied, keeps the rest, and switches on the per-message check for a new overlapping deny', async () => {
    const hub = new Hub(new MemoryStore());
    const sub = new Renewable({ id: 'erin', kind: 'token', grants: subscribeGrants(['chat/#', 'news/#']) });
    await hub.subscribe(sub, hub.checkSubscribe(sub.principal, ['chat/#', 'news/#'], 'now'));
    sub.principal = { ...sub.principal, grants: subscribeGrants(['chat/#'], ['chat/secret']) };
    assert.deepEqual(hub.regrant(sub), ['news/#']);
    for (const t of ['news/a', 'chat/secret', 'chat/a']) await publish(hub, t);
    await waitFor(() => sub.topics.includes('chat/a'), 'chat/a');
    assert.deepEqual(sub.topics, ['chat/a']);
    assert.equal(hub.subscriberCount, 1);
  });

  it('detaches a subscriber left with no filter; unchanged grants change nothing', async () => {
    const hub = new Hub(new MemoryStore());
    const sub = new Renewable({ id: 'erin', kind: 'token', grants: subscribeGrants(['news/#']) });
    await hub.subscribe(sub, hub.checkSubscribe(sub.principal, ['news/x'], 'now'));
    assert.deepEqual(hub.regrant(sub), []);
    assert.equal(hub.subscriberCount, 1);
    sub.principal = { ...sub.principal, grants: subscribeGrants(['chat/#']) };
    assert.deepEqual(hub.regrant(sub), ['news/x']);
    assert.equal(hub.subscriberCount, 0);
    await publish(hub, 'news/x');
    await hub.idle();
    assert.deepEqual(sub.topics, []);
    assert.deepEqual(hub.regrant(sub), [], 'a detached subscriber is left alone');
  });

  it('a replay at work when grants narrow delivers nothing more of the dropped filter', async () => {
    const hub = new Hub(new MemoryStore());
    for (let i = 0; i < 20; i++) await publish(hub, i % 2 ? 'news/a' : 'chat/a');
    const sub = new Renewable({ id: 'erin', kind: 'token', grants: subscribeGrants(['#']) });
    let open!: () => void;
    sub.gate = new Promise<void>((r) => (open = r));
    const replay = hub.subscribe(sub, hub.checkSubscribe(sub.principal, ['chat/#', 'news/#'], 'all'));
    await waitFor(() => sub.topics.length === 1, 'the first replayed message');
    sub.principal = { ...sub.principal, grants: subscribeGrants(['chat/#']) };
    assert.deepEqual(hub.regrant(sub), ['news/#']);
    sub.gate = null;
    open();
    await replay;
    assert.deepEqual(sub.topics, Array.from({ length: 10 }, () => 'chat/a'));
  });
});
