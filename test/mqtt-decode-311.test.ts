import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket, { type IConnectPacket, type ISubackPacket, type ISubscribePacket, type IConnackPacket } from 'mqtt-packet';
import { decode, encode } from '../src/transports/mqtt/codec.js';
import { checkConnect, checkPacket } from '../src/transports/mqtt/packet-check.js';
import { prng } from './helpers/prng.js';

// The broker decodes 3.1 / 3.1.1 CONNECT and SUBSCRIBE itself and writes their CONNACK and SUBACK
// itself; mqtt-packet, an independent codec, is the reference both ways.

const SEED = 1406;

function text(r: () => number, max: number): string {
  const alphabet = ['a', 'Z', '0', '/', '-', '_', 'é', '€', '😀', ' '];
  let s = '';
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}

function randomConnect(r: () => number): IConnectPacket {
  const v3 = r() < 0.2;
  const p: IConnectPacket = {
    cmd: 'connect',
    protocolId: v3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: v3 ? 3 : 4,
    clean: r() < 0.5,
    keepalive: Math.floor(r() * 65536),
    clientId: text(r, 23),
  };
  // (mqtt-packet writes no CONNECT with an empty client id for 3.1, or with a session to keep)
  if (p.clientId === '') {
    if (v3) p.clientId = 'c';
    else p.clean = true;
  }
  if (r() < 0.5) p.will = { topic: text(r, 30) || 'w', payload: Buffer.from(text(r, 200)), qos: Math.floor(r() * 3) as 0 | 1 | 2, retain: r() < 0.5 };
  if (r() < 0.6) {
    p.username = text(r, 40);
    if (r() < 0.7) p.password = Buffer.from(text(r, 60));
  }
  return p;
}

/** What both decoders must agree on (mqtt-packet adds bookkeeping fields of its own). */
function connectFields(p: IConnectPacket): Record<string, unknown> {
  return {
    protocolId: p.protocolId,
    protocolVersion: p.protocolVersion,
    clean: p.clean,
    keepalive: p.keepalive,
    clientId: p.clientId,
    username: p.username,
    password: p.password ? Buffer.from(p.password).toString('hex') : undefined,
    will: p.will ? { topic: p.will.topic, payload: Buffer.from(p.will.payload).toString('hex'), qos: p.will.qos, retain: p.will.retain } : undefined,
  };
}

describe('MQTT 3.1.1 packets the broker codes itself', () => {
  it('decodes CONNECT as mqtt-packet does, for 2000 random packets (will, user name, password, 3.1 and 3.1.1)', () => {
    const r = prng(SEED);
    for (let i = 0; i < 2000; i++) {
      const sent = randomConnect(r);
      const raw = mqttPacket.generate(sent);
      const ours = checkConnect(raw).packet;
      assert.ok(ours, `packet ${i}: not decoded`);
      const ref = decode(raw, sent.protocolVersion!) as IConnectPacket;
      assert.deepEqual(connectFields(ours), connectFields(ref), `packet ${i} (seed ${SEED})`);
    }
  });

  it('keeps a will payload of its own, not a view of the read buffer', () => {
    const raw = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 10, clientId: 'c', will: { topic: 't', payload: Buffer.from('last words'), qos: 1, retain: false } });
    const p = checkConnect(raw).packet!;
    raw.fill(0);
    assert.equal(Buffer.from(p.will!.payload).toString(), 'last words');
  });

  it('leaves MQTT 5 CONNECT to mqtt-packet', () => {
    const raw = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 10, clientId: 'c' });
    assert.equal(checkConnect(raw).packet, undefined);
  });

  it('decodes SUBSCRIBE as mqtt-packet does, for 2000 random packets', () => {
    const r = prng(SEED + 1);
    for (let i = 0; i < 2000; i++) {
      const n = 1 + Math.floor(r() * 5);
      const sent: ISubscribePacket = {
        cmd: 'subscribe',
        messageId: 1 + Math.floor(r() * 65535),
        subscriptions: Array.from({ length: n }, () => ({ topic: text(r, 40) || '#', qos: Math.floor(r() * 3) as 0 | 1 | 2 })),
      };
      const raw = mqttPacket.generate(sent, { protocolVersion: 4 });
      const ours = checkPacket(raw, 4) as ISubscribePacket;
      const ref = decode(raw, 4) as ISubscribePacket;
      assert.equal(ours.cmd, 'subscribe');
      assert.equal(ours.messageId, ref.messageId);
      assert.deepEqual(ours.subscriptions, ref.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })), `packet ${i} (seed ${SEED + 1})`);
    }
  });

  it('writes CONNACK and SUBACK byte for byte as mqtt-packet does', () => {
    for (const sessionPresent of [false, true]) {
      for (const returnCode of [0, 1, 2, 3, 4, 5]) {
        const p: IConnackPacket = { cmd: 'connack', sessionPresent, returnCode };
        assert.deepEqual(encode(p, 4), mqttPacket.generate(p, { protocolVersion: 4 }));
      }
    }
    const r = prng(SEED + 2);
    for (let i = 0; i < 500; i++) {
      const granted = Array.from({ length: 1 + Math.floor(r() * 125) }, () => [0, 1, 2, 0x80][Math.floor(r() * 4)]);
      const p: ISubackPacket = { cmd: 'suback', messageId: 1 + Math.floor(r() * 65535), granted };
      assert.deepEqual(encode(p, 4), mqttPacket.generate(p, { protocolVersion: 4 }), `suback ${i}`);
    }
  });
});
