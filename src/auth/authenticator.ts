import { existsSync, readFileSync } from 'node:fs';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { grantsSchema, type Config, type GrantsConfig } from '../config/schema.js';
import { OmnipushError } from '../core/errors.js';
import { ALLOW_ALL, DENY_ALL, type Grants, type Principal } from '../core/grants.js';
import { validateFilter } from '../core/topic.js';
import { presenceInfoOf } from '../core/presence-info.js';
import { VerifiedTokens } from './verified-tokens.js';
import type { Authenticator } from './types.js';
import { remoteKeySet } from './remote-jwks.js';

type AuthConfig = Config['auth'];

/** Config or claim grants → core grants (filters validated). Throws on a bad filter. */
export function toGrants(g: GrantsConfig): Grants {
  const check = (list: string[]) => list.map((f) => validateFilter(f));
  return {
    publish: { allow: check(g.publish), deny: check(g.deny.publish) },
    subscribe: { allow: check(g.subscribe), deny: check(g.deny.subscribe) },
    ...(g.admin ? { admin: true } : {}),
    ...(g.presence?.length ? { presence: check(g.presence) } : {}),
  };
}

interface VerifyKey {
  alg: 'RS256' | 'ES256' | 'EdDSA';
  key: KeyObject;
}

function loadPem(entry: string): string {
  if (entry.includes('-----BEGIN')) return entry;
  if (!existsSync(entry)) throw new Error(`auth.jwt.publicKeys: ${entry} is neither a PEM key nor a readable file`);
  return readFileSync(entry, 'utf8');
}

/** A public key and the one algorithm it may verify (no algorithm confusion). */
function publicKeyOf(entry: string): VerifyKey {
  const key = createPublicKey(loadPem(entry));
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { alg: 'RS256', key };
    case 'ec':
      if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('auth.jwt.publicKeys: only P-256 EC keys (ES256) are supported');
      return { alg: 'ES256', key };
    case 'ed25519':
      return { alg: 'EdDSA', key };
    default:
      throw new Error(`auth.jwt.publicKeys: unsupported key type ${key.asymmetricKeyType}`);
  }
}

function explain(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'token expired';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature is not valid';
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `token claim "${e.claim}" is not valid: ${e.reason}`;
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm is not allowed';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'no key matches the token';
  if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JWKSInvalid) return 'the key set could not be fetched';
  if (e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JWTInvalid) return 'token is malformed';
  return 'token is not valid';
}

/**
 * Builds the authenticator for every door. Anonymous access is allowed by default only when no
 * JWT key is configured (and then the server must bind to loopback — see checkBindSafety).
 */
/** `maxInfoBytes`: bound of the `info` claim that presence lists; 0 (presence off) leaves the claim unread. */
export async function createAuthenticator(auth: AuthConfig, hooked = false, maxInfoBytes = 0): Promise<Authenticator> {
  const jwt = auth.jwt;
  const secret = jwt?.secret ? new TextEncoder().encode(jwt.secret) : undefined;
  const keys = (jwt?.publicKeys ?? []).map(publicKeyOf);
  let jwks: JWTVerifyGetKey | undefined;
  if (jwt?.jwksFile) {
    const parsed = JSON.parse(readFileSync(jwt.jwksFile, 'utf8')) as { keys?: unknown };
    if (!Array.isArray(parsed.keys)) throw new Error(`auth.jwt.jwksFile: ${jwt.jwksFile} has no "keys" array`);
    jwks = createLocalJWKSet(parsed as Parameters<typeof createLocalJWKSet>[0]);
  }
  const remote =
    jwt?.jwksUrl || jwt?.oidcIssuer
      ? remoteKeySet({ jwksUrl: jwt.jwksUrl, oidcIssuer: jwt.oidcIssuer, cacheMaxAgeMs: jwt.jwksCacheMaxAge * 1000, cooldownMs: jwt.jwksCooldown * 1000, timeoutMs: 5000 })
      : undefined;
  const configured = !!(secret || keys.length || jwks || remote);
  // static users (MQTT user name + password) are credentials too, and so is the app's connect hook:
  // with them, anonymous is opt-in
  const credentials = configured || auth.users.length > 0 || hooked;
  const allowAnonymous = auth.allowAnonymous ?? !credentials;
  if (auth.anonymous?.admin) throw new Error('auth.anonymous.admin: the admin grant (server API) needs credentials; it cannot be given to anonymous clients');
  const anonymousGrants: Grants = auth.anonymous ? toGrants(grantsSchema.parse(auth.anonymous)) : credentials ? DENY_ALL : ALLOW_ALL;
  const anonymous: Principal = { id: 'anonymous', kind: 'anonymous', grants: anonymousGrants };
  const claim = jwt?.claim ?? 'omnipush';
  const verifyOpts = { issuer: jwt?.issuer ?? jwt?.oidcIssuer, audience: jwt?.audience };
  const maxLifetimeMs = jwt?.maxLifetime !== undefined ? jwt.maxLifetime * 1000 : undefined;
  const verified = new VerifiedTokens(jwt?.verifiedCache ?? 0, (jwt?.verifiedCacheTtl ?? 0) * 1000);

  async function verify(token: string): Promise<JWTPayload> {
    let header: { alg?: unknown };
    try {
      header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown };
    } catch {
      throw new OmnipushError('unauthorized', 'token is malformed');
    }
    const alg = header.alg;
    if (alg === 'HS256' && secret) return (await jwtVerify(token, secret, { ...verifyOpts, algorithms: ['HS256'] })).payload;
    const matching = keys.filter((k) => k.alg === alg);
    let last: unknown;
    for (const k of matching) {
      try {
        return (await jwtVerify(token, k.key, { ...verifyOpts, algorithms: [k.alg] })).payload;
      } catch (e) {
        last = e;
        if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) throw e;
      }
    }
    if (jwks && (alg === 'RS256' || alg === 'ES256' || alg === 'EdDSA')) {
      return (await jwtVerify(token, jwks, { ...verifyOpts, algorithms: ['RS256', 'ES256', 'EdDSA'] })).payload;
    }
    if (remote && (alg === 'RS256' || alg === 'ES256' || alg === 'EdDSA')) {
      return (await jwtVerify(token, remote, { ...verifyOpts, algorithms: ['RS256', 'ES256', 'EdDSA'] })).payload;
    }
    if (last) throw last;
    throw new OmnipushError('unauthorized', typeof alg === 'string' ? `token algorithm ${alg} is not accepted here` : 'token is malformed');
  }

  return {
    configured,
    async authenticate(token) {
      if (token === undefined || token === '') {
        if (allowAnonymous) return anonymous;
        throw new OmnipushError('unauthorized', 'credentials required: send a bearer token');
      }
      if (!configured) throw new OmnipushError('unauthorized', 'this server accepts no tokens (no JWT key configured)');
      const now = Date.now();
      const known = verified.get(token, now);
      if (known) return known;
      let payload: JWTPayload;
      try {
        payload = await verify(token);
      } catch (e) {
        if (e instanceof OmnipushError) throw e;
        throw new OmnipushError('unauthorized', explain(e));
      }
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new OmnipushError('unauthorized', 'token has no "sub" claim');
      if (maxLifetimeMs !== undefined) {
        if (typeof payload.exp !== 'number') throw new OmnipushError('unauthorized', 'token has no "exp" claim; this server only accepts tokens that expire');
        if (payload.exp * 1000 - Date.now() > maxLifetimeMs) {
          throw new OmnipushError('unauthorized', `token expires too far ahead; this server accepts tokens valid for at most ${maxLifetimeMs / 1000} s`);
        }
      }
      const raw = payload[claim];
      let grants: Grants;
      if (raw === undefined) grants = DENY_ALL;
      else {
        const parsed = grantsSchema.safeParse(raw);
        if (!parsed.success) throw new OmnipushError('unauthorized', `token claim "${claim}" is not valid: ${parsed.error.issues[0]?.message ?? 'bad shape'}`);
        try {
          grants = toGrants(parsed.data);
        } catch (e) {
          throw new OmnipushError('unauthorized', `token claim "${claim}" holds a bad filter: ${(e as Error).message}`);
        }
      }
      const p: Principal = { id: payload.sub, kind: 'token', grants };
      if (typeof payload.exp === 'number') p.expiresAt = payload.exp * 1000;
      if (maxInfoBytes > 0 && payload.info !== undefined) p.presenceInfo = presenceInfoOf(payload.info, maxInfoBytes, 'token claim "info"', 'unauthorized');
      verified.put(token, p, now);
      return p;
    },
  };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/i;

/**
 * Secure default (as Mosquitto 2 does): without credentials configured, the server only binds to
 * loopback unless anonymous access is explicitly allowed.
 */
export function checkBindSafety(config: Config): void {
  const auth = config.auth;
  const configured = !!(auth.jwt?.secret || auth.jwt?.publicKeys.length || auth.jwt?.jwksFile || auth.jwt?.jwksUrl || auth.jwt?.oidcIssuer || config.hooks.connect.url) || auth.users.length > 0;
  const hosts = [config.http.host];
  if (config.mqtt.enabled && config.mqtt.host) hosts.push(config.mqtt.host);
  for (const host of hosts) {
    if (!LOOPBACK.test(host) && !configured && auth.allowAnonymous !== true) {
      throw new Error(
        `refusing to listen on ${host} with no authentication configured: ` +
          'configure auth.jwt (a secret or public keys) or auth.users, or set auth.allowAnonymous: true to accept anonymous clients from the network',
      );
    }
  }
}
