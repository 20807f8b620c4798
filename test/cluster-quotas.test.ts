import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { ISubackPacket } from 'mqtt-packet';
import { DENY_ALL, type Principal } from '../src/core/grants.js';
import type { RunningServer } from '../src/server.js';
import { startCluster } from './helpers/cluster.js';
import { RawClient } from './helpers/mqtt.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { waitFor } from './helpers/server.js';
import { openRawSse, type RawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'a-test-secret-of-enough-length-1234';
const FAST = { cluster: { heartbeat: 0.1, nodeTimeout: 1, takeoverTimeout: 3 } };

function token(sub: string): Promise<string> {
  return new SignJWT({ omnipush: { publish: ['#'], subscribe: ['#'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

const as = (id: string): Principal => ({ id, kind: 'token', grants: DENY_ALL });

describe('quotas across two nodes', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  before(async () => {
    redis = await startRedis();
    [a, b] = await startCluster(redis, 'q:', 2, { ...FAST, auth: { jwt: { secret: SECRET } }, quotas: { connectionsPerPrincipal: 2, subscriptionsPerPrincipal: 3 } });
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.remove();
  });

  it('holds connections and subscriptions per principal cluster-wide, and lets them go with the node that held them', async () => {
    const mallory = await token('mallory');
    const auth = { Authorization: `Bearer ${mallory}` };
    const onA: RawSse = await openRawSse(`${a.http}/v1/sse?topic=c/1&topic=c/2`, auth);
    assert.equal(onA.status, 200);
    await waitFor(async () => (await b.quotas.connectionsElsewhere(as('mallory'))) === 1, 'node b to see mallory’s connection on a');
    const ws = await openWs(b.http, { headers: auth });
    await waitFor(async () => (await a.quotas.connectionsElsewhere(as('mallory'))) === 1, 'node a to see mallory’s connection on b');

    // two connections, one on each node: a third is refused on either
    const third = await fetch(`${a.http}/v1/sse?topic=c/3`, { headers: auth });
    assert.equal(third.status, 429);
    assert.equal(((await third.json()) as { error: { limit: string } }).error.limit, 'connectionsPerPrincipal');
    const raw = await RawClient.open(b, 5);
    assert.equal((await raw.connect({ clientId: 'mal-b', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0x97);
    raw.close();

    // subscriptions: 2 on a, so 1 more fits on b
    await waitFor(async () => (await b.quotas.subscriptionsElsewhere(as('mallory'))) === 2, 'node b to see the two filters on a');
    const r1 = await ws.request({ type: 'subscribe', topics: ['c/4', 'c/5'] });
    assert.equal(r1.type, 'error');
    assert.equal(r1.limit, 'subscriptionsPerPrincipal');
    assert.equal((await ws.request({ type: 'subscribe', topics: ['c/4'] })).type, 'subscribed');

    // another principal is not held by mallory's counts
    const alice = await token('alice');
    const ok = await RawClient.open(b, 5);
    assert.equal((await ok.connect({ clientId: 'alice', username: 'jwt', password: Buffer.from(alice) })).reasonCode, 0);
    ok.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/1', qos: 0 }, { topic: 'x/2', qos: 0 }, { topic: 'x/3', qos: 0 }, { topic: 'x/4', qos: 0 }] });
    assert.deepEqual(((await ok.next('suback')) as ISubackPacket).granted, [0, 0, 0, 0x97]);
    ok.close();

    // node a goes: its connection no longer counts on b
    onA.close();
    await a.close();
    await waitFor(async () => (await b.quotas.connectionsElsewhere(as('mallory'))) === 0, 'mallory’s count on a gone');
    const again = await RawClient.open(b, 5);
    assert.equal((await again.connect({ clientId: 'mal-b2', username: 'jwt', password: Buffer.from(mallory) })).reasonCode, 0);
    again.close();
    ws.close();
    await waitFor(() => b.registry.size === 0, 'b’s registry empty');
    // nothing left counted in the cluster's maps either
    await waitFor(async () => (await b.cluster.mapAll('quota:mallory')).size === 0 && (await b.cluster.mapAll('quota:alice')).size === 0, 'no counts left in Redis');
    assert.equal((await b.cluster.mapAll(`quota-index:${b.cluster.nodeId}`)).size, 0);
  });
});
