import { isUtf8 } from 'node:buffer';
import type { IConnectPacket } from 'mqtt-packet';
import type { Properties } from '../../../core/message.js';
import { validateTopic } from '../../../core/topic.js';
import type { MqttConnection } from '../connection.js';
import { MqttProtocolError, RC } from '../reason-codes.js';
import type { WillSpec } from '../will.js';

/** The will of CONNECT, checked now (topic, payload format); grants are checked when it is published. */
export function willOf(conn: MqttConnection, w: NonNullable<IConnectPacket['will']>, users: Properties | undefined): WillSpec {
  const hub = conn.broker.hub;
  let topic: string;
  try {
    topic = validateTopic(w.topic, hub.limits);
  } catch (e) {
    throw new MqttProtocolError(RC.topicNameInvalid, (e as Error).message);
  }
  const payload = Buffer.isBuffer(w.payload) ? w.payload : Buffer.from(w.payload);
  const wp = w.properties ?? {};
  if (wp.payloadFormatIndicator && !isUtf8(payload)) throw new MqttProtocolError(RC.payloadFormatInvalid, 'will payload is not UTF-8');
  const spec: WillSpec = {
    principal: conn.principal,
    request: { topic, payload, retain: w.retain === true, qos: w.qos ?? 0 },
    extras: { origin: conn.clientId },
    delay: wp.willDelayInterval ?? 0,
  };
  if (wp.contentType !== undefined) spec.request.contentType = wp.contentType;
  if (users?.length) spec.request.properties = users;
  if (wp.messageExpiryInterval) spec.request.ttl = wp.messageExpiryInterval;
  if (wp.payloadFormatIndicator !== undefined) spec.extras.payloadFormat = wp.payloadFormatIndicator ? 1 : 0;
  if (wp.responseTopic !== undefined) spec.extras.responseTopic = wp.responseTopic;
  if (wp.correlationData !== undefined) spec.extras.correlationData = wp.correlationData;
  return spec;
}
