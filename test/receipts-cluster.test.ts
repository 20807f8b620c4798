import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { startCluster } from './helpers/cluster.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { waitFor } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'a-test-secret-of-enough-length';
const FAST = { cluster: { heartbeat: 0.1, nodeTimeout: 1, takeoverTimeout: 3 } };

function token(sub: string, publish: string[], subscribe: string[]): Promise<string> {
  return mintToken({ secret: SECRET, sub, grants: { publish, subscribe, deny: { publish: [], subscribe: [] } } });
}

async function call(base: string, method: string, path: string, tok: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe('receipts in a cluster (two nodes, Redis)', { skip: redisMissing || undefined }, () => {
  let redis: RedisServer;
  let svc: PushService;
  let nodes: RunningServer[] = [];
  let alice: string;
  let bob: string;

  before(async () => {
    redis = await startRedis();
    svc = await startPushService();
    nodes = await startCluster(redis, 'rc:', 2, {
      ...FAST,
      auth: { jwt: { secret: SECRET } },
      webpush: webpushConfig(svc),
      receipts: { rules: [{ filter: 'user/{sub}/#' }] },
    });
    alice = await token('alice', [], ['user/alice/#']);
    bob = await token('bob', ['user/#'], []);
    svc.expectedKey = ((await (await fetch(`${nodes[0].http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    const b = svc.browser('alice-cluster');
    const reg = await call(nodes[0].http, 'POST', '/v1/webpush/subscriptions', alice, { subscription: b.subscription, topics: ['user/alice/#'] });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    // the sending node attaches the registration made on either node: wait for an ordinary push
    await waitFor(async () => {
      await call(nodes[1].http, 'POST', '/v1/publish', bob, { topic: 'user/alice/probe', data: 'p' });
      return svc.received.length > 0;
    }, 'the first push');
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await svc?.close();
    await redis?.remove();
  });

  const pushesOf = (cursor: string) => svc.received.filter((r) => r.status === 201 && r.payload?.cursor === cursor).length;
  const publish = async (node: RunningServer, topic: string, within: string): Promise<string> => {
    const r = await call(node.http, 'POST', '/v1/publish', bob, { topic, data: { title: topic }, receipt: { within } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.cursor as string;
  };
  const eventsOf = async (node: RunningServer, cursor: string) =>
    ((await call(node.http, 'GET', '/v1/receipts?limit=1000', bob)).body.receipts as Array<{ type: string; cursor: string; door?: string }>).filter((e) => e.cursor === cursor);

  it('one node sends Web Push and fires the fallbacks', () => {
    assert.equal(nodes.filter((n) => n.webpush!.sending).length, 1);
  });

  it('an ack on the other node than the publish counts; no fallback', async () => {
    for (const [pubNode, ackNode] of [[nodes[0], nodes[1]], [nodes[1], nodes[0]]] as const) {
      const ws = await openWs(ackNode.http, { headers: { authorization: `Bearer ${alice}` } });
      try {
        await ws.request({ type: 'subscribe', topics: ['user/alice/inbox'], since: 'now' });
        const cursor = await publish(pubNode, 'user/alice/inbox', '800ms');
        await waitFor(() => ws.messages().find((f) => f.cursor === cursor), 'the message on the other node');
        const reply = await ws.request({ type: 'ack', cursors: [cursor] });
        // acked at once, or (the publishing node had not written the receipt yet) a second later
        assert.equal(Number(reply.acked) + Number(reply.unknown), 1);
        await waitFor(async () => (await eventsOf(pubNode, cursor)).length === 1, 'the delivered event, seen from the publishing node');
        assert.deepEqual((await eventsOf(pubNode, cursor)).map((e) => [e.type, e.door]), [['delivered', 'websocket']]);
        // windows fire in due order: once a control due after this window is pushed and the sender's
        // queue is empty, a fallback for the acknowledged message would be at the stand-in too
        const control = await publish(pubNode, 'user/alice/control', '1500ms');
        await waitFor(() => pushesOf(control) === 1, 'the control message pushed');
        await waitFor(() => nodes.every((n) => n.webpush!.queue.size === 0), 'the Web Push queue drained');
        assert.equal(pushesOf(cursor), 0, 'no fallback for the acknowledged message');
      } finally {
        ws.close();
      }
    }
  });

  it('nobody acks: one fallback across the nodes, whichever node took the publish', async () => {
    const cursors = [await publish(nodes[0], 'user/alice/a', '300ms'), await publish(nodes[1], 'user/alice/b', '300ms')];
    await waitFor(() => cursors.every((c) => pushesOf(c) >= 1), 'both fallbacks');
    await waitFor(async () => (await eventsOf(nodes[0], cursors[1])).length > 0, 'the pushed event');
    const control = await publish(nodes[1], 'user/alice/control2', '300ms');
    await waitFor(() => pushesOf(control) === 1, 'a later control push');
    for (const c of cursors) {
      assert.equal(pushesOf(c), 1, `one push for ${c}`);
      assert.deepEqual((await eventsOf(nodes[1], c)).map((e) => e.type), ['pushed']);
    }
    assert.deepEqual(svc.violations, []);
  });

  it('GET /v1/receipts pages through the Redis store from either node, each event once', async () => {
    const all = ((await call(nodes[0].http, 'GET', '/v1/receipts?limit=1000', bob)).body.receipts as Array<{ id: string }>).map((e) => e.id);
    assert.ok(all.length >= 4, `events so far: ${all.length}`);
    const paged: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; ; i++) {
      const r = await call(nodes[i % 2].http, 'GET', `/v1/receipts?limit=1${cursor ? `&cursor=${cursor}` : ''}`, bob);
      paged.push(...(r.body.receipts as Array<{ id: string }>).map((e) => e.id));
      if (!r.body.more) break;
      cursor = r.body.cursor as string;
    }
    assert.deepEqual(paged, all);
    assert.deepEqual((await call(nodes[1].http, 'GET', '/v1/receipts', alice)).body.receipts, [], 'alice published nothing');
  });
});
