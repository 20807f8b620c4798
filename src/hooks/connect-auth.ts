import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/types.js';
import type { Config } from '../config/schema.js';
import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import type { Metrics } from '../metrics/metrics.js';
import { requestToken } from '../wire/http-request.js';
import { ConnectHook, type ConnectHookRequest } from './connect-hook.js';
import type { ClientAddresses } from '../wire/client-address.js';
import { HookFailure } from './hook-client.js';

/**
 * Every door's way from presented credentials to a principal: JWT (and static users, at the MQTT
 * door) as before, and the app's connect hook when one is configured. In mode `fallback` a token
 * that verifies as a JWT never reaches the hook; in mode `always` the hook decides alone.
 */
export class ConnectAuth {
  private readonly hook: ConnectHook | null;
  private readonly headers: readonly string[];
  private readonly cookies: ReadonlySet<string>;

  constructor(
    private readonly jwt: Authenticator,
    private readonly config: Config,
    metrics: Metrics,
    private readonly log: Logger,
    private readonly addresses: ClientAddresses,
  ) {
    const c = config.hooks.connect;
    this.hook = c.url ? new ConnectHook({ ...c, url: c.url }, metrics, log) : null;
    this.headers = c.headers;
    this.cookies = new Set(c.cookies);
  }

  /** An HTTP request (SSE, long-poll, WebSocket upgrade, publish API): header, `access_token` or cookie. */
  request(req: IncomingMessage, url: URL, door: 'http' | 'websocket' = 'http'): Promise<Principal> {
    if (this.hook) return this.requestAsking(req, url, door);
    // no hook: the JWT check's promise is the answer, with no async frame of its own around it
    // (two promises and their ticks less on every publish request)
    let token: string | undefined;
    try {
      token = requestToken(req, url, this.config.auth.cookieName);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.jwt.authenticate(token);
  }

  private async requestAsking(req: IncomingMessage, url: URL, door: 'http' | 'websocket'): Promise<Principal> {
    let token: string | undefined;
    try {
      token = requestToken(req, url, this.config.auth.cookieName);
    } catch (e) {
      // an Authorization header of another scheme (Basic, the app's own) is the app's to read
      if (!(e instanceof OmnipushError) || !this.headers.includes('authorization') || !req.headers.authorization) throw e;
    }
    const jwt = await this.viaJwt(token);
    if (jwt) return jwt;
    const r: ConnectHookRequest = { door, method: req.method, path: url.pathname, address: this.addresses.of(req) };
    if (this.headers.length) {
      const h: Record<string, string> = {};
      for (const name of this.headers) {
        const v = req.headers[name];
        if (v !== undefined) h[name] = Array.isArray(v) ? v.join(', ') : v;
      }
      r.headers = h;
    }
    if (this.cookies.size && req.headers.cookie) r.cookies = this.pickCookies(req.headers.cookie);
    if (token !== undefined) r.token = token;
    return this.ask(r);
  }

  /** A bare token (a WebSocket `auth` message, the server API). */
  async token(token: string | undefined, door: 'http' | 'websocket' = 'websocket'): Promise<Principal> {
    if (!this.hook) return this.jwt.authenticate(token);
    const jwt = await this.viaJwt(token);
    if (jwt) return jwt;
    return this.ask(token === undefined ? { door } : { door, token });
  }

  /**
   * MQTT CONNECT credentials (static users are checked by the broker first). Without a hook the
   * password is taken as a token, as before.
   */
  async mqtt(username: string | undefined, password: Buffer | undefined, clientId: string, address: string): Promise<Principal> {
    const token = password?.length ? password.toString('utf8') : undefined;
    if (!this.hook) return this.jwt.authenticate(token);
    const jwt = await this.viaJwt(token);
    if (jwt) return jwt;
    const mqtt: ConnectHookRequest['mqtt'] = { clientId };
    if (username !== undefined) mqtt.username = username;
    if (token !== undefined) mqtt.password = token;
    return this.ask({ door: 'mqtt', address, mqtt });
  }

  /** The JWT's principal when the token verifies and the mode lets JWTs in; undefined: ask the hook. */
  private async viaJwt(token: string | undefined): Promise<Principal | undefined> {
    if (token === undefined || this.config.hooks.connect.mode === 'always' || !this.jwt.configured) return undefined;
    try {
      return await this.jwt.authenticate(token);
    } catch (e) {
      if (e instanceof OmnipushError && e.code === 'unauthorized') return undefined;
      throw e;
    }
  }

  private async ask(r: ConnectHookRequest): Promise<Principal> {
    try {
      return await this.hook!.ask(r);
    } catch (e) {
      if (!(e instanceof HookFailure)) throw e;
      // open: the client is as good as one without credentials (auth.anonymous decides)
      if (this.hook!.failOpen) return this.jwt.authenticate(undefined);
      throw new OmnipushError('unavailable', `could not check credentials: ${e.message}`, { hook: 'connect', retryAfter: 5 });
    }
  }

  private pickCookies(header: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const part of header.split(';')) {
      const i = part.indexOf('=');
      if (i <= 0) continue;
      const name = part.slice(0, i).trim();
      if (this.cookies.has(name)) out[name] = part.slice(i + 1).trim();
    }
    return out;
  }

  async close(): Promise<void> {
    await this.hook?.close();
    this.log.debug('connect hook closed');
  }
}
