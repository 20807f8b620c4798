import { AckBatcher, asksForReceipt } from './acks.js';
import { LongPollChannel, publishOverHttp, SseChannel, WebSocketChannel, type Channel, type ChannelEvents, type ChannelOptions, type Endpoints } from './channels.js';
import { errorFromResponse, OmnipushClientError } from './errors.js';
import { ClientSubscription, type SubscribeOptions } from './subscription.js';
import { httpPresenceReader, type PresenceReader } from './presence.js';
import { TRANSPORT_NAMES, type ClientOptions, type ConnectionState, type Message, type PublishOptions, type TransportName } from './types.js';
import { disableWebPush, enableWebPush, type WebPushOptions, type WebPushRegistration } from './webpush.js';

export type { ClientOptions, ConnectionState, Message, PublishOptions, TransportName, WebSocketLike, EventSourceLike } from './types.js';
export { OmnipushClientError } from './errors.js';
export { topicMatches, type SubscribeOptions, type ClientSubscription } from './subscription.js';
export type { PresenceMember, PresenceStats } from './presence.js';
export { enableWebPush, disableWebPush, type WebPushOptions, type WebPushRegistration, type PushSubscriptionJson } from './webpush.js';

type Listener<T> = (v: T) => void;

interface Discovery {
  transports?: Record<string, { url?: string }>;
  endpoints?: { publish?: string; ack?: string; presence?: string };
}

/**
 * A connection to an Omnipush server that picks the best transport the network allows
 * (WebSocket, then SSE, then long-poll), reconnects with backoff, resumes every subscription
 * from its last cursor, and drops duplicates.
 */
export class OmnipushClient {
  private readonly subs = new Set<ClientSubscription>();
  private channel: Channel | undefined;
  private stateValue: ConnectionState = 'connecting';
  private readonly listeners = {
    state: new Set<Listener<{ state: ConnectionState; transport?: TransportName }>>(),
    gap: new Set<Listener<{ filter: string; info: unknown }>>(),
    error: new Set<Listener<OmnipushClientError>>(),
  };
  private failures = 0;
  /** Why the client closed itself, when the server refused it for good. */
  private refusal: OmnipushClientError | undefined;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private generation = 0;
  /** The server URL given to connect(), for the Web Push functions. */
  private base = '';
  private readonly acks: AckBatcher;

  private readonly opts: ChannelOptions;

  private constructor(
    private readonly endpoints: Endpoints,
    opts: ClientOptions,
  ) {
    // a stable id of its own unless the app gave one: presence sees a reconnect as the same member,
    // and a backend can name this client in `exclude`
    this.opts = { ...opts, clientId: opts.clientId ?? newClientId() };
    this.acks = new AckBatcher(
      endpoints.ack,
      this.opts,
      () => ({ door: this.channel?.name, viaChannel: this.channel?.ack?.bind(this.channel) }),
      opts.ackDelay ?? 50,
    );
  }

  /**
   * This client's connection id (its stable `clientId`), the same on every transport and across
   * reconnects: a backend that relays this user's action passes it as `exclude` so that the action
   * is not echoed back here.
   */
  get connectionId(): string {
    return this.opts.clientId;
  }

  /** Reads the server's discovery document and opens the first transport that works. */
  static async connect(url: string, opts: ClientOptions = {}): Promise<OmnipushClient> {
    for (const t of opts.transports ?? []) {
      if (!(TRANSPORT_NAMES as readonly string[]).includes(t)) throw new TypeError(`unknown transport "${String(t)}"; use ${TRANSPORT_NAMES.join(', ')}`);
    }
    if (opts.transports?.length === 0) throw new TypeError(`transports is empty; give at least one of ${TRANSPORT_NAMES.join(', ')}`);
    const f = opts.fetch ?? globalThis.fetch;
    const base = url.replace(/\/+$/, '');
    let r: Response;
    try {
      r = await f(`${base}/.well-known/omnipush`);
    } catch (e) {
      throw new OmnipushClientError(`cannot reach ${base}: ${(e as Error).message}`, { code: 'unreachable' });
    }
    if (r.status !== 200) {
      const err = await errorFromResponse(r);
      throw new OmnipushClientError(`discovery failed: ${err.message}`, { code: err.code, status: r.status });
    }
    const d = (await r.json()) as Discovery;
    const t = d.transports ?? {};
    const client = new OmnipushClient(
      { websocket: t.websocket?.url, sse: t.sse?.url, longpoll: t.longpoll?.url, publish: d.endpoints?.publish ?? `${base}/v1/publish`, ack: d.endpoints?.ack ?? `${base}/v1/ack`, presence: d.endpoints?.presence ?? `${base}/v1/presence` },
      opts,
    );
    client.base = base;
    await client.start();
    // refused at the first attempt: the caller hears it here, before it could listen for errors
    if (client.refusal) throw client.refusal;
    return client;
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The transport in use, when open. */
  get transport(): TransportName | undefined {
    return this.channel?.name;
  }

  /**
   * Listens to state changes, gap signals (history the server no longer holds), or errors. An
   * error with `final` set ended what it names for good: the subscription of `error.filter`, or
   * (without a filter) the client, which is then `closed`; other errors are followed by retries.
   */
  on(event: 'state', cb: Listener<{ state: ConnectionState; transport?: TransportName }>): () => void;
  on(event: 'gap', cb: Listener<{ filter: string; info: unknown }>): () => void;
  on(event: 'error', cb: Listener<OmnipushClientError>): () => void;
  on(event: 'state' | 'gap' | 'error', cb: Listener<never>): () => void {
    const set = this.listeners[event] as Set<Listener<never>>;
    set.add(cb);
    return () => set.delete(cb);
  }

  /**
   * Subscribes to a topic filter. `since`: a cursor to resume after, `all`, or `now`; without it
   * the retained messages come first. `presence: true` keeps the topic's member list
   * (`sub.presence()`) and tells `sub.on('join' | 'leave')`. Returns the subscription; call
   * `unsubscribe()` to stop.
   */
  subscribe(filter: string, onMessage: (m: Message) => void, opts: SubscribeOptions = {}): ClientSubscription {
    const handOver =
      this.opts.ackReceipts === false
        ? onMessage
        : (m: Message) => {
            onMessage(m);
            // handed to the app: that is a receipt (docs/receipts.md)
            if (m.properties && asksForReceipt(m)) this.acks.add(m.cursor, false);
          };
    const sub = new ClientSubscription(
      filter,
      handOver,
      opts,
      (s) => {
        this.subs.delete(s);
        this.channel?.remove(s);
      },
      () => this.presenceReader(),
    );
    this.subs.add(sub);
    this.channel?.add(sub);
    return sub;
  }

  /** Publishes; over the WebSocket when that is the transport, else over HTTP. Resolves with the cursor. */
  async publish(topic: string, data: string | Uint8Array, opts: PublishOptions = {}): Promise<string> {
    const body: Record<string, unknown> = { topic, ...opts };
    if (typeof data === 'string') body.data = data;
    else body.data_base64 = btoa(String.fromCharCode(...data));
    if (this.channel?.publish) return this.channel.publish(body);
    return publishOverHttp(this.endpoints.publish, this.opts, body);
  }

  /**
   * Tells the publisher the user looked at the message at `cursor` (a `seen` receipt event);
   * batched with the automatic acknowledgements.
   */
  seen(cursor: string): void {
    this.acks.add(cursor, true);
  }

  /**
   * Turns on Web Push for this browser with this client's server and credentials: notifications
   * for `topics` even when the page is closed (see {@link enableWebPush}).
   */
  enableWebPush(opts: WebPushOptions): Promise<WebPushRegistration> {
    return enableWebPush(this.base, opts, this.opts);
  }

  /** Turns Web Push off for this browser (see {@link disableWebPush}). */
  disableWebPush(opts: { serviceWorker?: string; scope?: string; endpoint?: string } = {}): Promise<boolean> {
    return disableWebPush(this.base, opts, this.opts);
  }

  /** Closes the connection for good. */
  close(): void {
    // acks collected so far still go out (over HTTP once the socket is gone)
    this.acks.close();
    this.closed = true;
    clearTimeout(this.timer);
    this.channel?.close();
    this.channel = undefined;
    this.setState('closed');
  }

  private setState(state: ConnectionState): void {
    this.stateValue = state;
    for (const cb of this.listeners.state) cb({ state, transport: this.channel?.name });
  }

  private emitError(err: OmnipushClientError): void {
    for (const cb of this.listeners.error) cb(err);
  }

  /** Presence reads go over the WebSocket when it is open, else over HTTP. */
  private presenceReader(): PresenceReader {
    return this.channel instanceof WebSocketChannel ? this.channel : (this.httpReader ??= httpPresenceReader(this.endpoints.presence, this.opts));
  }

  private httpReader: PresenceReader | undefined;

  private makeChannel(name: TransportName, events: ChannelEvents): Channel | undefined {
    const url = this.endpoints[name];
    if (!url) return undefined;
    if (name === 'websocket') return new WebSocketChannel(url, this.opts, events);
    if (name === 'sse') return new SseChannel(url, this.opts, events, (this.httpReader ??= httpPresenceReader(this.endpoints.presence, this.opts)));
    return new LongPollChannel(url, this.opts, events);
  }

  /** Tries the transports in order; the first that opens carries every subscription. */
  private async start(): Promise<void> {
    const gen = ++this.generation;
    const order = this.opts.transports ?? ['websocket', 'sse', 'longpoll'];
    const events: ChannelEvents = {
      down: () => {
        if (gen === this.generation && !this.closed) this.reconnect();
      },
      gap: (filter, info) => {
        for (const cb of this.listeners.gap) cb({ filter, info });
      },
      trouble: (err) => {
        if (gen === this.generation) this.emitError(err);
      },
      refused: (sub, err) => {
        if (gen !== this.generation || !this.subs.has(sub)) return;
        this.subs.delete(sub);
        this.channel?.remove(sub);
        this.emitError(err);
      },
    };
    const failures: string[] = [];
    for (const name of order) {
      const ch = this.makeChannel(name, events);
      if (!ch) continue;
      if (ch instanceof SseChannel) ch.attach(this.subs);
      try {
        await withTimeout(ch.open(), this.opts.openTimeout ?? 5000);
      } catch (e) {
        ch.close();
        if (e instanceof OmnipushClientError && e.final) {
          // refused credentials stay refused: retrying with the same token would only hammer the server
          this.refusal = e;
          this.emitError(e);
          if (gen === this.generation) this.close();
          return;
        }
        failures.push(`${name}: ${(e as Error).message}`);
        continue;
      }
      if (this.closed || gen !== this.generation) {
        ch.close();
        return;
      }
      this.channel = ch;
      if (!(ch instanceof SseChannel)) for (const s of this.subs) ch.add(s);
      this.failures = 0;
      this.setState('open');
      return;
    }
    if (this.closed || gen !== this.generation) return;
    this.emitError(new OmnipushClientError(`no transport could connect (${failures.join('; ') || 'none offered'}); retrying`, { code: 'unreachable', final: false }));
    this.reconnect();
  }

  private reconnect(): void {
    this.channel?.close();
    this.channel = undefined;
    if (this.closed) return;
    this.setState('reconnecting');
    const { min, max } = this.opts.backoff ?? { min: 250, max: 15_000 };
    const delay = Math.random() * Math.min(max, min * 2 ** this.failures++);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.start(), delay);
  }
}

/** Connects to an Omnipush server; see {@link OmnipushClient}. */
export function connect(url: string, opts?: ClientOptions): Promise<OmnipushClient> {
  return OmnipushClient.connect(url, opts);
}

/** 16 random bytes, base64url: unguessable, so no other client names it by chance. */
function newClientId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return 'c_' + btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([p.finally(() => clearTimeout(t)), new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error('timed out')), ms)))]);
}
