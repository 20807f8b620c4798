import { isUtf8 } from 'node:buffer';
import { OmnipushError } from '../../../core/errors.js';
import type { PublishRequest, PublishWaiter } from '../../../core/hub.js';
import type { AppendInput } from '../../../core/store.js';
import { validateTopic } from '../../../core/topic.js';
import type { MqttConnection } from '../connection.js';
import type { InboundPublish } from '../packet-check.js';
import { MqttProtocolError, publishRefusalCode, RC } from '../reason-codes.js';
import { InboundAliases } from '../topic-aliases.js';
import { ackPublish } from './publish-ack.js';
import { mqttPublishOptions, publishWithOptions } from './publish-options.js';

/**
 * PUBLISH from a client (MQTT 5 §3.3): aliases, checks and grants as every door has them, then
 * into the hub. QoS 1/2 are acknowledged once the message is durable; a QoS 2 packet id seen again
 * before PUBREL is acknowledged without publishing twice.
 */
export function handlePublish(conn: MqttConnection, p: InboundPublish): Promise<void> | void {
  const { broker } = conn;
  const s = conn.session!;
  const qos = p.qos;
  const pid = p.messageId ?? 0;
  broker.stats.messagesIn++;
  const alias = p.properties?.topicAlias;
  let topic: string;
  if (alias === undefined) topic = InboundAliases.named(p.topic, conn.version);
  else {
    conn.inAliases ??= new InboundAliases(broker.config.topicAliasMaximum);
    topic = conn.inAliases.resolve(p.topic, alias);
  }
  if (qos === 2 && s.inQos2.has(pid)) {
    ackPublish(conn, 2, pid, RC.success);
    return;
  }
  if (qos > 0 && conn.inflightIn + s.inQos2.size >= broker.config.receiveMaximum) {
    throw new MqttProtocolError(RC.receiveMaximumExceeded, `more than ${broker.config.receiveMaximum} QoS 1/2 publishes unacknowledged`);
  }
  const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload);
  const props = p.properties ?? {};
  const req: PublishRequest = { topic, payload, retain: p.retain, qos };
  if (props.contentType !== undefined) req.contentType = props.contentType;
  if (p.users?.length) req.properties = p.users;
  if (props.messageExpiryInterval) req.ttl = props.messageExpiryInterval;
  // `$` (36) first: an ordinary publish pays one comparison for $delayed, and nothing more unless
  // it carries user properties (one may be the idempotency key)
  if (topic.charCodeAt(0) === 36 || req.properties) {
    const opts = mqttPublishOptions(req, Date.now());
    if (opts) return publishWithOptions(conn, req, opts, qos, pid);
  }
  // only a topic a publish hook covers waits for the app (the connection holds later packets meanwhile)
  const hooks = broker.ctx.ruleHooks;
  if (hooks !== undefined && hooks.publishRule(topic) !== undefined) {
    return hooks.publish(conn.principal, req, 'mqtt').then(
      (r) => {
        if (!conn.closed) publishChecked(conn, r, props, qos, pid);
      },
      (e: unknown) => {
        if (conn.closed) return;
        if (!(e instanceof OmnipushError)) throw e;
        broker.log.info({ client: conn.clientId, principal: conn.principal.id, topic, err: e.message }, 'mqtt publish refused by a publish hook');
        broker.stats.dropped++;
        const rc = e.code === 'forbidden' ? RC.notAuthorized : RC.unspecified;
        if (qos > 0) ackPublish(conn, qos as 1 | 2, pid, rc, e.message);
      },
    );
  }
  publishChecked(conn, req, props, qos, pid);
}

/** PUBLISH once aliases, options and hooks are done: grants, rates, then into the hub. */
function publishChecked(conn: MqttConnection, req: PublishRequest, props: NonNullable<InboundPublish['properties']>, qos: 0 | 1 | 2, pid: number): void {
  const { broker } = conn;
  const s = conn.session!;
  const { topic, payload } = req;
  let input: AppendInput;
  try {
    if (props.payloadFormatIndicator && !isUtf8(payload)) throw new MqttProtocolError(RC.payloadFormatInvalid, 'payload is not UTF-8 as its format indicator says');
    if (props.responseTopic !== undefined) validateTopic(props.responseTopic, broker.hub.limits);
    input = broker.hub.checkPublish(conn.principal, req);
  } catch (e) {
    if (e instanceof OmnipushError && e.code === 'invalid_topic' && e.message.includes('wildcard')) {
      throw new MqttProtocolError(RC.topicNameInvalid, e.message);
    }
    const rc = e instanceof MqttProtocolError ? e.reasonCode : e instanceof OmnipushError ? publishRefusalCode(e) : RC.implementationSpecific;
    if (!(e instanceof OmnipushError) && !(e instanceof MqttProtocolError)) throw e;
    broker.log.info({ client: conn.clientId, principal: conn.principal.id, topic, rc, err: e.message }, 'mqtt publish refused');
    broker.stats.dropped++;
    // 3.1.1 has no way to say no: the publish is acknowledged and dropped
    if (qos > 0) ackPublish(conn, qos as 1 | 2, pid, rc);
    return;
  }
  const { quotas } = broker.ctx;
  if (quotas.ratesOn) {
    const refusal = quotas.checkPublish(conn.principal, conn.address, 1, payload.length);
    if (refusal) return overRate(conn, qos, pid, refusal);
  }
  if (props.payloadFormatIndicator !== undefined) input.payloadFormat = props.payloadFormatIndicator ? 1 : 0;
  if (props.responseTopic !== undefined) input.responseTopic = props.responseTopic;
  if (props.correlationData !== undefined) input.correlationData = props.correlationData;
  input.origin = conn.clientId;
  const m = broker.ctx.metrics;
  m.publishCounts.mqtt++;
  m.publishBytes.mqtt += payload.length;
  if (qos === 0) {
    broker.hub.submit(input, new StoredQos0(conn));
    return;
  }
  if (qos === 2) {
    s.inQos2.add(pid);
    s.dirty = s.persistent;
  }
  // a QoS 2 id counts from PUBLISH to PUBREL (in inQos2), a QoS 1 one until its PUBACK
  if (qos === 1) conn.inflightIn++;
  broker.hub.submit(input, new AckWhenStored(conn, qos as 1 | 2, pid));
}

/**
 * A publish over a `quotas.publish` rate. v5 QoS 1/2: PUBACK/PUBREC 0x97 Quota exceeded (0x96
 * Message rate too high is not among the codes those packets may carry, MQTT 5 §3.4.2.1), and
 * the reason string names the rate; v5 QoS 0, which has no answer: DISCONNECT 0x96. 3.1.1 has no
 * way to refuse a publish: the connection is closed, and an unacknowledged QoS 1/2 publish comes
 * again once the client reconnects.
 */
function overRate(conn: MqttConnection, qos: number, pid: number, e: OmnipushError): void {
  conn.broker.stats.dropped++;
  if (conn.version === 5 && qos > 0) {
    ackPublish(conn, qos as 1 | 2, pid, RC.quotaExceeded, e.message);
    return;
  }
  conn.disconnect(RC.messageRateTooHigh, e.message);
}

/** A QoS 1/2 publish is acknowledged once the hub has stored it. */
class AckWhenStored implements PublishWaiter {
  constructor(
    private readonly conn: MqttConnection,
    private readonly qos: 1 | 2,
    private readonly pid: number,
  ) {}

  stored(): void {
    if (this.qos === 1) this.conn.inflightIn--;
    ackPublish(this.conn, this.qos, this.pid, RC.success);
  }

  failed(e: unknown): void {
    const { conn, qos, pid } = this;
    if (qos === 1) conn.inflightIn--;
    else conn.session?.inQos2.delete(pid);
    if (isLimit(e)) return refusedLater(conn, e, qos, pid);
    if (conn.version !== 5) return notStored(conn, e);
    conn.broker.log.warn({ err: e, client: conn.clientId }, 'mqtt publish not stored');
    // 0x80 (Unspecified error) is the closest code PUBACK/PUBREC allow for "the store is down";
    // the reason string says what happened and that a retry may succeed
    conn.send({ cmd: qos === 1 ? 'puback' : 'pubrec', messageId: pid, reasonCode: RC.unspecified, properties: { reasonString: reasonOf(e) } });
  }
}

/** A QoS 0 publish has no acknowledgement: only a failure to store it has consequences. */
class StoredQos0 implements PublishWaiter {
  constructor(private readonly conn: MqttConnection) {}

  stored(): void {}

  failed(e: unknown): void {
    if (isLimit(e)) return refusedLater(this.conn, e, 0, 0);
    notStored(this.conn, e);
  }
}

/** A limit the hub applies once the publish is queued (the retained-topics quota, rates). */
function isLimit(e: unknown): e is OmnipushError {
  return e instanceof OmnipushError && (e.code === 'quota_exceeded' || e.code === 'rate_limited');
}

/**
 * A publish refused by a limit after it was queued, told as a refusal at check time is: v5 gets
 * PUBACK/PUBREC with 0x97, and for QoS 0 (no acknowledgement to carry it) DISCONNECT with 0x97
 * (0x96 for a rate); 3.1.1 has no way to say no, so the publish is acknowledged and dropped, as there.
 */
function refusedLater(conn: MqttConnection, e: OmnipushError, qos: 0 | 1 | 2, pid: number): void {
  conn.broker.log.info({ client: conn.clientId, principal: conn.principal.id, err: e.message }, 'mqtt publish refused');
  conn.broker.stats.dropped++;
  const rc = publishRefusalCode(e);
  if (qos === 0) {
    if (conn.version === 5) conn.disconnect(e.code === 'rate_limited' ? RC.messageRateTooHigh : RC.quotaExceeded, reasonOf(e));
    return;
  }
  ackPublish(conn, qos, pid, rc, reasonOf(e));
}

function reasonOf(e: unknown): string {
  return (e instanceof OmnipushError ? `${e.code}: ${e.message}` : 'message not stored').slice(0, 200);
}

/**
 * A publish the hub could not store (Redis down, shutting down) with no acknowledgement that can
 * say so — QoS 0, or any QoS on 3.1.1. Acknowledging would lose it silently, so the connection is
 * closed instead (v5: DISCONNECT 0x89 Server busy): the client knows, and an unacknowledged QoS 1/2
 * publish is sent again after it reconnects.
 */
function notStored(conn: MqttConnection, e: unknown): void {
  conn.broker.log.warn({ err: e, client: conn.clientId }, 'mqtt publish not stored; closing the connection');
  conn.disconnect(RC.serverBusy, reasonOf(e));
}
