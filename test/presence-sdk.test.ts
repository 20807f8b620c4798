import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, type ClientOptions, type OmnipushClient, type PresenceMember } from '../src/client/index.js';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';

const impls: ClientOptions = {
  WebSocket: WebSocket as unknown as ClientOptions['WebSocket'],
  EventSource: EventSource as unknown as ClientOptions['EventSource'],
  backoff: { min: 20, max: 200 },
};

describe('the SDK and presence (Node)', () => {
  let server: RunningServer;
  const clients: OmnipushClient[] = [];
  before(async () => {
    server = await startTestServer({ presence: { rules: [{ filter: 'sdk/+', joinLeave: true }], leaveGrace: 0 } });
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.close();
  });

  for (const transport of ['websocket', 'sse'] as const) {
    it(`${transport}: the kept list, join and leave once each, stats`, async () => {
      const topic = `sdk/${transport}`;
      const me = await connect(server.http, { ...impls, transports: [transport], clientId: `me-${transport}` });
      clients.push(me);
      const heard: string[] = [];
      const sub = me.subscribe(topic, () => undefined, { since: 'now', presence: true });
      sub.on('join', (m: PresenceMember) => heard.push(`join ${m.id}`));
      sub.on('leave', (m: PresenceMember) => heard.push(`leave ${m.id}`));
      const ids = async () => (await sub.presence()).map((m) => m.id).sort();
      await waitFor(async () => (await ids()).join() === `anonymous/me-${transport}`, 'its own membership');

      const other = await connect(server.http, { ...impls, transports: ['longpoll'], clientId: `other-${transport}` });
      const otherSub = other.subscribe(topic, () => undefined, { since: 'now' });
      await waitFor(async () => (await ids()).length === 2, 'the long-poller in the kept list');
      assert.ok(heard.includes(`join anonymous/other-${transport}`));
      // long-poll has no events: its presence() reads the list from the server
      assert.deepEqual((await otherSub.presence()).map((m) => m.id).sort(), [`anonymous/me-${transport}`, `anonymous/other-${transport}`]);
      const stats = await sub.presenceStats();
      assert.equal(stats.connections, 2);
      assert.equal(stats.principals, 1);

      // the poller would leave only after pollGrace (30 s); the leave is watched on a third member
      other.close();
      const third = await connect(server.http, { ...impls, transports: ['websocket'] });
      const thirdSub = third.subscribe(topic, () => undefined, { since: 'now' });
      await waitFor(async () => (await ids()).length === 3, 'a third member');
      const thirdId = (await sub.presence()).find((m) => m.id !== `anonymous/me-${transport}` && m.id !== `anonymous/other-${transport}`)!.id;
      thirdSub.unsubscribe();
      await waitFor(() => heard.includes(`leave ${thirdId}`), 'the third member leaves');
      third.close();
      assert.equal(heard.filter((h) => h === `join ${thirdId}`).length, 1);
      assert.equal(heard.filter((h) => h === `leave ${thirdId}`).length, 1);
      assert.equal((await ids()).length, 2);
    });
  }

  it('a subscription that may not read presence gets the refusal from presence()', async () => {
    const c = await connect(server.http, { ...impls, transports: ['websocket'] });
    clients.push(c);
    const sub = c.subscribe('unruled/topic', () => undefined, { since: 'now' });
    await assert.rejects(sub.presence(), (e: Error & { code?: string }) => e.code === 'not_found');
  });
});
