/** What the client said at CONNECT that bounds what we send it (MQTT 5 properties; 3.1.1 has the defaults). */
export interface ClientTerms {
  /** Receive Maximum: its QoS 1/2 messages in flight. */
  readonly receiveMax: number;
  /** Maximum Packet Size. */
  readonly maxPacket: number;
  /** Topic Alias Maximum. */
  readonly aliasMax: number;
  /** Request Problem Information: false keeps reason strings to CONNACK and DISCONNECT. */
  readonly problemInfo: boolean;
  /** It asked for our cursor user property on every PUBLISH. */
  readonly cursor: boolean;
  /** Session expiry it asked for (a DISCONNECT may not raise it from 0). */
  readonly connectExpiry: number;
}

/**
 * The terms of every client that asked for nothing special (every clean 3.1.1 client): one shared
 * object rather than six fields in each connection.
 */
export const DEFAULT_TERMS: ClientTerms = Object.freeze({ receiveMax: 65535, maxPacket: 268435460, aliasMax: 0, problemInfo: true, cursor: false, connectExpiry: 0 });

/** `terms` with `change`: the same object when nothing changes, else a copy of its own. */
export function withTerms(terms: ClientTerms, change: Partial<ClientTerms>): ClientTerms {
  for (const k of Object.keys(change) as Array<keyof ClientTerms>) {
    if (change[k] !== terms[k]) return { ...terms, ...change };
  }
  return terms;
}
