import { connect as netConnect, type Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { RunningServer } from '../../src/server.js';
import { waitFor, within } from './server.js';

/** host and port of the server's MQTT listener. */
export function mqttAddress(server: RunningServer): { host: string; port: number } {
  const u = new URL(server.mqtt!);
  return { host: u.hostname, port: Number(u.port) };
}

export interface Received {
  topic: string;
  payload: string;
  packet: mqtt.IPublishPacket;
}

/** An MQTT.js client that never reconnects by itself, with what it received. */
export async function mqttClient(server: RunningServer, opts: IClientOptions = {}): Promise<MqttClient & { received: Received[] }> {
  // connectAsync does not settle when the server closes the connection without a CONNACK
  const c = (await within(mqtt.connectAsync(server.mqtt!, { reconnectPeriod: 0, connectTimeout: 5000, ...opts }), 10_000, 'MQTT CONNACK')) as MqttClient & { received: Received[] };
  c.received = [];
  c.on('message', (topic, payload, packet) => c.received.push({ topic, payload: payload.toString(), packet }));
  c.on('error', () => undefined);
  return c;
}

/** The raw clients one test opens, closed together when it ends. */
export class RawClients {
  private readonly all: RawClient[] = [];

  constructor(private readonly server: () => RunningServer) {}

  async open(version: 3 | 4 | 5 = 5): Promise<RawClient> {
    const c = await RawClient.open(this.server(), version);
    this.all.push(c);
    return c;
  }

  closeAll(): void {
    for (const c of this.all.splice(0)) c.close();
  }
}

/** A raw MQTT connection speaking through mqtt-packet, for wire-level tests. */
export class RawClient {
  readonly packets: Packet[] = [];
  closed = false;
  private readonly parser: ReturnType<typeof mqttPacket.parser>;
  readonly closedPromise: Promise<void>;

  private constructor(
    readonly socket: Socket,
    public version: 3 | 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    this.parser.on('error', () => undefined);
    socket.on('data', (d: Buffer) => this.parser.parse(d));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((r) =>
      socket.once('close', () => {
        this.closed = true;
        r();
      }),
    );
  }

  /** `localAddress`: the client's own address (any of 127.0.0.0/8 on loopback), to appear as another host. */
  static async open(server: RunningServer, version: 3 | 4 | 5 = 5, localAddress?: string): Promise<RawClient> {
    const { host, port } = mqttAddress(server);
    const socket = netConnect({ port, host, localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket, version);
  }

  send(p: Packet): void {
    this.socket.write(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  sendRaw(b: Buffer): void {
    this.socket.write(b);
  }

  /** Sends CONNECT and returns the CONNACK. */
  async connect(fields: Partial<mqttPacket.IConnectPacket> = {}): Promise<mqttPacket.IConnackPacket> {
    this.send({ cmd: 'connect', protocolVersion: this.version, protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT', clientId: '', clean: true, keepalive: 60, ...fields } as Packet);
    return (await this.next('connack')) as mqttPacket.IConnackPacket;
  }

  /** Waits for the next packet of `cmd` not yet taken, and takes it. */
  async next(cmd: Packet['cmd'], ms = 5000): Promise<Packet> {
    const p = await waitFor(() => this.packets.find((x) => x.cmd === cmd), `${cmd} packet`, ms);
    this.packets.splice(this.packets.indexOf(p), 1);
    return p;
  }

  /** The reason code of the next DISCONNECT from the server. */
  async disconnectCode(ms = 5000): Promise<number | undefined> {
    return ((await this.next('disconnect', ms)) as mqttPacket.IDisconnectPacket).reasonCode;
  }

  /** Resolves once the server closed the connection. */
  async waitClosed(ms = 5000): Promise<void> {
    await waitFor(() => this.closed, 'the server to close the connection', ms);
  }

  close(): void {
    this.socket.destroy();
  }
}
