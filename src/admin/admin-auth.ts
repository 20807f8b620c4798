import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { hashPassword, verifyPassword } from '../auth/users.js';
import type { Config } from '../config/schema.js';
import { OmnipushError } from '../core/errors.js';
import type { Principal } from '../core/grants.js';
import { LoginThrottle } from './login-throttle.js';

/** The console's session cookie. */
export const SESSION_COOKIE = 'omnipush_admin';
/** Header carrying the session's CSRF token on state-changing requests made with the cookie. */
export const CSRF_HEADER = 'x-csrf-token';

/** Who is calling the server API, and how they proved it. */
export interface AdminCaller {
  /** `key`, a JWT `sub`, or a console username. */
  who: string;
  via: 'key' | 'token' | 'session';
  /** With a session: the token state-changing requests must echo in {@link CSRF_HEADER}. */
  csrf?: string;
}

interface Session {
  who: string;
  csrf: string;
  expiresAt: number;
}

/** Where sessions are kept: the store's records, so that every node of a cluster knows every session. */
export interface SessionRecords {
  getRecord(kind: string, key: string): Promise<Buffer | undefined>;
  putRecords(changes: Array<{ kind: string; key: string; value: Buffer | null }>): Promise<void>;
  listRecords(kind: string, prefix?: string, limit?: number, after?: string): Promise<Array<{ key: string; value: Buffer }>>;
}

export const SESSION_KIND = 'admin.sessions';
/** Expired sessions are swept from the store once per this many logins (and read as expired meanwhile). */
const SWEEP_EVERY = 64;

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const cookie = req.headers.cookie;
  if (!cookie) return undefined;
  for (const part of cookie.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * Admin credentials: static API keys, JWTs with the admin grant, and console logins (users with
 * scrypt hashes, or an API key) that get an HttpOnly session cookie plus a CSRF token. Sessions
 * are store records keyed by a digest of the cookie (a store dump holds no usable cookie), so any
 * node of a cluster answers for them and they outlive a restart of a node with a durable store.
 */
export class AdminAuth {
  private readonly keys: Buffer[];
  private readonly users: Map<string, string>;
  private readonly throttle: LoginThrottle;
  private dummyHash: Promise<string> | undefined;
  private logins = 0;

  constructor(
    private readonly config: Config,
    private readonly authenticateToken: (token: string) => Promise<Principal>,
    private readonly records: SessionRecords,
  ) {
    this.keys = config.admin.apiKeys.map(digest);
    this.users = new Map(config.admin.users.map((u) => [u.username, u.passwordHash]));
    this.throttle = new LoginThrottle(config.admin.loginAttempts, config.admin.loginWindow * 1000);
  }

  /** The console (login with a password or key) is on. */
  get consoleEnabled(): boolean {
    return this.keys.length > 0 || this.users.size > 0;
  }

  /** The API answers at all: console credentials, or JWTs that may carry the admin grant. */
  get apiEnabled(): boolean {
    const jwt = this.config.auth.jwt;
    return this.consoleEnabled || !!(jwt?.secret || jwt?.publicKeys.length || jwt?.jwksFile);
  }

  private isKey(candidate: string): boolean {
    const d = digest(candidate);
    let ok = false;
    // every key is compared, so the time taken does not tell which one came close
    for (const k of this.keys) ok = timingSafeEqual(k, d) || ok;
    return ok;
  }

  /**
   * Who is calling, or throws `unauthorized` (no or bad credentials) / `forbidden` (a token without
   * the admin grant, or a cookie request that changes state without the CSRF token).
   */
  async caller(req: IncomingMessage, stateChanging: boolean): Promise<AdminCaller> {
    if (!this.apiEnabled) {
      throw new OmnipushError('forbidden', 'the server API is off: configure admin.apiKeys, admin.users or auth.jwt');
    }
    const h = req.headers.authorization;
    if (h) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
      if (!m) throw new OmnipushError('unauthorized', 'Authorization header must be "Bearer <token>"');
      if (this.isKey(m[1])) return { who: 'key', via: 'key' };
      const p = await this.authenticateToken(m[1]);
      if (!p.grants.admin) throw new OmnipushError('forbidden', 'this token has no admin grant');
      return { who: p.id, via: 'token' };
    }
    const id = cookieValue(req, SESSION_COOKIE);
    if (id) {
      const s = await this.session(id);
      if (!s || s.expiresAt <= Date.now()) {
        if (s) await this.records.putRecords([{ kind: SESSION_KIND, key: sessionKey(id), value: null }]);
        throw new OmnipushError('unauthorized', 'console session expired or unknown: log in again');
      }
      if (stateChanging) {
        const sent = req.headers[CSRF_HEADER];
        if (typeof sent !== 'string' || !timingSafeEqual(digest(sent), digest(s.csrf))) {
          throw new OmnipushError('forbidden', `state-changing requests with the session cookie need the ${CSRF_HEADER} header`);
        }
      }
      return { who: s.who, via: 'session', csrf: s.csrf };
    }
    throw new OmnipushError('unauthorized', 'admin credentials required: Authorization: Bearer <admin API key or JWT with the admin grant>, or a console login');
  }

  /**
   * Checks a console login (`{username, password}` or `{apiKey}`) from `address`; throttled per
   * address and per username. Returns the new session's id and CSRF token.
   */
  async login(body: unknown, address: string): Promise<{ id: string; who: string; csrf: string; expiresAt: number }> {
    if (!this.consoleEnabled) throw new OmnipushError('forbidden', 'the console is off: configure admin.apiKeys or admin.users');
    if (typeof body !== 'object' || body === null) throw new OmnipushError('invalid_request', 'send {"username", "password"} or {"apiKey"}');
    const b = body as Record<string, unknown>;
    const username = typeof b.apiKey === 'string' ? 'key' : b.username;
    if (typeof username !== 'string' || username === '' || username.length > 200) throw new OmnipushError('invalid_request', 'username must be a non-empty string');
    const keys = [`addr:${address}`, `user:${username}`];
    const wait = Math.max(...keys.map((k) => this.throttle.retryAfter(k)));
    if (wait > 0) throw new OmnipushError('rate_limited', `too many failed logins; retry in ${wait} s`, { retryAfter: wait });
    let ok: boolean;
    if (typeof b.apiKey === 'string') ok = this.isKey(b.apiKey);
    else {
      if (typeof b.password !== 'string' || b.password.length > 1024) throw new OmnipushError('invalid_request', 'password must be a string');
      const hash = this.users.get(username);
      // an unknown user costs the same scrypt run as a known one, so timing does not tell them apart
      ok = await verifyPassword(Buffer.from(b.password, 'utf8'), hash ?? (await (this.dummyHash ??= hashPassword(randomBytes(16).toString('hex')))));
      ok &&= hash !== undefined;
    }
    if (!ok) {
      for (const k of keys) this.throttle.fail(k);
      throw new OmnipushError('unauthorized', 'wrong username or password');
    }
    this.throttle.reset(keys[1]);
    if (++this.logins % SWEEP_EVERY === 0) await this.sweep();
    const id = randomBytes(32).toString('base64url');
    const s: Session = { who: username, csrf: randomBytes(24).toString('base64url'), expiresAt: Date.now() + this.config.admin.sessionTtl * 1000 };
    await this.records.putRecords([{ kind: SESSION_KIND, key: sessionKey(id), value: Buffer.from(JSON.stringify(s)) }]);
    return { id, ...s };
  }

  async logout(req: IncomingMessage): Promise<void> {
    const id = cookieValue(req, SESSION_COOKIE);
    if (id) await this.records.putRecords([{ kind: SESSION_KIND, key: sessionKey(id), value: null }]);
  }

  private async session(id: string): Promise<Session | undefined> {
    if (id.length > 100) return undefined;
    const raw = await this.records.getRecord(SESSION_KIND, sessionKey(id));
    if (!raw) return undefined;
    try {
      return JSON.parse(raw.toString('utf8')) as Session;
    } catch {
      return undefined;
    }
  }

  /** The Set-Cookie value for a session (or its removal with `id` null). */
  cookie(req: IncomingMessage, id: string | null): string {
    const tls = (req.socket as { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https' || !!this.config.http.publicUrl?.startsWith('https:');
    const life = id === null ? 'Max-Age=0' : `Max-Age=${Math.floor(this.config.admin.sessionTtl)}`;
    return `${SESSION_COOKIE}=${id ?? ''}; Path=/; HttpOnly; SameSite=Strict; ${life}${tls ? '; Secure' : ''}`;
  }

  /** Deletes expired sessions, page by page. */
  private async sweep(): Promise<void> {
    const now = Date.now();
    let after: string | undefined;
    for (;;) {
      const rows = await this.records.listRecords(SESSION_KIND, '', 500, after);
      const gone = rows.filter((r) => {
        try {
          return (JSON.parse(r.value.toString('utf8')) as Session).expiresAt <= now;
        } catch {
          return true;
        }
      });
      if (gone.length) await this.records.putRecords(gone.map((r) => ({ kind: SESSION_KIND, key: r.key, value: null })));
      if (rows.length < 500) return;
      after = rows[rows.length - 1].key;
    }
  }
}

/** The record key of a session: a digest of its cookie, never the cookie itself. */
function sessionKey(id: string): string {
  return digest(id).toString('base64url');
}
