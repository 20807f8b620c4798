import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { startCluster } from './helpers/cluster.js';
import { churnProperty, PRESENCE_SECRET, PresenceFollower, presenceToken } from './helpers/presence-churn.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { spawnServer, waitFor, type ChildServer } from './helpers/server.js';

const RULES = JSON.stringify([{ filter: 'cl/+', joinLeave: true }]);

/** A WebSocket member of `topic` on `base` (with `client` as its stable id when given). */
async function wsMember(base: string, sub: string, topic: string, client?: string): Promise<WebSocket> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws?access_token=${await presenceToken(sub)}${client ? `&client=${client}` : ''}`);
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], id: 1 }));
  await new Promise<void>((resolve) => ws.once('message', () => resolve()));
  return ws;
}

async function listed(base: string, topic: string): Promise<string[]> {
  const r = await fetch(`${base}/v1/presence?topic=${topic}`, { headers: { Authorization: `Bearer ${await presenceToken('auditor')}` } });
  assert.equal(r.status, 200);
  return ((await r.json()) as { members: Array<{ sub: string }> }).members.map((m) => m.sub).sort();
}

describe('presence in a cluster', { skip: redisMissing || false }, () => {
  it('three nodes: followers on any node end with the true member set under churn on every node', async () => {
    const redis = await startRedis();
    const nodes = await startCluster(redis, 'pc:', 3, { auth: { jwt: { secret: PRESENCE_SECRET } }, presence: { rules: [{ filter: 'prop/+', joinLeave: true }], leaveGrace: 0 } });
    try {
      await churnProperty(
        nodes.map((n) => n.http),
        Number(process.env.OMNIPUSH_PROPERTY_SEED ?? 7),
        100,
      );
    } finally {
      for (const n of nodes) await n.close();
      await redis.remove();
    }
  });

  it('kill -9 of a node: its members leave within the node timeout (stable ones a grace later); members moving between nodes do not flap', async () => {
    const redis = await startRedis();
    const env = {
      OMNIPUSH_STORE__KIND: 'redis',
      OMNIPUSH_STORE__REDIS__URL: redis.url,
      OMNIPUSH_STORE__REDIS__PREFIX: 'pk:',
      OMNIPUSH_BUS__KIND: 'redis',
      OMNIPUSH_CLUSTER__HEARTBEAT: '0.1',
      OMNIPUSH_CLUSTER__NODE_TIMEOUT: '1',
      OMNIPUSH_AUTH__JWT__SECRET: PRESENCE_SECRET,
      OMNIPUSH_PRESENCE__RULES: RULES,
      OMNIPUSH_PRESENCE__LEAVE_GRACE: '1.5',
    };
    const nodes: ChildServer[] = [];
    const sockets: WebSocket[] = [];
    let follower: PresenceFollower | undefined;
    try {
      for (let i = 0; i < 3; i++) nodes.push(await spawnServer(['--log-level', 'warn'], env));
      follower = await PresenceFollower.open(nodes[0].http, await presenceToken('follower'), 'cl/room', 100);
      const events: Array<{ type: string; sub: string; at: number }> = [];
      follower.ws.on('message', (d: Buffer) => {
        const f = JSON.parse(d.toString()) as { type: string; member?: { sub: string } };
        if (f.type === 'join' || f.type === 'leave') events.push({ type: f.type, sub: f.member!.sub, at: Date.now() });
      });
      for (let i = 0; i < 3; i++) for (let k = 0; k < 2; k++) sockets.push(await wsMember(nodes[i].http, `n${i}m${k}`, 'cl/room'));
      const everyone = ['follower', 'n0m0', 'n0m1', 'n1m0', 'n1m1', 'n2m0', 'n2m1'];
      await waitFor(() => follower!.subs().join() === everyone.join(), 'every node\'s members in the follower\'s view');
      assert.deepEqual(await listed(nodes[1].http, 'cl/room'), everyone);

      // a member with a stable client id moves from node 1 to node 2 within leaveGrace: no leave, no second join
      const mover = await wsMember(nodes[1].http, 'mover', 'cl/room', 'phone-1');
      await waitFor(() => follower!.subs().includes('mover'), 'the mover joins');
      mover.terminate();
      // the reconnect comes a moment later, as a client's backoff would
      await new Promise((r) => setTimeout(r, 200));
      const moved = await wsMember(nodes[2].http, 'mover', 'cl/room', 'phone-1');
      sockets.push(moved);
      // an absent leave can only be seen by waiting past the first connection's grace (1.5 s)
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual(
        events.filter((e) => e.sub === 'mover').map((e) => e.type),
        ['join'],
        'moving between nodes gives one join and no leave',
      );
      assert.ok((await listed(nodes[0].http, 'cl/room')).includes('mover'));

      // a member with a stable id on node 2 that will not come back
      sockets.push(await wsMember(nodes[2].http, 'stayer', 'cl/room', 'tab-9'));
      await waitFor(() => follower!.subs().includes('stayer'), 'the stayer joins');

      // kill -9 node 2. Its members without a stable id leave within the node timeout; the mover
      // (on node 2 now) reconnects to node 0 at once and does not flap; the stayer, with a stable
      // id, leaves a leaveGrace later
      const killedAt = Date.now();
      await nodes[2].kill();
      sockets.push(await wsMember(nodes[0].http, 'mover', 'cl/room', 'phone-1'));
      const leftAt = (sub: string) => events.find((e) => e.type === 'leave' && e.sub === sub)?.at;
      await waitFor(() => leftAt('n2m0') && leftAt('n2m1'), 'the dead node\'s members leave', 8000);
      const took = Math.max(leftAt('n2m0')!, leftAt('n2m1')!) - killedAt;
      // cluster.nodeTimeout (1 s) + a heartbeat round (0.1 s), and slack for a loaded machine
      assert.ok(took <= 2500, `dead node's members left after ${took} ms`);
      await waitFor(() => leftAt('stayer'), 'the stayer leaves after the grace', 8000);
      const stayerTook = leftAt('stayer')! - killedAt;
      // the node's death counts from its last heartbeat, up to a round (0.1 s) before the kill: hence the 200 ms
      assert.ok(stayerTook >= 1500 + 1000 - 200 && stayerTook <= 5000, `a stable member of a dead node leaves after nodeTimeout + leaveGrace; it took ${stayerTook} ms`);
      const rest = ['follower', 'mover', 'n0m0', 'n0m1', 'n1m0', 'n1m1'];
      assert.deepEqual(follower.subs(), rest);
      assert.deepEqual(await listed(nodes[1].http, 'cl/room'), rest);
      assert.deepEqual(
        events.filter((e) => e.type === 'leave').map((e) => e.sub).sort(),
        ['n2m0', 'n2m1', 'stayer'],
        'only the dead node\'s members left, once each; the mover that reconnected elsewhere did not',
      );
      assert.deepEqual(
        events.filter((e) => e.sub === 'mover').map((e) => e.type),
        ['join'],
      );
    } finally {
      follower?.close();
      for (const s of sockets) s.terminate();
      for (const n of nodes) await n.stop().catch(() => undefined);
      await redis.remove();
    }
  });
});
