import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { churnProperty, PRESENCE_SECRET } from './helpers/presence-churn.js';
import { startTestServer } from './helpers/server.js';

describe('presence snapshot + events (property)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: PRESENCE_SECRET } }, presence: { rules: [{ filter: 'prop/+', joinLeave: true }], leaveGrace: 0 } });
  });
  after(() => server.close());

  for (const seed of [11, 4242, Number(process.env.OMNIPUSH_PROPERTY_SEED ?? Date.now() % 100000)]) {
    it(`followers that snapshot mid-churn end with the true member set (seed ${seed})`, async () => {
      await churnProperty([server.http], seed, 120);
    });
  }
});
