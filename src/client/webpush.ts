/**
 * Web Push for pages: register the service worker, subscribe the browser with the server's
 * VAPID key, and register that subscription with the server (docs/webpush.md).
 * Written against the few browser APIs they use, so the SDK builds without DOM typings.
 */

/** The browser's `PushSubscription.toJSON()`. */
export interface PushSubscriptionJson {
  endpoint: string;
  expirationTime?: number | null;
  keys: { p256dh: string; auth: string };
}

export interface WebPushOptions {
  /** Topic filters to be pushed. */
  topics: string[];
  /** `always` (default), or `offline`: only while this user has no live connection subscribed to the topic. */
  mode?: 'always' | 'offline';
  /**
   * Service worker script URL; it must be on the page's origin. Default: the server's own
   * `/v1/webpush/sw.js`, which works when the page is served from the server's origin.
   */
  serviceWorker?: string;
  /** Service worker scope (default: the browser's default for the script). */
  scope?: string;
  /**
   * Register this subscription instead of asking the browser's push manager for one (browsers
   * or tests without a reachable push service).
   */
  subscription?: PushSubscriptionJson;
}

/** What the server registered. */
export interface WebPushRegistration {
  id: string;
  endpoint: string;
  topics: string[];
  mode: 'always' | 'offline';
}

/** Server and credentials for these functions (an {@link OmnipushClient} passes its own). */
export interface WebPushServer {
  token?: string;
  fetch?: typeof fetch;
}

interface WorkerLike {
  state: string;
  addEventListener(type: 'statechange', cb: () => void): void;
}
interface PushManagerLike {
  getSubscription(): Promise<{ endpoint: string; options?: { applicationServerKey?: ArrayBuffer | null }; toJSON(): PushSubscriptionJson; unsubscribe(): Promise<boolean> } | null>;
  subscribe(o: { userVisibleOnly: boolean; applicationServerKey: Uint8Array }): Promise<{ toJSON(): PushSubscriptionJson }>;
}
interface RegistrationLike {
  active: WorkerLike | null;
  installing: WorkerLike | null;
  waiting: WorkerLike | null;
  pushManager: PushManagerLike;
}
interface ServiceWorkerContainerLike {
  register(url: string, o?: { scope?: string }): Promise<RegistrationLike>;
  getRegistration(scope?: string): Promise<RegistrationLike | undefined>;
}
interface NotificationLike {
  permission: string;
  requestPermission(): Promise<string>;
}

interface WebPushDiscovery {
  vapidPublicKey: string;
  subscriptions: string;
  serviceWorker: string;
}

function browser(): { sw: ServiceWorkerContainerLike; notification: NotificationLike | undefined } {
  const g = globalThis as unknown as { navigator?: { serviceWorker?: ServiceWorkerContainerLike }; Notification?: NotificationLike };
  if (!g.navigator?.serviceWorker) throw new Error('Web Push needs service workers (a browser page on https: or localhost)');
  return { sw: g.navigator.serviceWorker, notification: g.Notification };
}

async function discover(serverUrl: string, s: WebPushServer): Promise<WebPushDiscovery> {
  const f = s.fetch ?? globalThis.fetch;
  const r = await f(`${serverUrl.replace(/\/+$/, '')}/.well-known/omnipush`);
  if (r.status !== 200) throw new Error(`discovery failed: ${r.status}`);
  const d = (await r.json()) as { webpush?: WebPushDiscovery };
  if (!d.webpush) throw new Error('this server does not offer Web Push (webpush.subject is not configured)');
  return d.webpush;
}

async function request(s: WebPushServer, method: string, url: string, body?: unknown): Promise<Record<string, unknown>> {
  const f = s.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (s.token) headers.authorization = `Bearer ${s.token}`;
  const r = await f(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const j = (await r.json().catch(() => ({}))) as Record<string, unknown>;
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${(j.error as { message?: string } | undefined)?.message ?? ''}`.trim());
  return j;
}

/** Resolves once the registration has an activated worker (push events go to the active one). */
function activated(reg: RegistrationLike): Promise<void> {
  const w = reg.installing ?? reg.waiting ?? reg.active;
  if (!w || w.state === 'activated') return Promise.resolve();
  return new Promise((resolve, reject) => {
    w.addEventListener('statechange', () => {
      if (w.state === 'activated') resolve();
      else if (w.state === 'redundant') reject(new Error('the service worker failed to install'));
    });
  });
}

function sameKey(a: ArrayBuffer | null | undefined, b: Uint8Array): boolean {
  if (!a) return false;
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

function base64UrlToBytes(s: string): Uint8Array {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

/**
 * Turns on Web Push for this browser: registers the service worker, asks for notification
 * permission (call it from a user gesture), subscribes with the server's VAPID key and registers
 * the subscription for `topics`. Calling it again updates topics and mode.
 */
export async function enableWebPush(serverUrl: string, opts: WebPushOptions, server: WebPushServer = {}): Promise<WebPushRegistration> {
  const { sw, notification } = browser();
  const d = await discover(serverUrl, server);
  const reg = await sw.register(opts.serviceWorker ?? d.serviceWorker, opts.scope ? { scope: opts.scope } : undefined);
  await activated(reg);
  let subscription = opts.subscription;
  if (!subscription) {
    if (notification && notification.permission !== 'granted' && (await notification.requestPermission()) !== 'granted') {
      throw new Error('notification permission was not granted');
    }
    const key = base64UrlToBytes(d.vapidPublicKey);
    let current = await reg.pushManager.getSubscription();
    // a subscription made with another server key would be refused by the push service
    if (current && !sameKey(current.options?.applicationServerKey, key)) {
      await current.unsubscribe();
      current = null;
    }
    subscription = (current ?? (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }))).toJSON();
  }
  const r = await request(server, 'POST', d.subscriptions, { subscription, topics: opts.topics, mode: opts.mode ?? 'always' });
  return { id: r.id as string, endpoint: r.endpoint as string, topics: r.topics as string[], mode: r.mode as 'always' | 'offline' };
}

/**
 * Turns Web Push off for this browser: removes the registration on the server and unsubscribes
 * from the push service. Resolves false when there was nothing to turn off.
 */
export async function disableWebPush(serverUrl: string, opts: { serviceWorker?: string; scope?: string; endpoint?: string } = {}, server: WebPushServer = {}): Promise<boolean> {
  const { sw } = browser();
  const d = await discover(serverUrl, server);
  const reg = await sw.getRegistration(opts.scope ?? opts.serviceWorker ?? d.serviceWorker);
  const current = reg ? await reg.pushManager.getSubscription() : null;
  const endpoint = opts.endpoint ?? current?.endpoint;
  if (!endpoint) return false;
  let removed = true;
  try {
    await request(server, 'DELETE', `${d.subscriptions}?endpoint=${encodeURIComponent(endpoint)}`);
  } catch (e) {
    if (!/: 404/.test((e as Error).message)) throw e;
    removed = false;
  }
  if (current && current.endpoint === endpoint) await current.unsubscribe();
  return removed || !!current;
}
