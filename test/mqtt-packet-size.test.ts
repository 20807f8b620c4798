import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqttPacket, { type IConnackPacket, type IDisconnectPacket, type IPublishPacket, type Packet } from 'mqtt-packet';
import { hashPassword } from '../src/auth/users.js';
import type { RunningServer } from '../src/server.js';
import { RawClients, type RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';

const EVERYTHING = { publish: ['#'], subscribe: ['#'], deny: { publish: [], subscribe: [] } };
const ASK_CURSOR = { userProperties: { 'omnipush-cursor': '1' } };

/** Every whole packet a raw client received, as bytes (to hold each to the Maximum Packet Size). */
function recordPackets(c: RawClient): Buffer[] {
  const out: Buffer[] = [];
  let buf = Buffer.alloc(0);
  c.socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      let len = 0;
      let mul = 1;
      let i = 1;
      for (; i < buf.length && i <= 4; i++) {
        len += (buf[i] & 0x7f) * mul;
        mul *= 128;
        if ((buf[i] & 0x80) === 0) break;
      }
      if (i >= buf.length || buf.length < i + 1 + len) return;
      out.push(buf.subarray(0, i + 1 + len));
      buf = buf.subarray(i + 1 + len);
    }
  });
  return out;
}

async function metric(server: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('MQTT 5: user properties unaltered, the cursor property on request, Maximum Packet Size for every packet', () => {
  let server: RunningServer;
  const clients = new RawClients(() => server);
  before(async () => {
    server = await startTestServer({
      auth: { allowAnonymous: true, anonymous: EVERYTHING, users: [{ username: 'alice', passwordHash: await hashPassword('alice-pw'), grants: EVERYTHING }] },
    });
  });
  after(async () => {
    clients.closeAll();
    await server.close();
  });

  async function publish(topic: string, data: string, qos = 1): Promise<string> {
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data, qos }) });
    assert.equal(r.status, 200);
    return ((await r.json()) as { cursor: string }).cursor;
  }

  it('[MQTT-3.3.2-17] [MQTT-3.3.2-18] forwarded user properties arrive unaltered and in order; the cursor property only for a client that asked for it', async () => {
    const plain = await clients.open(5);
    const plainBytes = recordPackets(plain);
    await plain.connect({ clientId: 'up-plain' });
    const asked = await clients.open(5);
    const askedBytes = recordPackets(asked);
    await asked.connect({ clientId: 'up-asked', properties: ASK_CURSOR });
    for (const c of [plain, asked]) {
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'up/t', qos: 0 }] });
      await c.next('suback');
    }
    const pub = await clients.open(5);
    await pub.connect({ clientId: 'up-pub' });
    const prop = (k: string, v: string) => Buffer.concat([Buffer.from([38, 0, k.length]), Buffer.from(k), Buffer.from([0, v.length]), Buffer.from(v)]);
    const props = Buffer.concat([prop('a', '1'), prop('b', '2'), prop('a', '3')]);
    const topic = Buffer.from('up/t');
    const body = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from([props.length]), props, Buffer.from('p')]);
    pub.sendRaw(Buffer.concat([Buffer.from([0x30, body.length]), body]));
    await plain.next('publish');
    const got = (await asked.next('publish')) as IPublishPacket;

    const publishOf = (bytes: Buffer[]) => bytes.find((b) => b[0] >> 4 === 3)!;
    // the whole property block of the plain client's PUBLISH is the publisher's, byte for byte
    const plainPub = publishOf(plainBytes);
    assert.ok(plainPub.includes(Buffer.concat([Buffer.from([props.length]), props, Buffer.from('p')])), 'the publisher\'s properties, unaltered, and nothing else');
    assert.equal(plainPub.indexOf('omnipush-cursor'), -1, 'no cursor property unless asked');
    const askedPub = publishOf(askedBytes);
    const cursor = (got.properties?.userProperties as Record<string, string | string[]>)['omnipush-cursor'];
    assert.equal(typeof cursor, 'string');
    assert.ok(askedPub.includes(Buffer.concat([props, prop('omnipush-cursor', cursor as string)])), 'the cursor follows the publisher\'s properties');

    // the same history position SSE and long-poll resume from
    const polled = await fetch(`${server.http}/v1/poll?topic=up/t&since=all&timeout=0`);
    const messages = ((await polled.json()) as { messages: Array<{ cursor: string }> }).messages;
    assert.equal(messages[messages.length - 1].cursor, cursor);
  });

  it('[MQTT-3.1.2-24] CONNACK leaves its reason string out rather than exceed the client\'s Maximum Packet Size', async () => {
    const roomy = await clients.open(5);
    const full = await roomy.connect({ clientId: 'mps-connack-a', username: 'alice', password: Buffer.from('wrong') });
    assert.equal(full.reasonCode, 0x86);
    assert.ok(full.properties?.reasonString, 'with room, the refusal says why');
    const tight = await clients.open(5);
    const bytes = recordPackets(tight);
    const ack: IConnackPacket = await tight.connect({ clientId: 'mps-connack-b', username: 'alice', password: Buffer.from('wrong'), properties: { maximumPacketSize: 10 } });
    assert.equal(ack.reasonCode, 0x86);
    assert.equal(ack.properties?.reasonString, undefined);
    await tight.waitClosed();
    assert.ok(bytes.length > 0 && bytes.every((b) => b.length <= 10), `sizes ${bytes.map((b) => b.length).join(',')}`);
  });

  it('[MQTT-3.1.2-24] a client whose Maximum Packet Size cannot hold the CONNACK that accepts it is refused with 0x95, in a CONNACK that fits', async () => {
    const c = await clients.open(5);
    const bytes = recordPackets(c);
    const ack = await c.connect({ clientId: 'mps-tiny', clean: false, properties: { maximumPacketSize: 12, sessionExpiryInterval: 300 } });
    assert.equal(ack.reasonCode, 0x95);
    await c.waitClosed();
    assert.ok(bytes.every((b) => b.length <= 12), `sizes ${bytes.map((b) => b.length).join(',')}`);
    // and no session was made for it
    const again = await clients.open(5);
    const ok = await again.connect({ clientId: 'mps-tiny', clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(ok.reasonCode, 0);
    assert.equal(ok.sessionPresent, false);
  });

  it('[MQTT-3.1.2-24] DISCONNECT leaves its reason string out rather than exceed the client\'s Maximum Packet Size', async () => {
    const c = await clients.open(5);
    const bytes = recordPackets(c);
    await c.connect({ clientId: 'mps-disconnect', properties: { maximumPacketSize: 30 } });
    c.send({ cmd: 'auth', reasonCode: 0 } as Packet);
    const d = (await c.next('disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    assert.equal(d.properties?.reasonString, undefined);
    await c.waitClosed();
    assert.ok(bytes.every((b) => b.length <= 30), `sizes ${bytes.map((b) => b.length).join(',')}`);
  });

  it('[MQTT-3.1.2-24] a SUBACK that cannot fit is not sent: the connection is closed instead', async () => {
    const c = await clients.open(5);
    const bytes = recordPackets(c);
    await c.connect({ clientId: 'mps-suback', properties: { maximumPacketSize: 30 } });
    const subscriptions = Array.from({ length: 40 }, (_, i) => ({ topic: `s/${i}`, qos: 0 as const }));
    assert.ok(mqttPacket.generate({ cmd: 'suback', messageId: 1, granted: subscriptions.map(() => 0) }, { protocolVersion: 5 }).length > 30);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions });
    await c.waitClosed();
    assert.ok(!c.packets.some((p) => p.cmd === 'suback'));
    assert.ok(bytes.every((b) => b.length <= 30), `sizes ${bytes.map((b) => b.length).join(',')}`);
  });

  it('[MQTT-3.1.2-25] a PUBLISH over the limit goes without our cursor property; when the publisher\'s content alone does not fit it is not sent, counted, and treated as delivered', async () => {
    const max = 200;
    const c = await clients.open(5);
    const bytes = recordPackets(c);
    await c.connect({ clientId: 'mps-publish', clean: false, properties: { maximumPacketSize: max, sessionExpiryInterval: 300, ...ASK_CURSOR } });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'mp/t', qos: 1 }] });
    await c.next('suback');
    const dropped = await metric(server, 'omnipush_mqtt_dropped_oversize_total');
    await publish('mp/t', 'small');
    await publish('mp/t', 'b'.repeat(180)); // fits without the cursor property only
    await publish('mp/t', 'c'.repeat(300)); // the publisher's content alone is too big
    await publish('mp/t', 'after');
    const payloads = () => c.packets.filter((p): p is IPublishPacket => p.cmd === 'publish').map((p) => p.payload.toString());
    await waitFor(() => payloads().includes('after'), 'the message after the oversized one');
    assert.deepEqual(payloads(), ['small', 'b'.repeat(180), 'after']);
    const pubs = c.packets.filter((p): p is IPublishPacket => p.cmd === 'publish');
    assert.ok(pubs[0].properties?.userProperties?.['omnipush-cursor'], 'the small one carries the cursor');
    assert.equal(pubs[1].properties?.userProperties, undefined, 'the near-limit one goes without it');
    assert.ok(bytes.every((b) => b.length <= max), `sizes ${bytes.map((b) => b.length).join(',')}`);
    assert.equal((await metric(server, 'omnipush_mqtt_dropped_oversize_total')) - dropped, 1);
    for (const p of pubs) c.send({ cmd: 'puback', messageId: p.messageId });
    c.close();
    await c.closedPromise;

    // treated as delivered: the resumed session does not get it again
    const again = await clients.open(5);
    const back = await again.connect({ clientId: 'mps-publish', clean: false, properties: { maximumPacketSize: max, sessionExpiryInterval: 300 } });
    assert.equal(back.sessionPresent, true);
    await publish('mp/t', 'resumed');
    await waitFor(() => again.packets.some((p) => p.cmd === 'publish' && p.payload.toString() === 'resumed'), 'the next message');
    assert.ok(!again.packets.some((p) => p.cmd === 'publish' && p.payload.length === 300), 'the oversized message is not resent');
  });
});
