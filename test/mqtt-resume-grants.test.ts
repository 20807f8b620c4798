import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

const SECRET = 'resume-grants-secret-0123456789';

/** Grants for topics under `root`: everything, or everything but `root/secret/#` (narrowed). */
function grants(root: string, narrowed: boolean) {
  return { publish: [`${root}/#`], subscribe: [`${root}/#`], deny: { publish: [], subscribe: narrowed ? [`${root}/secret/#`] : [] } };
}

/**
 * Grants can narrow between two connections of the same principal (a new token). What a resumed
 * MQTT session had in flight or missed, and what history replays to SSE, WebSocket and long-poll,
 * goes only where the grants of the connection doing the resuming allow.
 */
describe('resuming under narrower grants', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { allowAnonymous: false, jwt: { secret: SECRET } } });
  });
  after(() => server.close());

  const token = (root: string, narrowed: boolean) => mintToken({ secret: SECRET, sub: 'device-7', grants: grants(root, narrowed) });

  async function publish(wide: string, topic: string, data: string): Promise<void> {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${wide}` }, body: JSON.stringify({ topic, data }) });
    assert.equal(r.status, 200, await r.text());
  }

  it('MQTT: a message in flight, missed messages and live ones on a now denied topic are not sent; allowed ones are', async () => {
    const wide = await token('m', false);
    const narrow = await token('m', true);
    const first = await RawClient.open(server, 5);
    const ack = await first.connect({ clientId: 'resumer', clean: false, username: 'device', password: Buffer.from(wide), properties: { sessionExpiryInterval: 300 } });
    assert.equal(ack.reasonCode, 0);
    first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'm/#', qos: 1 }] });
    assert.deepEqual(((await first.next('suback')) as ISubackPacket).granted, [1]);
    // received but never acknowledged: both stay in flight in the session
    await publish(wide, 'm/secret/1', 'secret-in-flight');
    await publish(wide, 'm/open/1', 'open-in-flight');
    await waitFor(() => first.packets.filter((p) => p.cmd === 'publish').length === 2, 'two PUBLISHes to the first connection');
    first.close();
    await first.closedPromise;
    await publish(wide, 'm/secret/2', 'secret-missed');
    await publish(wide, 'm/open/2', 'open-missed');

    const second = await RawClient.open(server, 5);
    const back = await second.connect({ clientId: 'resumer', clean: false, username: 'device', password: Buffer.from(narrow), properties: { sessionExpiryInterval: 300 } });
    assert.equal(back.reasonCode, 0);
    assert.equal(back.sessionPresent, true);
    await publish(wide, 'm/secret/3', 'secret-live');
    await publish(wide, 'm/open/3', 'open-live');
    const payloads = () => second.packets.filter((p): p is IPublishPacket => p.cmd === 'publish').map((p) => p.payload.toString());
    await waitFor(() => payloads().includes('open-live'), 'the live allowed message');
    assert.deepEqual(payloads(), ['open-in-flight', 'open-missed', 'open-live'], 'nothing on m/secret/# reaches the resumed session');
    const dup = second.packets.find((p): p is IPublishPacket => p.cmd === 'publish' && p.payload.toString() === 'open-in-flight');
    assert.equal(dup?.dup, true, 'the allowed in-flight message goes again with DUP');
    second.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'm/secret/#', qos: 1 }] });
    assert.deepEqual(((await second.next('suback')) as ISubackPacket).granted, [0x87]);
    second.close();
  });

  it('MQTT: a stored subscription the new grants deny is dropped from the session', async () => {
    const wide = await token('d', false);
    const narrow = await token('d', true);
    const first = await RawClient.open(server, 4);
    await first.connect({ clientId: 'resumer-4', clean: false, username: 'device', password: Buffer.from(wide) });
    first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'd/secret/#', qos: 0 }, { topic: 'd/open', qos: 0 }] });
    assert.deepEqual(((await first.next('suback')) as ISubackPacket).granted, [0, 0]);
    first.close();
    await first.closedPromise;
    const second = await RawClient.open(server, 4);
    const back = await second.connect({ clientId: 'resumer-4', clean: false, username: 'device', password: Buffer.from(narrow) });
    assert.equal(back.sessionPresent, true);
    await publish(wide, 'd/secret/x', 'secret');
    await publish(wide, 'd/open', 'open');
    await waitFor(() => second.packets.some((p) => p.cmd === 'publish'), 'the allowed message');
    second.close();
    await second.closedPromise;
    // and with the wide token again the session no longer holds the dropped subscription
    const third = await RawClient.open(server, 4);
    await third.connect({ clientId: 'resumer-4', clean: false, username: 'device', password: Buffer.from(wide) });
    await publish(wide, 'd/secret/y', 'secret-later');
    await publish(wide, 'd/open', 'open-later');
    await waitFor(() => third.packets.some((p) => p.cmd === 'publish' && p.payload.toString() === 'open-later'), 'the allowed message');
    assert.deepEqual(
      [...second.packets, ...third.packets].filter((p): p is IPublishPacket => p.cmd === 'publish').map((p) => p.topic),
      ['d/open', 'd/open'],
    );
    third.close();
  });

  it('SSE, WebSocket and long-poll: history replayed after a cursor follows the grants of the token resuming', async () => {
    const wide = await token('h', false);
    const narrow = await token('h', true);
    await publish(wide, 'h/start', 'start');
    const r = await fetch(`${server.http}/v1/poll?topic=h/start&since=all&timeout=0&access_token=${wide}`);
    const start = ((await r.json()) as { messages: Array<{ cursor: string }> }).messages[0].cursor;
    await publish(wide, 'h/secret/1', 'secret');
    await publish(wide, 'h/open/1', 'open');

    const sse = await openRawSse(`${server.http}/v1/sse?topic=${encodeURIComponent('h/#')}&access_token=${narrow}`, { 'Last-Event-ID': start });
    assert.equal(sse.status, 200);
    await waitFor(() => sse.events().some((e) => e.data === 'open'), 'SSE replay of the allowed message');
    assert.deepEqual(
      sse.events().filter((e) => e.event === 'message' || e.event === '').map((e) => e.data),
      ['open'],
    );
    sse.close();

    const ws = await openWs(server.http, { headers: { authorization: `Bearer ${narrow}` } });
    const reply = await ws.request({ type: 'subscribe', topics: ['h/#'], since: start });
    assert.notEqual(reply.type, 'error', JSON.stringify(reply));
    await waitFor(() => ws.messages().some((m) => m.data === 'open'), 'WebSocket replay of the allowed message');
    assert.deepEqual(
      ws.messages().map((m) => m.topic),
      ['h/open/1'],
    );
    ws.close();

    const poll = await fetch(`${server.http}/v1/poll?topic=${encodeURIComponent('h/#')}&since=${start}&timeout=0&access_token=${narrow}`);
    assert.equal(poll.status, 200);
    assert.deepEqual(((await poll.json()) as { messages: Array<{ topic: string }> }).messages.map((m) => m.topic), ['h/open/1']);
  });
});
