import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { httpPublish, startCluster } from './helpers/cluster.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { waitFor } from './helpers/server.js';
import { ReceiverProcess } from './helpers/webhook-receiver-process.js';
import { openWs } from './helpers/ws.js';

describe('webhooks in a cluster: one node sends each event', { skip: redisMissing || false }, () => {
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const rx = new ReceiverProcess(secret);
  let redis: RedisServer;
  let nodes: RunningServer[] = [];

  before(async () => {
    redis = await startRedis();
    await rx.start();
    nodes = await startCluster(redis, 'wh:', 3, {
      auth: { allowAnonymous: true, anonymous: { publish: ['#'], subscribe: ['#'] } },
      cluster: { heartbeat: 0.1, nodeTimeout: 1 },
      webhooks: { endpoints: [{ url: rx.url, secret, events: ['connect', 'message'], filters: ['c/#'] }], retry: { minDelay: 20, maxDelay: 200 }, rescanInterval: 0.5 },
    });
  });
  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await rx.kill();
    await redis?.remove();
  });

  const counts = (): Map<string, number> => {
    const n = new Map<string, number>();
    for (const e of rx.events()) n.set(e.id, (n.get(e.id) ?? 0) + 1);
    return n;
  };

  it('queues a message every node sees once, and each node\'s connects once, also after the sender leaves', async () => {
    await waitFor(() => nodes.filter((n) => n.webhooks!.sending).length === 1, 'one sender');
    const cursors: string[] = [];
    const conns = [];
    for (const n of nodes) {
      conns.push(await openWs(n.http));
      for (let i = 0; i < 3; i++) cursors.push(await httpPublish(n.http, `c/${i}`, `from ${n.cluster.nodeId}`));
    }
    await waitFor(() => cursors.every((c) => counts().has(`evt_m_${c}`)) && rx.events().filter((e) => e.type === 'connect').length >= 3, 'every message and connect event');
    const connectNodes = rx.events().filter((e) => e.type === 'connect').map((e) => e.data.node);
    assert.deepEqual([...connectNodes].sort(), nodes.map((n) => n.cluster.nodeId).sort());

    // the sender leaves: another node takes the queue and the message feed over
    const sender = nodes.find((n) => n.webhooks!.sending)!;
    await sender.close();
    nodes = nodes.filter((n) => n !== sender);
    for (const n of nodes) for (let i = 0; i < 2; i++) cursors.push(await httpPublish(n.http, `c/late/${i}`, 'after'));
    await waitFor(() => nodes.filter((n) => n.webhooks!.sending).length === 1, 'a new sender');
    await waitFor(() => cursors.every((c) => counts().has(`evt_m_${c}`)), 'messages after the takeover', 15_000);
    for (const c of conns) c.close();
    for (const [id, n] of counts()) assert.equal(n, 1, `${id} delivered ${n} times`);
    for (const h of rx.received) assert.ok(h.verified);
  });

  it('an event whose notice to the sender was lost is found in the store by the sender\'s rescan', async () => {
    const sender = await waitFor(() => nodes.find((n) => n.webhooks!.sending), 'a sender');
    const other = nodes.find((n) => n !== sender)!;
    // the fault: this node's pub/sub notices to the sender go nowhere for a while
    const control = other.cluster as unknown as { publish(type: string, data: Record<string, unknown>): void };
    const publish = control.publish;
    const dropped: string[] = [];
    control.publish = function (type, data) {
      if (type === 'webhooks-queued') dropped.push(type);
      else publish.call(this, type, data);
    };
    const before = rx.events().filter((e) => e.type === 'connect').length;
    const ws = await openWs(other.http);
    try {
      await waitFor(() => dropped.length > 0, 'the connect event stored, its notice dropped');
      control.publish = publish;
      await waitFor(() => rx.events().filter((e) => e.type === 'connect').length > before, 'the connect event delivered after the rescan', 10_000);
      const mine = rx.events().filter((e) => e.type === 'connect' && e.data.node === other.cluster.nodeId);
      assert.equal(new Set(mine.map((e) => e.id)).size, mine.length, 'each connect event once');
    } finally {
      control.publish = publish;
      ws.close();
    }
  });
});
