/** The transports the client knows, in the order it prefers them. */
export const TRANSPORT_NAMES = ['websocket', 'sse', 'longpoll'] as const;

/** A transport the client can use. */
export type TransportName = (typeof TRANSPORT_NAMES)[number];

/** A message as the app receives it. */
export interface Message {
  topic: string;
  /** Opaque, totally ordered position; pass it as `since` to resume. */
  cursor: string;
  /** The payload as text, when it is UTF-8. */
  data?: string;
  /** The payload as bytes, when it is not UTF-8. */
  bytes?: Uint8Array;
  event?: string;
  contentType?: string;
  properties?: Array<[string, string]>;
  retain?: boolean;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ClientOptions {
  /** Bearer token (JWT) for every request. */
  token?: string;
  /**
   * A stable id of this client (a device, a tab kept in sessionStorage): presence counts a
   * reconnect with it as the same member, so others see no leave and join (`client=` on the wire).
   */
  clientId?: string;
  /** Transports to try, in order (default websocket, sse, longpoll). Give one to force it. */
  transports?: TransportName[];
  /** Implementations for environments without globals (defaults: globalThis). */
  fetch?: typeof fetch;
  /** A WebSocket class: the browser's, or the `ws` package's `WebSocket` as it is. */
  WebSocket?: new (url: string) => WebSocketLike;
  /** An EventSource class: the browser's, or the `eventsource` package's `EventSource` as it is. */
  EventSource?: new (url: string) => EventSourceLike;
  /** Reconnect backoff in ms: exponential between min and max, with full jitter. */
  backoff?: { min: number; max: number };
  /** How long a transport may take to open before the next one is tried (ms). */
  openTimeout?: number;
  /** Leave out of every subscription the messages this client publishes itself, on every transport. */
  noEcho?: boolean;
  /**
   * Acknowledge messages that ask for a receipt as they are handed to the app (default true), in
   * batches sent at most every `ackDelay` ms (default 50).
   */
  ackReceipts?: boolean;
  ackDelay?: number;
}

/*
 * Handlers are typed `(ev: never) => void` so that any implementation's own event types fit: the
 * client only sets them, and reads the few event fields it needs through narrow types of its own.
 */

/** The part of a WebSocket the client uses. */
export interface WebSocketLike {
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  send(data: string): void;
  close(): void;
}

/** The part of EventSource the client uses. */
export interface EventSourceLike {
  onopen: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  addEventListener(type: 'message' | 'gap' | 'join' | 'leave', listener: (ev: { data: string }) => void): void;
  close(): void;
  readonly readyState: number;
}

export interface PublishOptions {
  /** Ask the recipient's clients to acknowledge it within `within` ("30s"), else `fallback` (default webpush). */
  receipt?: { within: string | number; fallback?: 'webpush' | 'none' };
  /** The principal the message is for, when no `receipts.rules` filter names it from the topic. */
  to?: string;
  event?: string;
  retain?: boolean;
  ttl?: number;
  contentType?: string;
  properties?: Record<string, string> | Array<[string, string]>;
  /** A connection id (another client's `connectionId`) that must not receive this message. */
  exclude?: string;
}

/** The wire JSON of a message (docs/http-api.md). */
export interface WireMessage {
  topic: string;
  cursor: string;
  data?: string;
  data_base64?: string;
  event?: string;
  contentType?: string;
  properties?: Array<[string, string]>;
  retain?: boolean;
}
