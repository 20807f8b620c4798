import { randomBytes } from 'node:crypto';
import type { IConnackPacket, IConnectPacket } from 'mqtt-packet';
import { canReceive, subscribeVerdict } from '../../../core/grants.js';
import { decode, encode, unsupportedConnack } from '../codec.js';
import type { MqttConnection } from '../connection.js';
import { sharedFilter } from '../feed.js';
import { bodyOffset } from '../framer.js';
import { checkConnect, UnsupportedProtocol } from '../packet-check.js';
import { connackCode3, MqttProtocolError, RC } from '../reason-codes.js';
import { MqttSession } from '../session.js';
import { wantsCursor } from '../publish-encoder.js';
import { ownerOf } from '../session-owner.js';
import { notSaved } from '../session-store.js';
import { willOf } from './will-spec.js';
import { DEFAULT_TERMS, withTerms } from '../client-terms.js';
import { OmnipushError } from '../../../core/errors.js';

/**
 * Answers CONNECT with a refusal (v5 reason code, or the closest 3.1.1 return code) and closes.
 * Nothing happens when the connection is closed already (the client went, or its CONNECT was
 * answered at its deadline while the handler was still at work).
 */
export function refuse(conn: MqttConnection, rc: number, reason?: string): void {
  if (conn.closed) return;
  const packet: IConnackPacket = { cmd: 'connack', sessionPresent: false };
  if (conn.version === 5) {
    packet.reasonCode = rc;
    if (reason) packet.properties = { reasonString: reason.slice(0, 200) };
  } else packet.returnCode = connackCode3(rc);
  conn.send(packet);
  conn.state = 'closed';
  conn.broker.connectionClosed(conn);
  conn.link.end();
}

/**
 * CONNECT (MQTT 5 §3.1, 3.1.1 §3.1): protocol level, checks, credentials, client identifier,
 * takeover, clean start or resume, session expiry, limits both ways; then CONNACK, and the session
 * takes up where it was (in-flight messages again, history after its position).
 */
export async function handleConnect(conn: MqttConnection, raw: Buffer): Promise<void> {
  const { broker } = conn;
  const cfg = broker.config;
  let users;
  try {
    const c = checkConnect(raw);
    conn.version = c.version;
    users = c;
  } catch (e) {
    if (e instanceof UnsupportedProtocol) {
      conn.link.write(unsupportedConnack(e.level));
      conn.state = 'closed';
      broker.connectionClosed(conn);
      conn.link.end();
      return;
    }
    // a v5 client learns why from CONNACK (§3.2.2.2); 3.1.1 wants the connection closed without one
    const at = bodyOffset(raw);
    if (e instanceof MqttProtocolError && raw.length > at + 6 && raw.toString('latin1', at, at + 6) === '\x00\x04MQTT' && raw[at + 6] === 5) {
      conn.version = 5;
      return refuse(conn, e.reasonCode, e.message);
    }
    throw e;
  }
  const p = users.packet ?? (decode(raw, conn.version) as IConnectPacket);
  const v5 = conn.version === 5;
  const props = p.properties ?? {};

  if (v5) {
    // a refusal too must fit the client's limits (MQTT-3.1.2-24)
    conn.terms = withTerms(conn.terms, { maxPacket: props.maximumPacketSize ?? DEFAULT_TERMS.maxPacket, problemInfo: props.requestProblemInformation !== false });
  }
  if (broker.ctx.draining()) return refuse(conn, RC.serverUnavailable, 'server shutting down');
  if (props.authenticationMethod !== undefined) return refuse(conn, RC.badAuthMethod, 'enhanced authentication is not supported');

  let clientId = p.clientId;
  if (clientId === '' && !v5 && !p.clean) return refuse(conn, RC.clientIdNotValid, 'an empty client identifier needs clean session');
  if ((conn.version === 3 && clientId.length > 23) || Buffer.byteLength(clientId) > 256) {
    return refuse(conn, RC.clientIdNotValid, 'client identifier too long');
  }

  try {
    conn.principal = await broker.authenticate(p.username, p.password, clientId, conn.address);
  } catch (e) {
    if (e instanceof MqttProtocolError) return refuse(conn, e.reasonCode, e.message);
    throw e;
  }
  if (conn.closed) return;
  if (!broker.admit(conn)) return refuse(conn, RC.serverBusy, 'server busy: connection limit reached');

  // the principal's own part of the identifier space (mqtt.clientIdPrefix); a generated one gets it too
  const prefix = cfg.clientIdPrefix.replaceAll('{sub}', conn.principal.id);
  let assigned = false;
  if (clientId === '') {
    clientId = `${prefix}auto-${randomBytes(12).toString('base64url')}`;
    assigned = true;
  } else if (!clientId.startsWith(prefix)) {
    broker.log.info({ client: clientId, principal: conn.principal.id, prefix }, 'mqtt CONNECT refused: client identifier outside the principal\'s prefix');
    return refuse(conn, RC.clientIdNotValid, 'client identifier must start with the prefix of its principal');
  }

  const clean = p.clean !== false;
  const maxExpiry = cfg.maxSessionExpiry;
  const askedExpiry = v5 ? (props.sessionExpiryInterval ?? 0) : clean ? 0 : 0xffffffff;
  const expiry = Math.min(askedExpiry, maxExpiry);
  conn.terms = withTerms(conn.terms, { connectExpiry: askedExpiry });
  conn.clientId = clientId;
  // a will the server refuses refuses the CONNECT before anything else happens: no older
  // connection is taken over and no session is made or changed
  try {
    conn.will = p.will ? willOf(conn, p.will, users.willUserProperties) : undefined;
  } catch (e) {
    if (e instanceof MqttProtocolError) return refuse(conn, e.reasonCode, e.message);
    throw e;
  }

  const ack = successConnack(conn, p, clientId, assigned, expiry, askedExpiry);
  // CONNACK has nothing optional left to leave out: a client whose Maximum Packet Size cannot hold
  // it is refused before anything happens to a session (MQTT-3.1.2-24)
  if (v5 && encode(ack, 5).length > conn.terms.maxPacket) return refuse(conn, RC.packetTooLarge, 'Maximum Packet Size too small for CONNACK');

  // a session is its owner's: another principal's CONNECT takes nothing over and cleans nothing,
  // and is refused here, before any other node is asked to let the session go
  const owner = ownerOf(conn.principal);
  if (!assigned) {
    const recorded = await broker.owners.find(clientId);
    if (conn.closed) return;
    const held = broker.sessions.peek(clientId);
    const holder = held ? held.owner : broker.live.get(clientId) ? ownerOf(broker.live.get(clientId)!.principal) : recorded;
    if (holder !== undefined && holder !== owner) return refuseForeign(conn, clientId, holder);
  }

  // the connection quotas, before anything changes; a takeover by the same principal from the
  // same address replaces a connection rather than adding one
  const { quotas } = broker.ctx;
  const principal = conn.principal;
  const elsewhere = await quotas.connectionsElsewhere(principal);
  if (conn.closed) return;
  const old = broker.live.get(clientId);
  const replacing = old && old !== conn && old.principal.id === principal.id && old.address === conn.address ? 1 : 0;
  try {
    quotas.checkConnection(principal, conn.address, elsewhere, replacing);
  } catch (e) {
    if (e instanceof OmnipushError && e.code === 'quota_exceeded') return refuse(conn, RC.quotaExceeded, e.message);
    throw e;
  }
  // counted from here: connections admitted while this one is at work see it
  quotas.reserve(principal, conn.address);
  try {
    await connectAdmitted(conn, p, clientId, assigned, ack, expiry, clean, old);
  } finally {
    quotas.unreserve(principal, conn.address);
  }
}

/** CONNECT once the connection quotas let it in: takeover, claim, session. */
async function connectAdmitted(conn: MqttConnection, p: IConnectPacket, clientId: string, assigned: boolean, ack: IConnackPacket, expiry: number, clean: boolean, old: MqttConnection | undefined): Promise<void> {
  const { broker } = conn;
  // takeover: the older connection goes first, so its session is free (MQTT 5 §3.1.4-3)
  if (old && old !== conn) old.disconnect(RC.sessionTakenOver, 'another connection took over this session');

  // a cluster: a node that holds the session lets go of it (0x8E there, session saved) before we
  // read it. A generated identifier is new everywhere, so only a persistent session needs a claim
  // for it (the claim's holder runs the session's expiry clock).
  broker.connectBegan(clientId);
  let claim: number | 'none' | 'failed' = 'none';
  let attached = false;
  try {
    if (!assigned || expiry > 0) {
      // a claim whose call fails may still have been made
      claim = 'failed';
      claim = await broker.claims.claim(clientId, clean);
    }
    attached = await takeUp(conn, p, clientId, ack, expiry, typeof claim === 'number' ? claim : 0);
  } finally {
    broker.connectEnded(clientId, attached, claim);
  }
}

/**
 * The rest of CONNECT once the session is claimed (`gen`): the session is read, made or ended,
 * written if new, and attached to the connection after CONNACK. True once attached; false when the
 * connection went or was refused first.
 */
async function takeUp(conn: MqttConnection, p: IConnectPacket, clientId: string, ack: IConnackPacket, expiry: number, gen: number): Promise<boolean> {
  const { broker } = conn;
  const cfg = broker.config;
  const v5 = conn.version === 5;
  const props = p.properties ?? {};
  const clean = p.clean !== false;
  if (conn.closed) return false;

  const now = Date.now();
  let session = await broker.sessions.get(clientId, now);
  if (conn.closed) return false;
  if ((broker.live.has(clientId) && broker.live.get(clientId) !== conn) || !broker.claims.current(clientId, gen)) {
    // a third CONNECT for the id (here or on another node) won the race while we awaited
    refuse(conn, RC.sessionTakenOver, 'another connection took over this session');
    return false;
  }
  // another principal's session appeared while this CONNECT awaited (a race with its CONNECT)
  const owner = ownerOf(conn.principal);
  if (session?.owner !== undefined && session.owner !== owner) {
    refuseForeign(conn, clientId, session.owner);
    return false;
  }
  let present = false;
  if (session && clean) {
    broker.endSession(session, true);
    session = undefined;
  } else if (session) {
    // its will waits no longer: the session carries on
    broker.wills.cancel(clientId);
    present = true;
  }
  if (clean) broker.wills.fire(clientId);
  if (!session) {
    session = new MqttSession(clientId, broker.hub.epoch, broker.hub.headSeq, cfg.maxQueuedMessages);
    broker.sessions.add(session);
  }
  session.expiry = expiry;
  session.owner = owner;
  session.dirty = true;
  if (present) recheckGrants(conn, session);
  conn.session = session;

  conn.keepalive = ack.properties?.serverKeepAlive ?? p.keepalive ?? 0;
  if (v5) {
    conn.terms = withTerms(conn.terms, {
      receiveMax: props.receiveMaximum ?? DEFAULT_TERMS.receiveMax,
      aliasMax: props.topicAliasMaximum ?? 0,
      cursor: wantsCursor(props.userProperties as Record<string, string | string[]> | undefined),
    });
  }

  // a new persistent session is in the store before CONNACK says it exists: a crash right after
  // CONNACK must not lose it (a resumed one was there already; its changes are grouped writes)
  if (!present && session.persistent) {
    try {
      await broker.sessions.save(session);
    } catch (e) {
      broker.log.warn({ err: e, client: clientId }, 'mqtt session not saved; CONNECT refused');
      if (!session.port) broker.sessions.forget(session);
      refuse(conn, RC.serverUnavailable, notSaved(e));
      return false;
    }
    if (conn.closed) {
      // never acknowledged (refused at the CONNECT's deadline, or the client went): the session
      // made for it goes again, so a retry is not told of a session it was refused — unless
      // another connection took it up meanwhile
      if (!session.port && broker.sessions.holds(session)) {
        broker.sessions.remove(session).catch((e: unknown) => broker.log.error({ err: e, client: clientId }, 'mqtt session not removed'));
      }
      return false;
    }
    if ((broker.live.has(clientId) && broker.live.get(clientId) !== conn) || !broker.claims.current(clientId, gen)) {
      refuse(conn, RC.sessionTakenOver, 'another connection took over this session');
      return false;
    }
  }
  if (conn.will) {
    broker.wills.arm(clientId, conn.will, Math.min(conn.will.delay, expiry) * 1000);
    conn.willArmed = true;
  }

  ack.sessionPresent = present;
  conn.send(ack);
  conn.state = 'open';
  broker.armExpiry(conn);
  conn.register();
  broker.live.set(clientId, conn);
  broker.owners.announce(clientId, owner);
  broker.stats.connectionsTotal++;
  broker.log.debug({ client: clientId, version: conn.version, principal: conn.principal.id, via: conn.kind, present, expiry }, 'mqtt client connected');
  session.attach(conn);
  if (session.sharedCount > 0) for (const [name, o] of session.shared) broker.shared.join(name, session, o);
  broker.refreshFeed(conn, present);
  return true;
}

/** CONNECT for a client identifier whose session is another principal's: 0x87 (3.1.1: 5), nothing else changes. */
function refuseForeign(conn: MqttConnection, clientId: string, holder: string): void {
  conn.broker.log.warn({ client: clientId, principal: ownerOf(conn.principal), owner: holder, remote: conn.link.remote, via: conn.kind }, 'mqtt CONNECT refused: the session belongs to another principal');
  conn.broker.ctx.metrics.mqttForeignConnects.inc();
  refuse(conn, RC.notAuthorized, 'client identifier in use by another principal');
}

/**
 * Grants may have narrowed since the session was last connected (a new token): what it may no
 * longer receive goes — subscriptions, and PUBLISHes in flight (released, as if delivered, so
 * nothing blocks the window). A PUBREL in flight carries no content and goes on. The client is
 * not told (MQTT has no packet for it); a SUBSCRIBE again is answered 0x87.
 */
function recheckGrants(conn: MqttConnection, session: MqttSession): void {
  const { broker } = conn;
  const p = conn.principal;
  const dropped: string[] = [];
  for (const [f] of session.subs) {
    if (subscribeVerdict(p, f) !== 'deny') continue;
    session.subs.delete(f);
    dropped.push(f);
  }
  for (const [f] of session.shared) {
    if (subscribeVerdict(p, sharedFilter(f)) !== 'deny') continue;
    session.shared.delete(f);
    broker.shared.leave(f, session);
    dropped.push(f);
  }
  let released = 0;
  for (const [pid, f] of session.inflight) {
    if (f.stage === 'publish' && !canReceive(p, f.out.m.topic)) {
      session.inflight.delete(pid);
      released++;
    }
  }
  if (dropped.length || released) broker.log.info({ client: session.clientId, principal: ownerOf(p), subscriptions: dropped, released }, 'mqtt session resumed under narrower grants: denied subscriptions and messages dropped');
}

/** The CONNACK that accepts this CONNECT (sessionPresent is set once the session is read). */
function successConnack(conn: MqttConnection, p: IConnectPacket, clientId: string, assigned: boolean, expiry: number, askedExpiry: number): IConnackPacket {
  const cfg = conn.broker.config;
  const ack: IConnackPacket = { cmd: 'connack', sessionPresent: false };
  if (conn.version !== 5) {
    ack.returnCode = 0;
    return ack;
  }
  ack.reasonCode = RC.success;
  const ap: NonNullable<IConnackPacket['properties']> = {
    receiveMaximum: cfg.receiveMaximum,
    maximumPacketSize: cfg.maxPacketBytes,
    topicAliasMaximum: cfg.topicAliasMaximum,
    wildcardSubscriptionAvailable: true,
    subscriptionIdentifiersAvailable: true,
    sharedSubscriptionAvailable: true,
  };
  if (expiry !== askedExpiry) ap.sessionExpiryInterval = expiry;
  if (assigned) ap.assignedClientIdentifier = clientId;
  // only v5 can be told another keepalive (Server Keep Alive); a 3.1.1 client keeps its own
  const keepalive = p.keepalive ?? 0;
  if (cfg.maxKeepAlive > 0 && (keepalive === 0 || keepalive > cfg.maxKeepAlive)) ap.serverKeepAlive = cfg.maxKeepAlive;
  ack.properties = ap;
  return ack;
}
