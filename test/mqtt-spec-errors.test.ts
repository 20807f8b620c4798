import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IPubcompPacket, IPublishPacket, IPubrelPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { RawClients, type RawClient } from './helpers/mqtt.js';
import { startTestServer } from './helpers/server.js';

/**
 * Section 4 of MQTT 5.0 (and 3.1.1 where it differs), rule by rule, over raw sockets: what a
 * client gets for a packet the standard forbids. A v5 client is told with DISCONNECT and the
 * reason code (§4.13), a 3.1.1 client is disconnected without a word ([MQTT-4.8.0-1]).
 */
describe('MQTT section 4: protocol errors answered as the standard prescribes', () => {
  let server: RunningServer;
  const clients = new RawClients(() => server);
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    clients.closeAll();
    await server.close();
  });

  async function connected(version: 4 | 5, clientId: string): Promise<RawClient> {
    const c = await clients.open(version);
    const ack = await c.connect({ clientId });
    assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
    return c;
  }

  /** v5: DISCONNECT with `rc`, then the close; 3.1.1: the close, and nothing answered `cmd`. */
  async function refused(c: RawClient, version: 4 | 5, rc: number, cmd?: 'suback' | 'unsuback'): Promise<void> {
    if (version === 5) assert.equal(await c.disconnectCode(), rc);
    await c.waitClosed();
    if (cmd) assert.ok(!c.packets.some((p) => p.cmd === cmd), `no ${cmd.toUpperCase()} for the bad packet`);
  }

  /** A v5 SUBSCRIBE/UNSUBSCRIBE body: packet id, empty properties (v5), then `payload`. */
  function subPacket(first: number, version: 4 | 5, pid: number, payload: Buffer): Buffer {
    const body = Buffer.concat([Buffer.from([pid >> 8, pid & 0xff]), version === 5 ? Buffer.from([0]) : Buffer.alloc(0), payload]);
    return Buffer.concat([Buffer.from([first, body.length]), body]);
  }

  /** Subscribes at `qos` and has the server send one message: the PUBLISH it sent. */
  async function delivered(c: RawClient, topic: string, qos: 1 | 2): Promise<IPublishPacket> {
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] });
    await c.next('suback');
    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data: 'x', qos }) });
    assert.equal(r.status, 200);
    return (await c.next('publish')) as IPublishPacket;
  }

  /** The connection still answers PINGREQ. */
  async function stillOpen(c: RawClient): Promise<void> {
    c.send({ cmd: 'pingreq' });
    await c.next('pingresp');
    assert.equal(c.closed, false);
  }

  for (const v of [5, 4] as const) {
    const name = v === 5 ? 'MQTT 5: DISCONNECT' : 'MQTT 3.1.1: closed';

    it(`[MQTT-4.7.3-1] SUBSCRIBE with a zero-length topic filter is a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
      const c = await connected(v, `zf-sub-${v}`);
      c.sendRaw(subPacket(0x82, v, 1, Buffer.from([0, 0, 0])));
      await refused(c, v, 0x82, 'suback');
    });

    it(`[MQTT-4.7.3-1] UNSUBSCRIBE with a zero-length topic filter is a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
      const c = await connected(v, `zf-unsub-${v}`);
      c.sendRaw(subPacket(0xa2, v, 1, Buffer.from([0, 0])));
      await refused(c, v, 0x82, 'unsuback');
    });

    it(`[MQTT-2.2.1-3] SUBSCRIBE with packet identifier 0 is a malformed packet (${name}${v === 5 ? ' 0x81' : ''})`, async () => {
      const c = await connected(v, `pid0-sub-${v}`);
      c.sendRaw(subPacket(0x82, v, 0, Buffer.from([0, 1, 0x61, 0])));
      await refused(c, v, 0x81, 'suback');
    });

    it(`[MQTT-2.2.1-3] UNSUBSCRIBE with packet identifier 0 is a malformed packet (${name}${v === 5 ? ' 0x81' : ''})`, async () => {
      const c = await connected(v, `pid0-unsub-${v}`);
      c.sendRaw(subPacket(0xa2, v, 0, Buffer.from([0, 1, 0x61])));
      await refused(c, v, 0x81, 'unsuback');
    });

    it(`[MQTT-2.2.1-3] QoS 1 PUBLISH with packet identifier 0 is a malformed packet (${name}${v === 5 ? ' 0x81' : ''})`, async () => {
      const c = await connected(v, `pid0-pub-${v}`);
      const body = Buffer.concat([Buffer.from([0, 1, 0x61, 0, 0]), v === 5 ? Buffer.from([0]) : Buffer.alloc(0), Buffer.from('p')]);
      c.sendRaw(Buffer.concat([Buffer.from([0x32, body.length]), body]));
      await refused(c, v, 0x81);
      assert.ok(!c.packets.some((p) => p.cmd === 'puback'), 'no PUBACK');
    });

    for (const [cmd, first] of [
      ['PUBACK', 0x40],
      ['PUBREC', 0x50],
      ['PUBREL', 0x62],
      ['PUBCOMP', 0x70],
    ] as const) {
      it(`[MQTT-2.2.1-5] ${cmd} with packet identifier 0 acknowledges no packet: a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
        const c = await connected(v, `pid0-${cmd}-${v}`);
        c.sendRaw(Buffer.from([first, 2, 0, 0]));
        await refused(c, v, 0x82);
      });
    }

    it(`[MQTT-4.3.3-3] PUBACK for a QoS 2 delivery (its PUBREC is due) is a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
      const c = await connected(v, `puback-q2-${v}`);
      const p = await delivered(c, `flow/q2a/${v}`, 2);
      c.sendRaw(Buffer.from([0x40, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      await refused(c, v, 0x82);
    });

    it(`[MQTT-4.3.3-3] PUBCOMP for a QoS 2 delivery before its PUBREC is a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
      const c = await connected(v, `pubcomp-early-${v}`);
      const p = await delivered(c, `flow/q2c/${v}`, 2);
      c.sendRaw(Buffer.from([0x70, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      await refused(c, v, 0x82);
    });

    it(`[MQTT-4.3.2-3] PUBREC for a QoS 1 delivery (its PUBACK is due) is a protocol error (${name}${v === 5 ? ' 0x82' : ''})`, async () => {
      const c = await connected(v, `pubrec-q1-${v}`);
      const p = await delivered(c, `flow/q1/${v}`, 1);
      c.sendRaw(Buffer.from([0x50, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      await refused(c, v, 0x82);
    });

    it(`[MQTT-4.3.3-4] [MQTT-4.3.3-5] the QoS 2 flow in order: PUBREC is answered PUBREL, PUBCOMP ends it; the connection stays`, async () => {
      const c = await connected(v, `q2-flow-${v}`);
      const p = await delivered(c, `flow/ok/${v}`, 2);
      c.sendRaw(Buffer.from([0x50, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      const rel = (await c.next('pubrel')) as IPubrelPacket;
      assert.equal(rel.messageId, p.messageId);
      // a PUBREC again (a resend) gets the PUBREL again, not an error
      c.sendRaw(Buffer.from([0x50, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      assert.equal(((await c.next('pubrel')) as IPubrelPacket).messageId, p.messageId);
      c.sendRaw(Buffer.from([0x70, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      await stillOpen(c);
      // a late PUBACK or PUBCOMP for an identifier no longer in flight is let be
      c.sendRaw(Buffer.from([0x70, 2, p.messageId! >> 8, p.messageId! & 0xff]));
      c.sendRaw(Buffer.from([0x40, 2, 0x12, 0x34]));
      await stillOpen(c);
    });

    it(`[MQTT-4.3.3-11] PUBREL for an identifier not in flight is answered PUBCOMP${v === 5 ? ' 0x92 (Packet Identifier not found)' : ''}; the connection stays`, async () => {
      const c = await connected(v, `pubrel-unknown-${v}`);
      c.sendRaw(Buffer.from([0x62, 2, 0x01, 0x02]));
      const comp = (await c.next('pubcomp')) as IPubcompPacket;
      assert.equal(comp.messageId, 0x0102);
      if (v === 5) assert.equal(comp.reasonCode, 0x92);
      await stillOpen(c);
    });

    it(`[MQTT-4.3.3-4] PUBREC for an identifier not in flight is answered PUBREL${v === 5 ? ' 0x92' : ''}; the connection stays`, async () => {
      const c = await connected(v, `pubrec-unknown-${v}`);
      c.sendRaw(Buffer.from([0x50, 2, 0x03, 0x04]));
      const rel = (await c.next('pubrel')) as IPubrelPacket;
      assert.equal(rel.messageId, 0x0304);
      if (v === 5) assert.equal(rel.reasonCode, 0x92);
      await stillOpen(c);
    });
  }
});
