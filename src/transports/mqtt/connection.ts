import type { Packet } from 'mqtt-packet';
import { DENY_ALL, type Principal } from '../../core/grants.js';
import type { Broker } from './broker.js';
import { decode, dropOptional, encode, successAck } from './codec.js';
import type { SessionFeed } from './feed.js';
import { framePackets, type PacketSink } from './framer.js';
import { DEFAULT_TERMS, type ClientTerms } from './client-terms.js';
import { handleAck, handlePubrel } from './handlers/acks.js';
import { OmnipushError } from '../../core/errors.js';
import { handleConnect, refuse } from './handlers/connect.js';
import { handleDisconnect } from './handlers/disconnect.js';
import { handlePublish } from './handlers/publish.js';
import { handleSubscribe } from './handlers/subscribe.js';
import { handleUnsubscribe } from './handlers/unsubscribe.js';
import type { Link } from './link.js';
import { InboundAliases, OutboundAliases } from './topic-aliases.js';
import { checkPacket } from './packet-check.js';
import { encodePublish, SHARED_FORMATS, withPacketId } from './publish-encoder.js';
import { MqttProtocolError, RC } from './reason-codes.js';
import type { MqttSession, OutMsg, SessionPort } from './session.js';
import type { WillSpec } from './will.js';
import type { Deadline } from '../deadline.js';
import type { PreAuthPlace } from '../pre-auth-pool.js';
import { MqttRegistration, ticksAt } from './registration.js';
import type { MqttPresenceWatch } from './presence-topics.js';
import { clientAddress } from '../../core/connections.js';

const PINGRESP = [0xd0, 0x00];

const UNAUTHENTICATED: Principal = { id: 'unauthenticated', kind: 'anonymous', grants: DENY_ALL };

/**
 * One MQTT network connection: frames and checks what arrives, hands each packet to its handler,
 * and writes packets out through the link's per-tick batch. The session it serves may outlive it.
 */
export class MqttConnection extends MqttRegistration implements SessionPort, PacketSink {
  /** new: waiting for CONNECT; connecting: CONNECT being handled; open: CONNACK sent. */
  state: 'new' | 'connecting' | 'open' | 'closed' = 'new';
  version = 4;
  principal: Principal = UNAUTHENTICATED;
  session: MqttSession | null = null;
  feed: SessionFeed | null = null;
  clientId = '';
  /** seconds; 0 = none */
  keepalive = 0;
  /** When a packet last came ({@link ticksAt}). */
  seenAt = ticksAt(Date.now());
  /** What it said at CONNECT that bounds what we send it (shared defaults unless it asked otherwise). */
  terms: ClientTerms = DEFAULT_TERMS;
  private outAliases: OutboundAliases | null = null;
  inAliases: InboundAliases | null = null;
  /** Inbound QoS 1/2 publishes not yet acknowledged (our Receive Maximum). */
  inflightIn = 0;
  will: WillSpec | undefined;
  /** The will was recorded in the cluster's map at CONNECT (a clean DISCONNECT removes it there). */
  willArmed = false;
  /** The client's IP address, as quotas count it. */
  readonly address: string;
  /** Its `$presence/...` subscriptions (made at the first one). */
  presenceWatch: MqttPresenceWatch | null = null;
  /** Holds a slot of the shared connection budget (once authenticated). */
  budgeted = false;
  /** Its place in the pre-auth pool until its CONNECT is authenticated. */
  place: PreAuthPlace | null = null;
  /** The answer deadline of its CONNECT, then the credential expiry of the open connection. */
  expiry: Deadline | undefined;
  /** Taken over or closed by us: its socket's close is no longer the session's business. */
  superseded = false;
  /** Why it ended, for the registry's observers (webhooks' `disconnect` event). */
  closeReason: string | undefined;
  /** Its neighbours in the broker's list of connections. */
  prevConn: MqttConnection | null = null;
  nextConn: MqttConnection | null = null;
  /** A packet split across reads, while the rest has not come. */
  partial: Buffer | null = null;
  /**
   * Packets that arrived while a handler was still at work (CONNECT, a session write): they wait,
   * in order. Non-null while a handler is at work; the link is not read meanwhile.
   */
  private held: Buffer[] | null = null;
  /** Bytes of the packets in {@link held}. */
  private heldBytes = 0;

  constructor(
    readonly broker: Broker,
    readonly link: Link,
    readonly kind: 'tcp' | 'tls' | 'ws',
  ) {
    super();
    this.address = broker.strings.get(clientAddress(link.address));
  }

  /** A getter, so the check reads the state after an await (narrowing would not). */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /**
   * A handler is at work and the link is not read (backpressure): the client's keepalive cannot be
   * heard meanwhile, so it is not checked.
   */
  get holding(): boolean {
    return this.held !== null;
  }

  get window(): number {
    return Math.min(this.terms.receiveMax, this.broker.config.maxInflight);
  }

  onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.broker.stats.bytesIn += chunk.length;
    try {
      framePackets(this, chunk, this.broker.config.maxPacketBytes);
    } catch (e) {
      this.fail(e);
    }
  }

  /** One whole packet from the framer. */
  onPacket(raw: Buffer): void {
    if (this.state === 'closed') return;
    this.seenAt = ticksAt(Date.now());
    if (this.state === 'new') {
      if (raw[0] >> 4 !== 1) throw new MqttProtocolError(RC.protocolError, 'the first packet must be CONNECT');
      this.state = 'connecting';
      // the whole CONNECT is here: its answer is due within the broker's answer time
      this.broker.armAnswerDeadline(this, Date.now());
      this.hold(handleConnect(this, Buffer.from(raw)), (e: unknown) => {
        // the session store (Redis) is unreachable: say so in CONNACK (3.1.1: return code 3) so the
        // client retries later, rather than closing without an answer
        if (this.state === 'connecting' && e instanceof OmnipushError && e.code === 'unavailable') refuse(this, RC.serverUnavailable, e.message);
        else this.fail(e);
      });
      return;
    }
    if (this.held) {
      // reading stopped when the handler started; this came with data already read
      this.heldBytes += raw.length;
      const max = this.broker.maxHeldBytes;
      if (this.heldBytes > max) {
        const why = `more than ${max} bytes sent while an earlier packet was still being handled`;
        // before CONNACK no DISCONNECT may be sent: a v5 client is refused with CONNACK 0x97, a 3.1.1 one is closed
        if (this.state === 'connecting' && this.version === 5) {
          this.dropHeld();
          refuse(this, RC.quotaExceeded, why);
          return;
        }
        throw new MqttProtocolError(RC.quotaExceeded, why);
      }
      this.held.push(Buffer.from(raw));
      return;
    }
    const pending = this.dispatch(raw);
    if (pending) this.hold(pending);
  }

  /**
   * A handler answers later: the link is not read until it is done (the client's further packets
   * wait in its socket, held back by TCP flow control), and the packets that came with data
   * already read wait here, in order.
   */
  private hold(pending: Promise<void>, failed: (e: unknown) => void = (e) => this.fail(e)): void {
    if (!this.held) {
      this.held = [];
      this.link.pause();
    }
    pending.then(
      () => this.release(),
      (e: unknown) => {
        this.dropHeld();
        failed(e);
      },
    );
  }

  /**
   * The handler is done: handles what queued behind it, up to the next handler that answers later;
   * once nothing is held, reads the link again.
   */
  private release(): void {
    const held = this.held ?? [];
    try {
      while (held.length > 0 && this.state === 'open') {
        const raw = held.shift()!;
        this.heldBytes -= raw.length;
        const pending = this.dispatch(raw);
        if (pending) {
          this.hold(pending);
          return;
        }
      }
    } catch (e) {
      this.fail(e);
    }
    this.dropHeld();
    if (this.state === 'open') {
      // the client's keepalive could not be heard while the link was not read: it counts from now
      this.seenAt = ticksAt(Date.now());
      this.link.resume();
    }
  }

  private dropHeld(): void {
    this.held = null;
    this.heldBytes = 0;
  }

  private dispatch(raw: Buffer): Promise<void> | void {
    const p = checkPacket(raw, this.version) ?? decode(raw, this.version);
    switch (p.cmd) {
      case 'publish':
        return handlePublish(this, p);
      case 'puback':
      case 'pubrec':
      case 'pubcomp':
        return handleAck(this, p);
      case 'pubrel':
        return handlePubrel(this, p);
      case 'subscribe':
        return handleSubscribe(this, p);
      case 'unsubscribe':
        return handleUnsubscribe(this, p);
      case 'pingreq':
        this.sendBytes(Buffer.from(PINGRESP));
        return;
      case 'disconnect':
        return handleDisconnect(this, p);
      case 'auth':
        // no enhanced authentication was agreed at CONNECT (we offer none), so AUTH is out of place
        throw new MqttProtocolError(RC.protocolError, 'AUTH without an authentication method');
      default:
        throw new MqttProtocolError(RC.protocolError, `unexpected ${p.cmd}`);
    }
  }

  /** Ends the connection for an error: a reason code for protocol errors, a log line for bugs. */
  fail(e: unknown): void {
    if (this.state === 'closed') return;
    if (e instanceof MqttProtocolError) {
      this.broker.log.debug({ client: this.clientId, address: this.address, remote: this.link.remote, rc: e.reasonCode, err: e.message }, 'mqtt protocol error');
      this.disconnect(e.reasonCode, e.message);
    } else {
      this.broker.log.error({ err: e, client: this.clientId }, 'mqtt connection failed');
      this.disconnect(RC.implementationSpecific, 'internal error');
    }
  }

  /**
   * Writes a packet other than a PUBLISH. A client that set Request Problem Information to 0 gets
   * no reason string outside CONNACK and DISCONNECT (MQTT-3.1.2-29); one over the client's Maximum
   * Packet Size goes without them, and if it still does not fit it is not sent and the connection
   * is closed, as no packet may exceed it (MQTT-3.1.2-24).
   */
  send(packet: Packet): void {
    if (this.state === 'closed') return;
    if (!this.terms.problemInfo && packet.cmd !== 'connack' && packet.cmd !== 'disconnect') dropOptional(packet);
    let buf = encode(packet, this.version);
    if (buf.length > this.terms.maxPacket) {
      if (dropOptional(packet)) buf = encode(packet, this.version);
      if (buf.length > this.terms.maxPacket) {
        this.broker.log.info({ client: this.clientId, cmd: packet.cmd, size: buf.length, max: this.terms.maxPacket }, 'mqtt packet over the client\'s Maximum Packet Size; connection closed');
        this.state = 'closed';
        this.dropHeld();
        this.broker.connectionClosed(this);
        this.link.end();
        return;
      }
    }
    this.broker.stats.bytesOut += buf.length;
    this.link.write(buf);
  }

  /** Writes an already encoded packet. */
  sendBytes(buf: Buffer): void {
    if (this.state === 'closed') return;
    this.broker.stats.bytesOut += buf.length;
    this.link.write(buf);
  }

  sendPublish(out: OutMsg, packetId: number, dup: boolean): boolean {
    if (this.state !== 'open') return false;
    const v5 = this.version === 5;
    let buf: Buffer | null;
    let alias: { alias: number; fresh: boolean } | undefined;
    if (v5 && (out.ids || this.terms.aliasMax > 0)) {
      this.outAliases ??= new OutboundAliases(this.terms.aliasMax);
      alias = this.outAliases.lookup(out.m.topic);
      buf = encodePublish(out.m, { version: 5, qos: out.qos, retain: out.retain, dup, packetId, subscriptionIds: out.ids, topicAlias: alias?.alias, aliasOnly: alias?.fresh === false, cursor: this.terms.cursor, now: Date.now() });
    } else if (out.d) {
      const tpl = out.d.encoded(SHARED_FORMATS[v5 ? (this.terms.cursor ? 'v5c' : 'v5') : 'v4'][out.qos][out.retain ? 1 : 0]);
      buf = tpl && out.qos > 0 ? withPacketId(tpl, packetId, dup) : tpl;
    } else {
      buf = encodePublish(out.m, { version: this.version, qos: out.qos, retain: out.retain, dup, packetId, cursor: this.terms.cursor, now: Date.now() });
    }
    if (buf && buf.length > this.terms.maxPacket) buf = this.fitPublish(out, packetId, dup, alias);
    // expired on the way, or too big for the client: not sent, and as if delivered (MQTT-3.1.2-25)
    if (!buf) return false;
    if (alias?.fresh) this.outAliases!.confirm(out.m.topic, alias.alias);
    this.broker.stats.bytesOut += buf.length;
    this.broker.stats.messagesOut++;
    this.broker.countDelivery();
    this.link.write(buf, out.d?.alone === true);
    return true;
  }

  /**
   * A PUBLISH over the client's Maximum Packet Size: our own cursor property is left out first
   * (MQTT 5 §3.1.2.11.4 lets the server drop what it added); when the publisher's content alone
   * does not fit, the message is dropped for this client and counted.
   */
  private fitPublish(out: OutMsg, packetId: number, dup: boolean, alias: { alias: number; fresh: boolean } | undefined): Buffer | null {
    if (this.terms.cursor) {
      const buf = encodePublish(out.m, { version: this.version, qos: out.qos, retain: out.retain, dup, packetId, subscriptionIds: out.ids, topicAlias: alias?.alias, aliasOnly: alias?.fresh === false, now: Date.now() });
      if (buf && buf.length <= this.terms.maxPacket) return buf;
      if (!buf) return null;
    }
    this.broker.stats.dropped++;
    this.broker.ctx.metrics.mqttDroppedOversize.inc();
    this.broker.log.debug({ client: this.clientId, topic: out.m.topic, max: this.terms.maxPacket }, 'mqtt message over the client\'s Maximum Packet Size; not sent');
    return null;
  }

  sendPubrel(packetId: number): void {
    this.sendBytes(successAck('pubrel', packetId));
  }

  /** The hub ended the session's subscription (its SessionFeed). */
  feedClosed(reason: OmnipushError): void {
    this.broker.feedClosed(this, reason);
  }

  queueOverflow(): void {
    this.broker.ctx.metrics.slowConsumerCloses.inc({ transport: 'mqtt' });
    this.disconnect(RC.quotaExceeded, 'too many messages queued for this session; reconnect to resume');
  }

  /** Ends the connection, telling a v5 client why (after CONNACK; before it, CONNACK carries the code). */
  disconnect(rc: number, reason?: string): void {
    if (this.state === 'closed') return;
    this.closeReason ??= `server disconnected 0x${rc.toString(16).padStart(2, '0')}${reason ? `: ${reason}` : ''}`;
    if (this.version === 5 && this.state === 'open') {
      const packet: Packet = { cmd: 'disconnect', reasonCode: rc };
      if (reason) packet.properties = { reasonString: reason.slice(0, 200) };
      this.send(packet);
    }
    this.state = 'closed';
    this.dropHeld();
    this.broker.connectionClosed(this);
    this.link.end();
  }

  /** The link went away (the peer closed, or after our own close). */
  onClosed(): void {
    this.dropHeld();
    if (this.state !== 'closed') {
      this.closeReason ??= 'connection lost';
      this.state = 'closed';
      this.broker.connectionClosed(this);
    }
  }
}
