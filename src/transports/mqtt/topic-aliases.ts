import { MqttProtocolError, RC } from './reason-codes.js';

/**
 * Topic aliases a client set up towards us (MQTT 5 §3.3.2.3.4): alias → topic, up to the Topic
 * Alias Maximum we announced. They live and die with the network connection.
 */
export class InboundAliases {
  private readonly map = new Map<number, string>();

  constructor(private readonly max: number) {}

  /** The topic of a PUBLISH without an alias. */
  static named(topic: string, version: number): string {
    if (topic === '') throw new MqttProtocolError(version === 5 ? RC.protocolError : RC.malformed, 'PUBLISH without a topic');
    return topic;
  }

  /** The topic a PUBLISH with an alias names: records the alias when a topic comes along, looks it up when not. */
  resolve(topic: string, alias: number): string {
    if (alias === 0 || alias > this.max) throw new MqttProtocolError(RC.topicAliasInvalid, `topic alias ${alias} is outside 1..${this.max}`);
    if (topic === '') {
      const t = this.map.get(alias);
      if (t === undefined) throw new MqttProtocolError(RC.protocolError, `topic alias ${alias} was never set`);
      return t;
    }
    this.map.set(alias, topic);
    return topic;
  }
}

/**
 * Aliases we give topics towards one client: assigned in order of first use up to the client's
 * Topic Alias Maximum, never reassigned (a busy topic keeps its alias; later ones go by name).
 */
export class OutboundAliases {
  private readonly map = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** The alias to send with `topic`: `fresh` means the topic name must go along to set it up. */
  lookup(topic: string): { alias: number; fresh: boolean } | undefined {
    const a = this.map.get(topic);
    if (a !== undefined) return { alias: a, fresh: false };
    if (this.map.size < this.max) return { alias: this.map.size + 1, fresh: true };
    return undefined;
  }

  /** The packet carrying a fresh alias was sent: the client knows it now. */
  confirm(topic: string, alias: number): void {
    this.map.set(topic, alias);
  }
}
