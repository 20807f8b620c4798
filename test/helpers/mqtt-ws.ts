import assert from 'node:assert/strict';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { RawWs } from './raw-ws.js';
import { waitFor } from './server.js';

/** WebSocket opcodes (RFC 6455 §5.2). */
export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/**
 * A raw WebSocket to `/mqtt` for wire-level MQTT-over-WebSocket tests: the test frames the packets
 * as it likes, and reads the MQTT packets the server's binary frames carried, in order.
 */
export class MqttWs {
  private constructor(
    readonly ws: RawWs,
    readonly version: 4 | 5,
  ) {}

  static async open(server: { http: string }, version: 4 | 5): Promise<MqttWs> {
    const ws = await RawWs.open(server.http, '/mqtt');
    assert.match(ws.head, /^HTTP\/1\.1 101 /, 'upgraded');
    return new MqttWs(ws, version);
  }

  bytes(p: Packet): Buffer {
    return mqttPacket.generate(p, { protocolVersion: this.version });
  }

  /** Every packet in the server's binary frames so far (frames are parsed afresh: they may split packets). */
  packets(): Packet[] {
    const out: Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: this.version });
    parser.on('packet', (p: Packet) => out.push(p));
    for (const f of this.ws.frames) {
      if (f.opcode === OP.binary) parser.parse(f.payload);
      else assert.ok(f.opcode === OP.pong || f.opcode === OP.close, `a server frame with opcode ${f.opcode}`);
    }
    return out;
  }

  async packet(cmd: Packet['cmd'], n = 1): Promise<Packet> {
    return waitFor(() => this.packets().filter((p) => p.cmd === cmd)[n - 1], `${cmd} packet ${n}`);
  }

  /** Sends CONNECT in one binary message and checks the CONNACK accepts it. */
  async connect(clientId: string): Promise<void> {
    this.ws.send(OP.binary, this.bytes({ cmd: 'connect', protocolVersion: this.version, protocolId: 'MQTT', clientId, clean: true, keepalive: 60 } as Packet));
    const ack = (await this.packet('connack')) as mqttPacket.IConnackPacket;
    assert.equal(this.version === 5 ? ack.reasonCode : ack.returnCode, 0);
  }
}
