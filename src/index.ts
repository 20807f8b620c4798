/**
 * Omnipush as a library: start the server in-process and publish or subscribe through its hub.
 * The browser/Node client SDK is `omnipush/client`.
 */
export { createOmnipush, type Omnipush, type EmbeddedMessage, type EmbeddedPublishOptions, type EmbeddedSubscribeOptions } from './embed.js';
export { startServer, type RunningServer, type StartOptions } from './server.js';
export { parseConfig, type Config, type ConfigInput } from './config/schema.js';
export { loadConfig } from './config/load.js';
export { Hub, type HubSubscriber, type PublishRequest, type SubscribePlan, type GapInfo } from './core/hub.js';
export { ALLOW_ALL, type Principal, type Grants } from './core/grants.js';
export type { StoredMessage, MessageInput } from './core/message.js';
export { OmnipushError, type ErrorCode } from './core/errors.js';
