import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IDisconnectPacket } from 'mqtt-packet';
import { OmnipushError } from '../src/core/errors.js';
import type { RunningServer } from '../src/server.js';
import { mqttClient } from './helpers/mqtt.js';
import { startTestServer, waitFor, within } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

describe('connection registry', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  const byDoor = (door: string) => [...server.registry.all()].find((c) => c.door === door);

  it('holds every door’s live connection with its filters, acts on it, and forgets it when it closes', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=reg/sse`);
    const ws = await openWs(server.http);
    await ws.request({ type: 'subscribe', topics: ['reg/ws/#', 'reg/ws2'] });
    const poll = fetch(`${server.http}/v1/poll?topic=reg/poll&timeout=30`);
    const mq = await mqttClient(server, { protocolVersion: 5 });
    await mq.subscribeAsync(['reg/mqtt/+', '$share/g/reg/shared']);
    await waitFor(() => server.registry.size === 4, 'four registered connections');

    assert.deepEqual(byDoor('sse')!.subscriptions(), ['reg/sse']);
    assert.deepEqual(byDoor('websocket')!.subscriptions(), ['reg/ws/#', 'reg/ws2']);
    assert.deepEqual(byDoor('longpoll')!.subscriptions(), ['reg/poll']);
    assert.deepEqual(byDoor('mqtt')!.subscriptions().sort(), ['$share/g/reg/shared', 'reg/mqtt/+']);
    for (const c of server.registry.all()) assert.equal(c.address, '127.0.0.1');
    assert.equal(server.registry.countOfAddress('127.0.0.1'), 4);

    // unsubscribe where the door can: MQTT per filter, WebSocket the subscription holding it
    assert.equal(byDoor('mqtt')!.unsubscribe!('reg/mqtt/+'), 1);
    assert.deepEqual(byDoor('mqtt')!.subscriptions(), ['$share/g/reg/shared']);
    assert.equal(byDoor('mqtt')!.unsubscribe!('reg/none'), 0);
    assert.equal(byDoor('websocket')!.unsubscribe!('reg/ws2'), 1);
    await waitFor(() => ws.frames.find((f) => f.type === 'unsubscribed'), 'unsubscribed frame');
    assert.deepEqual(byDoor('websocket')!.subscriptions(), []);

    // close with a reason: each door says it its own way
    const why = new OmnipushError('quota_exceeded', 'closed by the test');
    const disconnected = new Promise<IDisconnectPacket>((r) => mq.once('disconnect', r));
    byDoor('mqtt')!.close(why);
    assert.equal((await within(disconnected, 5000, 'MQTT DISCONNECT')).reasonCode, 0x97);
    byDoor('websocket')!.close(why);
    const closed = await within(ws.closed, 5000, 'WS close');
    assert.equal(closed.code, 1008);
    assert.ok(ws.frames.some((f) => f.type === 'error' && f.code === 'quota_exceeded'));
    byDoor('sse')!.close(why);
    await within(sse.ended, 5000, 'SSE end');
    assert.ok(sse.events().some((e) => e.event === 'close' && e.data.includes('quota_exceeded')));
    byDoor('longpoll')!.close(why);
    const r = await poll;
    assert.equal(r.status, 429);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'quota_exceeded');

    await waitFor(() => server.registry.size === 0, 'empty registry');
    assert.equal(server.registry.countOfAddress('127.0.0.1'), 0);
    mq.end(true);
  });

  it('registers a WebSocket that authenticates by message only once it has', async () => {
    const s2 = await startTestServer({ auth: { jwt: { secret: 'a-test-secret-of-enough-length-1234' }, allowAnonymous: false } });
    try {
      const { SignJWT } = await import('jose');
      const tok = await new SignJWT({ omnipush: { subscribe: ['#'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject('bob').setExpirationTime('1h').sign(new TextEncoder().encode('a-test-secret-of-enough-length-1234'));
      const ws = await openWs(s2.http);
      assert.equal((await ws.request({ type: 'ping' })).type, 'pong');
      assert.equal(s2.registry.size, 0);
      assert.equal((await ws.request({ type: 'auth', token: tok })).type, 'ok');
      assert.equal(s2.registry.countOfPrincipal('bob'), 1);
      ws.close();
      await waitFor(() => s2.registry.size === 0, 'unregistered');
    } finally {
      await s2.close();
    }
  });
});
