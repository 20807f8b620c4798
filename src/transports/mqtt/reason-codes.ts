import type { OmnipushError } from '../../core/errors.js';

/** MQTT 5 reason codes the broker sends (spec §2.4), by name. */
export const RC = {
  success: 0x00,
  grantedQos1: 0x01,
  grantedQos2: 0x02,
  disconnectWithWill: 0x04,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdNotValid: 0x85,
  badUsernameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  serverShuttingDown: 0x8b,
  badAuthMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdInUse: 0x91,
  packetIdNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
  payloadFormatInvalid: 0x99,
  qosNotSupported: 0x9b,
  sharedSubscriptionsNotSupported: 0x9e,
  subscriptionIdsNotSupported: 0xa1,
  wildcardSubscriptionsNotSupported: 0xa2,
} as const;

/** CONNACK return codes of MQTT 3.1 / 3.1.1 (§3.2.2.3). */
export const RC3 = {
  accepted: 0,
  unacceptableProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** The 3.1.1 CONNACK code closest to a v5 reason code. */
export function connackCode3(rc: number): number {
  switch (rc) {
    case RC.success:
      return RC3.accepted;
    case RC.unsupportedProtocolVersion:
      return RC3.unacceptableProtocol;
    case RC.clientIdNotValid:
      return RC3.identifierRejected;
    case RC.badUsernameOrPassword:
    case RC.badAuthMethod:
      return RC3.badUsernameOrPassword;
    case RC.notAuthorized:
      return RC3.notAuthorized;
    default:
      return RC3.serverUnavailable;
  }
}

/** An error that ends the connection with a reason code (DISCONNECT in v5, a plain close before). */
export class MqttProtocolError extends Error {
  constructor(
    readonly reasonCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'MqttProtocolError';
  }
}

/** Reason code of a refused publish, per the hub's error code. */
export function publishRefusalCode(e: OmnipushError): number {
  switch (e.code) {
    case 'forbidden':
      return RC.notAuthorized;
    case 'payload_too_large':
      return RC.packetTooLarge;
    case 'invalid_topic':
      return RC.topicNameInvalid;
    // PUBACK/PUBREC cannot carry 0x96 (Message rate too high, DISCONNECT only): 0x97 is the closest
    case 'quota_exceeded':
    case 'rate_limited':
      return RC.quotaExceeded;
    default:
      return RC.implementationSpecific;
  }
}

/** The DISCONNECT reason code (MQTT 5 §3.14.2.1) that says why the server ends a connection for `reason`. */
export function disconnectCodeFor(reason: OmnipushError): number {
  switch (reason.code) {
    case 'unauthorized':
    case 'forbidden':
      return RC.notAuthorized;
    case 'quota_exceeded':
    case 'slow_consumer':
      return RC.quotaExceeded;
    case 'rate_limited':
      return RC.messageRateTooHigh;
    case 'shutting_down':
      return RC.serverShuttingDown;
    case 'unavailable':
    case 'too_many_connections':
      return RC.serverBusy;
    default:
      return RC.administrativeAction;
  }
}
