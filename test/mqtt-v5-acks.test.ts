import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket, { type IConnackPacket, type ISubackPacket, type Packet } from 'mqtt-packet';
import { encode } from '../src/transports/mqtt/codec.js';
import { connack5, suback5 } from '../src/transports/mqtt/v5-acks.js';
import { prng } from './helpers/prng.js';

// The broker writes MQTT 5 CONNACK and SUBACK itself; mqtt-packet, an independent codec, reads
// what it wrote and must find what its own writer would have said.

const SEED = 5005;

function parse(buf: Buffer): Packet {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const out: Packet[] = [];
  parser.on('packet', (p: Packet) => out.push(p));
  parser.on('error', (e: Error) => {
    throw e;
  });
  parser.parse(buf);
  assert.equal(out.length, 1, 'exactly one packet');
  return out[0];
}

function text(r: () => number, max: number): string {
  const alphabet = ['a', 'Z', '0', '/', '-', 'é', '€', '😀', ' '];
  let s = '';
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}

function someProperties(r: () => number): Record<string, unknown> {
  const all: Record<string, () => unknown> = {
    sessionExpiryInterval: () => Math.floor(r() * 0xffffffff),
    assignedClientIdentifier: () => text(r, 40),
    serverKeepAlive: () => Math.floor(r() * 65536),
    reasonString: () => text(r, 200),
    receiveMaximum: () => 1 + Math.floor(r() * 65535),
    topicAliasMaximum: () => Math.floor(r() * 65536),
    maximumQoS: () => Math.floor(r() * 2),
    retainAvailable: () => r() < 0.5,
    maximumPacketSize: () => 1 + Math.floor(r() * 268435455),
    wildcardSubscriptionAvailable: () => r() < 0.5,
    subscriptionIdentifiersAvailable: () => r() < 0.5,
    sharedSubscriptionAvailable: () => r() < 0.5,
  };
  const props: Record<string, unknown> = {};
  for (const [name, make] of Object.entries(all)) if (r() < 0.5) props[name] = make();
  return props;
}

describe('MQTT 5 packets the broker writes itself', () => {
  it('CONNACK reads back as mqtt-packet\'s own, for 2000 random packets', () => {
    const r = prng(SEED);
    for (let i = 0; i < 2000; i++) {
      const p: IConnackPacket = { cmd: 'connack', sessionPresent: r() < 0.5, reasonCode: [0, 0x80, 0x85, 0x87, 0x88, 0x97][Math.floor(r() * 6)] };
      const props = someProperties(r);
      if (Object.keys(props).length > 0 || r() < 0.5) p.properties = props as IConnackPacket['properties'];
      const ours = connack5(p);
      assert.ok(ours, 'written here, not left to mqtt-packet');
      assert.deepEqual(encode(p, 5), ours);
      assert.deepEqual(parse(ours), parse(mqttPacket.generate(p, { protocolVersion: 5 })), `connack ${i}`);
    }
  });

  it('SUBACK reads back as mqtt-packet\'s own, for 2000 random packets', () => {
    const r = prng(SEED + 1);
    for (let i = 0; i < 2000; i++) {
      const granted = Array.from({ length: 1 + Math.floor(r() * 300) }, () => [0, 1, 2, 0x80, 0x87, 0x8f, 0x97, 0xa1][Math.floor(r() * 8)]);
      const p: ISubackPacket = { cmd: 'suback', messageId: 1 + Math.floor(r() * 65535), granted };
      if (r() < 0.3) p.properties = { reasonString: text(r, 200) };
      const ours = suback5(p);
      assert.ok(ours, 'written here, not left to mqtt-packet');
      assert.deepEqual(encode(p, 5), ours);
      assert.deepEqual(parse(ours), parse(mqttPacket.generate(p, { protocolVersion: 5 })), `suback ${i}`);
    }
  });

  it('leaves a packet with User Properties to mqtt-packet, which writes them', () => {
    const p: ISubackPacket = { cmd: 'suback', messageId: 7, granted: [0], properties: { reasonString: 'x', userProperties: { a: 'b' } } };
    assert.equal(suback5(p), null);
    assert.deepEqual(encode(p, 5), mqttPacket.generate(p, { protocolVersion: 5 }));
  });
});
