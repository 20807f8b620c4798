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
      webhooks: { endpoints: [{ url: rx.url, secret, events: ['connect', 'message'], filters: ['c/#'] }], retry: { minDelay: 20, maxDelay: 200 } },
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
});
