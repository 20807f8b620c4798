import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import type { Packet } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { MqttWs, OP } from './helpers/mqtt-ws.js';
import { closePayload, RawWs } from './helpers/raw-ws.js';
import { startTestServer, waitFor } from './helpers/server.js';

// MQTT over WebSocket at the wire: a raw RFC 6455 client carries MQTT packets as it likes (split
// across messages, several in one, fragmented, between pings) and reads every frame the server sends.

describe('MQTT over WebSocket at the wire', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ mqtt: { maxPacketBytes: 4096 } });
  });
  after(() => server.close());

  it('reads packets split across messages, packed into one, and in a fragmented message with a ping between its frames', async () => {
    const c = await MqttWs.open(server, 4);
    try {
      // CONNECT in two messages, cut inside its variable header
      const connect = c.bytes({ cmd: 'connect', protocolVersion: 4, protocolId: 'MQTT', clientId: 'wire-split', clean: true, keepalive: 60 } as Packet);
      c.ws.send(OP.binary, connect.subarray(0, 5));
      c.ws.send(OP.binary, connect.subarray(5));
      assert.equal(((await c.packet('connack')) as mqttPacket.IConnackPacket).returnCode, 0);

      // SUBSCRIBE and PINGREQ in one message
      c.ws.send(OP.binary, Buffer.concat([c.bytes({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'wire/#', qos: 1 }] }), c.bytes({ cmd: 'pingreq' })]));
      assert.deepEqual(((await c.packet('suback')) as mqttPacket.ISubackPacket).granted, [1]);
      await c.packet('pingresp');

      // a QoS 1 PUBLISH as one message of three frames, with a ping between the first two
      const publish = c.bytes({ cmd: 'publish', topic: 'wire/frag', payload: Buffer.from('x'.repeat(300)), qos: 1, messageId: 9, retain: false, dup: false });
      c.ws.send(OP.binary, publish.subarray(0, 100), { fin: false });
      c.ws.send(OP.ping, 'are-you-there');
      c.ws.send(OP.continuation, publish.subarray(100, 200), { fin: false });
      c.ws.send(OP.continuation, publish.subarray(200));
      const pong = await waitFor(() => c.ws.frames.find((f) => f.opcode === OP.pong), 'the pong');
      assert.equal(pong.payload.toString(), 'are-you-there');
      assert.equal(((await c.packet('puback')) as mqttPacket.IPubackPacket).messageId, 9);
      const back = (await c.packet('publish')) as mqttPacket.IPublishPacket;
      assert.equal(back.topic, 'wire/frag');
      assert.equal(back.payload.toString(), 'x'.repeat(300));

      // every frame the server sent is a final, unmasked frame without extensions
      for (const f of c.ws.frames) assert.ok(f.fin && f.rsv === 0, 'final frames without RSV bits');
    } finally {
      c.ws.sock.destroy();
    }
  });

  it('a text frame ends the connection: DISCONNECT Malformed Packet (0x81), then a close frame', async () => {
    const c = await MqttWs.open(server, 5);
    try {
      await c.connect('wire-text');
      c.ws.send(OP.text, 'hello');
      assert.equal(((await c.packet('disconnect')) as mqttPacket.IDisconnectPacket).reasonCode, 0x81);
      await waitFor(() => c.ws.closeCode() !== undefined, 'the close frame');
      assert.equal(c.ws.closeCode(), 1000);
      // the close handshake: our answer, then the server ends the TCP connection
      c.ws.send(OP.close, closePayload(1000));
      await waitFor(() => c.ws.closed || c.ws.ended, 'the server to end the connection');
    } finally {
      c.ws.sock.destroy();
    }
  });

  it('a message larger than mqtt.maxPacketBytes + 8 is refused from its header with 1009', async () => {
    const c = await MqttWs.open(server, 4);
    try {
      await c.connect('wire-big');
      c.ws.send(OP.binary, Buffer.alloc(4096 + 9));
      await c.ws.expectClose(1009, 'a message over the bound');
    } finally {
      c.ws.sock.destroy();
    }
  });

  it('a frame breaking RFC 6455 (unmasked) closes with 1002, and the connection is let go', async () => {
    const c = await MqttWs.open(server, 4);
    try {
      await c.connect('wire-unmasked');
      c.ws.send(OP.binary, c.bytes({ cmd: 'pingreq' }), { mask: false });
      await waitFor(() => c.ws.closeCode() !== undefined, 'the close frame');
      assert.equal(c.ws.closeCode(), 1002);
      assert.equal(c.packets().filter((p) => p.cmd === 'pingresp').length, 0, 'the unmasked PINGREQ was not read');
      // nothing more is read from it: the server ends the connection without waiting for our close
      await waitFor(() => c.ws.ended || c.ws.closed, 'the server to end the connection');
      await waitFor(async () => /^omnipush_connections\{transport="mqtt"\} 0$/m.test(await (await fetch(`${server.http}/metrics`)).text()), 'no MQTT connection left');
    } finally {
      c.ws.sock.destroy();
    }
  });
});

describe('MQTT over WebSocket: pongs count against the queue bound', () => {
  it('a client that sends pings and never reads the pongs is cut as a slow consumer', async () => {
    const server = await startTestServer({ limits: { maxQueueBytes: 64 * 1024 } });
    const c = await MqttWs.open(server, 4);
    try {
      await c.connect('wire-pinger');
      const closes = async (): Promise<number> => Number(/^omnipush_queue_closes_total\{transport="mqtt"\} (\d+)$/m.exec(await (await fetch(`${server.http}/metrics`)).text())?.[1] ?? 0);
      const before = await closes();
      c.ws.sock.pause();
      // ~20 MB of pongs owed: far past the kernel's buffers and the 64 KB bound
      const ping = RawWs.frame(OP.ping, Buffer.alloc(125, 0x70));
      for (let sent = 0; sent < 160_000 && !c.ws.sock.destroyed; sent += 1000) {
        if (!c.ws.sock.write(Buffer.concat(Array.from({ length: 1000 }, () => ping)))) await new Promise((r) => c.ws.sock.once('drain', r).once('close', r));
        if ((await closes()) > before) break;
      }
      await waitFor(async () => (await closes()) > before, 'the connection counted as cut for its queue');
      c.ws.sock.resume();
      await waitFor(() => c.ws.closed, 'the server to cut the socket');
    } finally {
      c.ws.sock.destroy();
      await server.close();
    }
  });
});

describe('MQTT over WebSocket at shutdown', () => {
  it('sends DISCONNECT Server shutting down (0x8B), then a close frame 1000', async () => {
    const server = await startTestServer();
    const c = await MqttWs.open(server, 5);
    try {
      await c.connect('wire-shutdown');
      const closing = server.close();
      assert.equal(((await c.packet('disconnect')) as mqttPacket.IDisconnectPacket).reasonCode, 0x8b);
      await waitFor(() => c.ws.closeCode() !== undefined, 'the close frame');
      assert.equal(c.ws.closeCode(), 1000);
      const disconnectAt = c.ws.frames.findIndex((f) => f.opcode === OP.binary && f.payload[0] >> 4 === 14);
      const closeAt = c.ws.frames.findIndex((f) => f.opcode === OP.close);
      assert.ok(disconnectAt >= 0 && disconnectAt < closeAt, 'DISCONNECT before the close frame');
      c.ws.send(OP.close, closePayload(1000));
      await closing;
    } finally {
      c.ws.sock.destroy();
    }
  });
});
