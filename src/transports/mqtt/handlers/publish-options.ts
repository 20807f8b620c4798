import { OmnipushError } from '../../../core/errors.js';
import type { PublishRequest } from '../../../core/hub.js';
import type { PublishOptions } from '../../../core/publish-options.js';
import type { MqttConnection } from '../connection.js';
import { MqttProtocolError, publishRefusalCode, RC } from '../reason-codes.js';
import { ackPublish } from './publish-ack.js';
import { receiptFromProperties } from '../../../wire/receipt-request.js';

const DELAYED_PREFIX = '$delayed/';
const DELAYED_RE = /^\$delayed\/(\d{1,10})\/(.+)$/s;
/** MQTT 5 user property carrying an idempotency key (docs/mqtt.md). */
export const IDEMPOTENCY_PROPERTY = 'idempotency-key';

/**
 * The options a PUBLISH carries: EMQX's `$delayed/<seconds>/<topic>` (the request's topic becomes
 * the real one, which grants are checked against), and on MQTT 5 an `idempotency-key` user
 * property and the `receipt-*` ones (taken out of the message's properties). Undefined for an
 * ordinary publish.
 */
export function mqttPublishOptions(req: PublishRequest, now: number): PublishOptions | undefined {
  let opts: PublishOptions | undefined;
  if (req.topic.startsWith(DELAYED_PREFIX)) {
    const m = DELAYED_RE.exec(req.topic);
    if (!m) throw new MqttProtocolError(RC.topicNameInvalid, 'a delayed publish goes to $delayed/<seconds>/<topic>');
    req.topic = m[2];
    opts = { due: now + Number(m[1]) * 1000 };
  }
  const props = req.properties;
  if (props) {
    const i = props.findIndex((pr) => pr[0] === IDEMPOTENCY_PROPERTY);
    if (i >= 0) {
      (opts ??= {}).idempotencyKey = props[i][1];
      req.properties = props.filter((_, j) => j !== i);
      if (req.properties.length === 0) req.properties = undefined;
    }
  }
  if (req.properties) {
    // receipt-within / receipt-fallback / receipt-to (docs/receipts.md)
    const receipt = receiptFromProperties(req.properties);
    if (receipt) {
      (opts ??= {}).receipt = receipt;
      if (req.properties.length === 0) req.properties = undefined;
    }
  }
  return opts;
}


/**
 * A publish with options: scheduled or published idempotently, then acknowledged (QoS 1/2) with
 * success or the refusal's reason code (v5; 3.1.1 cannot say no, so a refusal is logged and acked).
 */
export function publishWithOptions(conn: MqttConnection, req: PublishRequest, opts: PublishOptions, qos: 0 | 1 | 2, pid: number): void {
  const { broker } = conn;
  const pw = broker.ctx.publishWith;
  const s = conn.session!;
  if (qos === 1) conn.inflightIn++;
  if (qos === 2) s.inQos2.add(pid);
  const done = (rc: number, reason?: string) => {
    if (qos === 1) conn.inflightIn--;
    if (qos === 2 && rc !== RC.success) s.inQos2.delete(pid);
    if (qos === 0) return;
    ackPublish(conn, qos, pid, rc, reason);
  };
  if (!pw) return done(RC.implementationSpecific, 'this server takes no delayed or idempotent publishes');
  req.qos = qos;
  pw.publish(conn.principal, req, opts).then(
    () => done(RC.success),
    (e: unknown) => {
      const rc = e instanceof OmnipushError ? publishRefusalCode(e) : RC.unspecified;
      broker.log.info({ client: conn.clientId, principal: conn.principal.id, topic: req.topic, rc, err: (e as Error).message }, 'mqtt publish with options refused');
      broker.stats.dropped++;
      done(rc, e instanceof Error ? e.message : undefined);
    },
  );
}
