import { errorFromResponse, isFinalStatus, OmnipushClientError } from './errors.js';
import type { ClientSubscription } from './subscription.js';
import type { PresenceEventWire, PresencePageWire, PresenceReader, PresenceStats } from './presence.js';
import type { ClientOptions, EventSourceLike, PublishOptions, TransportName, WebSocketLike, WireMessage } from './types.js';

/** What a transport channel tells the client. */
export interface ChannelEvents {
  /** An open channel dropped; the client reconnects (and may fall back). */
  down(reason: string): void;
  gap(filter: string, info: unknown): void;
  /** The server refused a subscription for good (bad filter, no grant): the client drops it. */
  refused(sub: ClientSubscription, err: OmnipushClientError): void;
  /** A channel that retries by itself (long-poll) lost the server; told once per outage. */
  trouble(err: OmnipushClientError): void;
}

/** One transport's connection, carrying every subscription of the client. */
export interface Channel {
  readonly name: TransportName;
  /** Resolves once usable; rejects when the transport cannot connect (the client falls back). */
  open(): Promise<void>;
  add(sub: ClientSubscription): void;
  remove(sub: ClientSubscription): void;
  /** Publishes over the channel itself, when it is two-way. */
  publish?(body: Record<string, unknown>): Promise<string>;
  /** Sends receipt acks over the channel itself, when it is two-way and open; false otherwise. */
  ack?(cursors: string[], seen: boolean): boolean;
  close(): void;
}

export interface Endpoints {
  websocket?: string;
  sse?: string;
  longpoll?: string;
  publish: string;
  ack: string;
  presence: string;
}

/** The client's options, with the stable id it keeps on every transport and across reconnects. */
export interface ChannelOptions extends ClientOptions {
  clientId: string;
}

/** Names the client (`client=`, its stable id) and asks for no echo on a transport's URL, with the token. */
function withClient(url: string, opts: ChannelOptions): string {
  const out = withToken(url, opts.token, opts.clientId);
  return opts.noEcho ? `${out}&noEcho=1` : out;
}

function withToken(url: string, token: string | undefined, clientId?: string): string {
  if (clientId) url = `${url}${url.includes('?') ? '&' : '?'}client=${encodeURIComponent(clientId)}`;
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

/** WebSocket: one socket, subscriptions as protocol messages (docs/websocket.md); presence reads as requests. */
export class WebSocketChannel implements Channel, PresenceReader {
  readonly name = 'websocket';
  private ws: WebSocketLike | undefined;
  private nextId = 1;
  private readonly serverIds = new Map<ClientSubscription, string>();
  private readonly pending = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void }>();
  /** Subscribe requests in flight, by request id. */
  private readonly subscribing = new Map<number, ClientSubscription>();
  private readonly subs = new Set<ClientSubscription>();
  private opened = false;
  private closedByUs = false;

  constructor(
    private readonly url: string,
    private readonly opts: ChannelOptions,
    private readonly events: ChannelEvents,
  ) {}

  open(): Promise<void> {
    const WS = this.opts.WebSocket ?? globalThis.WebSocket;
    return new Promise((resolve, reject) => {
      const ws = new WS(withClient(this.url, this.opts));
      this.ws = ws;
      ws.onopen = () => {
        this.opened = true;
        for (const s of this.subs) this.sendSubscribe(s);
        resolve();
      };
      ws.onmessage = (ev: { data: unknown }) => this.onFrame(String(ev.data));
      ws.onerror = () => undefined;
      ws.onclose = (ev: { code: number; reason: string }) => {
        for (const p of this.pending.values()) p.reject(new Error(`socket closed (${ev.code})`));
        this.pending.clear();
        this.subscribing.clear();
        if (!this.opened) reject(new Error(`WebSocket could not open (${ev.code})`));
        else if (!this.closedByUs) this.events.down(`WebSocket closed (${ev.code} ${ev.reason})`);
      };
    });
  }

  private onFrame(text: string): void {
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (f.type === 'message') {
      for (const s of this.subs) s.offer(f as unknown as WireMessage);
      return;
    }
    if (f.type === 'gap') {
      for (const [s, id] of this.serverIds) if (id === f.sub) this.events.gap(s.filter, f);
      return;
    }
    if (f.type === 'join' || f.type === 'leave') {
      for (const s of this.subs) s.presenceEvent(f.type, f as unknown as PresenceEventWire);
      return;
    }
    const id = f.id as number | undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) return;
    this.pending.delete(id!);
    // Mapped here, not when the promise settles: a gap frame for this subscription may be the very
    // next frame, handled before any promise callback runs.
    const sub = this.subscribing.get(id!);
    if (sub) {
      this.subscribing.delete(id!);
      if (f.type === 'subscribed' && this.subs.has(sub)) {
        this.serverIds.set(sub, String(f.sub));
        // the server sends this subscription's joins and leaves from here: the list is read after
        sub.presenceLive(this);
      }
    }
    if (f.type === 'error') p.reject(new OmnipushClientError(String(f.message), { code: String(f.code), filter: sub?.filter }));
    else p.resolve(f);
  }

  private request(msg: Record<string, unknown>, forSub?: ClientSubscription): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    if (forSub) this.subscribing.set(id, forSub);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws!.send(JSON.stringify({ ...msg, id }));
    });
  }

  private sendSubscribe(s: ClientSubscription): void {
    const msg: Record<string, unknown> = { type: 'subscribe', topics: [s.filter], since: s.since };
    if (s.view) msg.presence = true;
    if (s.info) msg.info = s.info;
    if (this.opts.noEcho) msg.noEcho = true;
    this.request(msg, s).catch((e: unknown) => {
      // a refusal stands; a socket that closed meanwhile resubscribes on the next one
      if (e instanceof OmnipushClientError && e.final && this.subs.has(s)) this.events.refused(s, e);
    });
  }

  add(sub: ClientSubscription): void {
    this.subs.add(sub);
    if (this.opened) this.sendSubscribe(sub);
  }

  remove(sub: ClientSubscription): void {
    this.subs.delete(sub);
    const id = this.serverIds.get(sub);
    this.serverIds.delete(sub);
    if (id && this.opened) this.request({ type: 'unsubscribe', sub: id }).catch(() => undefined);
  }

  async publish(body: Record<string, unknown>): Promise<string> {
    const r = await this.request({ type: 'publish', ...body });
    return String(r.cursor);
  }

  ack(cursors: string[], seen: boolean): boolean {
    // 1 = OPEN; without an id the server sends no answer
    if (!this.opened || this.closedByUs || (this.ws as { readyState?: number } | undefined)?.readyState !== 1) return false;
    this.ws!.send(JSON.stringify({ type: 'ack', cursors, ...(seen ? { seen: true } : {}) }));
    return true;
  }

  async page(topic: string, cursor: string | undefined): Promise<PresencePageWire> {
    return (await this.request({ type: 'presence', topic, ...(cursor ? { cursor } : {}) })) as unknown as PresencePageWire;
  }

  async stats(topic: string): Promise<PresenceStats> {
    return (await this.request({ type: 'presence_stats', topic })) as unknown as PresenceStats;
  }

  close(): void {
    this.closedByUs = true;
    this.ws?.close();
  }
}

/** SSE: one EventSource per subscription (JSON envelopes), each resuming from its own cursor. */
export class SseChannel implements Channel {
  readonly name = 'sse';
  private readonly sources = new Map<ClientSubscription, EventSourceLike>();
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly opts: ChannelOptions,
    private readonly events: ChannelEvents,
    private readonly reader: PresenceReader,
  ) {}

  private source(sub: ClientSubscription): Promise<void> {
    const ES = this.opts.EventSource ?? (globalThis as unknown as { EventSource: new (url: string) => EventSourceLike }).EventSource;
    let url = `${this.url}?topic=${encodeURIComponent(sub.filter)}&format=json`;
    if (sub.since) url += `&since=${encodeURIComponent(sub.since)}`;
    if (sub.view) url += '&presence=1';
    const es = new ES(withClient(url, this.opts));
    this.sources.set(sub, es);
    es.addEventListener('message', (ev: { data: string }) => sub.offer(JSON.parse(ev.data) as WireMessage));
    es.addEventListener('gap', (ev: { data: string }) => this.events.gap(sub.filter, JSON.parse(ev.data)));
    if (sub.view) {
      es.addEventListener('join', (ev: { data: string }) => sub.presenceEvent('join', JSON.parse(ev.data) as PresenceEventWire));
      es.addEventListener('leave', (ev: { data: string }) => sub.presenceEvent('leave', JSON.parse(ev.data) as PresenceEventWire));
    }
    return new Promise((resolve, reject) => {
      let opened = false;
      es.onopen = () => {
        opened = true;
        // each (re)open: the stream sends joins and leaves from here, so the list is read after
        sub.presenceLive(this.reader);
        resolve();
      };
      es.onerror = (ev: { code?: number }) => {
        // CONNECTING: the EventSource reconnects by itself with Last-Event-ID; CLOSED: it gave up
        if (es.readyState !== 2) return;
        if (opened) {
          if (!this.closed && this.sources.get(sub) === es) this.events.down('EventSource closed');
          return;
        }
        // an EventSource does not tell why; the `eventsource` package gives the status, else ask once
        this.refusal(url, sub, ev.code).then(
          (err) => {
            if (!err) return reject(new Error('EventSource could not open'));
            this.sources.delete(sub);
            this.events.refused(sub, err);
            resolve();
          },
          () => reject(new Error('EventSource could not open')),
        );
      };
    });
  }

  /** The server's refusal of a stream that would not open, when it is one that retrying will not change. */
  private async refusal(url: string, sub: ClientSubscription, status: number | undefined): Promise<OmnipushClientError | undefined> {
    if (typeof status === 'number' && !isFinalStatus(status)) return undefined;
    const f = this.opts.fetch ?? globalThis.fetch;
    const ac = new AbortController();
    try {
      const r = await f(withToken(url, this.opts.token), { headers: { accept: 'text/event-stream' }, signal: ac.signal });
      if (!isFinalStatus(r.status)) return undefined;
      return await errorFromResponse(r, sub.filter);
    } finally {
      ac.abort();
    }
  }

  async open(): Promise<void> {
    if (this.sources.size === 0) {
      // nothing to stream yet: check the endpoint is reachable (without topics the server answers a JSON 400)
      const f = this.opts.fetch ?? globalThis.fetch;
      const r = await f(withToken(this.url, this.opts.token), { headers: { accept: 'text/event-stream' } });
      if (r.status === 401 || r.status === 403) throw await errorFromResponse(r);
      const body = (await r.json().catch(() => null)) as unknown;
      if (r.status >= 500 || !body) throw new Error(`SSE endpoint answered ${r.status}`);
      return;
    }
    await Promise.all([...this.sources.keys()].map((s) => this.source(s)));
  }

  add(sub: ClientSubscription): void {
    void this.source(sub).catch(() => this.events.down('EventSource could not open'));
  }

  remove(sub: ClientSubscription): void {
    this.sources.get(sub)?.close();
    this.sources.delete(sub);
  }

  /** Subscriptions are attached before open() so the first streams prove the transport works. */
  attach(subs: Iterable<ClientSubscription>): void {
    for (const s of subs) this.sources.set(s, null as unknown as EventSourceLike);
  }

  close(): void {
    this.closed = true;
    for (const es of this.sources.values()) es?.close();
    this.sources.clear();
  }
}

/** Long-poll: a poll loop per subscription, always passing the cursor it was given. */
export class LongPollChannel implements Channel {
  readonly name = 'longpoll';
  private readonly loops = new Map<ClientSubscription, AbortController>();
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly opts: ChannelOptions,
    private readonly events: ChannelEvents,
  ) {}

  async open(): Promise<void> {
    // proves the endpoint answers (a poll without topics is refused with a JSON 400 by the server
    // itself); the loops start as subscriptions are added
    const f = this.opts.fetch ?? globalThis.fetch;
    const r = await f(withToken(`${this.url}?timeout=0`, this.opts.token));
    if (r.status === 401 || r.status === 403) throw await errorFromResponse(r);
    const body = (await r.json().catch(() => null)) as { error?: unknown } | null;
    if (r.status >= 500 || !body) throw new Error(`long-poll endpoint answered ${r.status}`);
  }

  add(sub: ClientSubscription): void {
    const ac = new AbortController();
    this.loops.set(sub, ac);
    void this.loop(sub, ac.signal);
  }

  private async loop(sub: ClientSubscription, signal: AbortSignal): Promise<void> {
    const f = this.opts.fetch ?? globalThis.fetch;
    let cursor = sub.since;
    let delay = 250;
    let failing = false;
    while (!signal.aborted && !this.closed) {
      try {
        let url = `${this.url}?topic=${encodeURIComponent(sub.filter)}&timeout=25`;
        if (cursor) url += `&since=${encodeURIComponent(cursor)}`;
        const r = await f(withClient(url, this.opts), { signal });
        if (isFinalStatus(r.status)) {
          const err = await errorFromResponse(r, sub.filter);
          if (!signal.aborted && !this.closed) this.events.refused(sub, err);
          return;
        }
        const body = (await r.json()) as { messages?: WireMessage[]; cursor?: string; gap?: unknown; error?: { code: string } };
        if (r.status !== 200) throw new Error(body.error?.code ?? `status ${r.status}`);
        if (body.gap) this.events.gap(sub.filter, body.gap);
        for (const m of body.messages ?? []) sub.offer(m);
        cursor = body.cursor;
        delay = 250;
        failing = false;
      } catch (e) {
        if (signal.aborted || this.closed) return;
        if (!failing) this.events.trouble(new OmnipushClientError(`long-poll for ${sub.filter} failed: ${(e as Error).message}; retrying`, { code: 'unreachable', filter: sub.filter, final: false }));
        failing = true;
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  remove(sub: ClientSubscription): void {
    this.loops.get(sub)?.abort();
    this.loops.delete(sub);
  }

  close(): void {
    this.closed = true;
    for (const ac of this.loops.values()) ac.abort();
    this.loops.clear();
  }
}

/** Publishes over HTTP (for one-way transports). */
export async function publishOverHttp(url: string, opts: ChannelOptions, body: Record<string, unknown>): Promise<string> {
  const f = opts.fetch ?? globalThis.fetch;
  // the connection it speaks for: its own streams skip it when they asked for no echo
  const headers: Record<string, string> = { 'content-type': 'application/json', 'omnipush-connection': opts.clientId };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let r: Response;
  try {
    r = await f(url, { method: 'POST', headers, body: JSON.stringify(body) });
  } catch (e) {
    throw new OmnipushClientError(`cannot reach ${url}: ${(e as Error).message}`, { code: 'unreachable' });
  }
  if (r.status !== 200) throw await errorFromResponse(r);
  return ((await r.json()) as { cursor: string }).cursor;
}

export type { PublishOptions };
