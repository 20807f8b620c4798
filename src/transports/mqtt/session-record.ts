import type { StoredMessage } from '../../core/message.js';
import { MqttSession, type OutMsg, type SubOptions } from './session.js';

/** Record kind of MQTT sessions in the hub's records; the key is the client identifier. */
export const SESSION_KIND = 'mqtt-session';

interface MessageJson {
  t: string;
  p: string;
  s: number;
  c: string;
  r: boolean;
  at: number;
  x?: number;
  ct?: string;
  up?: Array<[string, string]>;
  pf?: 0 | 1;
  rt?: string;
  cd?: string;
  q?: 0 | 1 | 2;
  o?: string;
}

interface RecordJson {
  v: 1;
  /** Cluster node that wrote it last (for inspection: the claim, not this, says who holds the session). */
  node?: string;
  epoch: string;
  /** The owning principal (absent in records written before owners were kept). */
  own?: string;
  sent: number;
  expiry: number;
  gone?: number;
  subs: Array<[string, SubOptions]>;
  shared: Array<[string, SubOptions]>;
  inflight: Array<{ id: number; stage: 'publish' | 'pubrel'; qos: 0 | 1 | 2; retain: boolean; ids?: number[]; m: MessageJson }>;
  inQos2: number[];
}

function messageToJson(m: StoredMessage): MessageJson {
  const j: MessageJson = { t: m.topic, p: m.payload.toString('base64'), s: m.seq, c: m.cursor, r: m.retain, at: m.publishedAt };
  if (m.expiresAt !== undefined) j.x = m.expiresAt;
  if (m.contentType) j.ct = m.contentType;
  if (m.properties?.length) j.up = m.properties;
  if (m.payloadFormat !== undefined) j.pf = m.payloadFormat;
  if (m.responseTopic !== undefined) j.rt = m.responseTopic;
  if (m.correlationData) j.cd = m.correlationData.toString('base64');
  if (m.qos !== undefined) j.q = m.qos;
  if (m.origin) j.o = m.origin;
  return j;
}

function messageFromJson(j: MessageJson): StoredMessage {
  const m: StoredMessage = { topic: j.t, payload: Buffer.from(j.p, 'base64'), seq: j.s, cursor: j.c, retain: j.r, publishedAt: j.at };
  if (j.x !== undefined) m.expiresAt = j.x;
  if (j.ct) m.contentType = j.ct;
  if (j.up) m.properties = j.up;
  if (j.pf !== undefined) m.payloadFormat = j.pf;
  if (j.rt !== undefined) m.responseTopic = j.rt;
  if (j.cd !== undefined) m.correlationData = Buffer.from(j.cd, 'base64');
  if (j.q !== undefined) m.qos = j.q;
  if (j.o) m.origin = j.o;
  return m;
}

/** The durable form of a session: subscriptions, both directions' in-flight state, its history position. */
export function sessionToRecord(s: MqttSession, node?: string): Buffer {
  const r: RecordJson = {
    v: 1,
    node,
    epoch: s.epoch,
    own: s.owner,
    sent: s.sentSeq,
    expiry: s.expiry,
    subs: [...s.subs],
    shared: [...s.shared],
    inflight: [...s.inflight].map(([id, f]) => {
      const e: RecordJson['inflight'][number] = { id, stage: f.stage, qos: f.out.qos, retain: f.out.retain, m: messageToJson(f.out.m) };
      if (f.out.ids) e.ids = f.out.ids;
      return e;
    }),
    inQos2: [...s.inQos2],
  };
  if (s.disconnectedAt !== undefined) r.gone = s.disconnectedAt;
  return Buffer.from(JSON.stringify(r));
}

/** Rebuilds a session; null for a record this version does not read. */
export function sessionFromRecord(clientId: string, buf: Buffer, maxQueued: number): MqttSession | null {
  let r: RecordJson;
  try {
    r = JSON.parse(buf.toString('utf8')) as RecordJson;
  } catch {
    return null;
  }
  if (r.v !== 1) return null;
  const s = new MqttSession(clientId, r.epoch, r.sent, maxQueued);
  s.expiry = r.expiry;
  s.disconnectedAt = r.gone;
  if (typeof r.own === 'string') s.owner = r.own;
  for (const [f, o] of r.subs) s.subs.set(f, o);
  for (const [f, o] of r.shared) s.shared.set(f, o);
  for (const e of r.inflight) {
    const out: OutMsg = { m: messageFromJson(e.m), qos: e.qos, retain: e.retain };
    if (e.ids) out.ids = e.ids;
    s.inflight.set(e.id, { out, stage: e.stage });
  }
  for (const id of r.inQos2) s.inQos2.add(id);
  return s;
}
