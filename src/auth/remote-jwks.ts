import { createRemoteJWKSet, type JWTVerifyGetKey } from 'jose';

export interface RemoteJwksOptions {
  jwksUrl?: string;
  oidcIssuer?: string;
  /** ms a fetched key set is used before it is fetched again */
  cacheMaxAgeMs: number;
  /** ms between two fetches caused by an unknown `kid` */
  cooldownMs: number;
  /** ms a fetch may take */
  timeoutMs: number;
}

/** The issuer's discovery document URL (OpenID Connect Discovery 1.0 §4). */
function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

async function jwksUriOf(issuer: string, timeoutMs: number): Promise<string> {
  const url = discoveryUrl(issuer);
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  const doc = (await res.json()) as { jwks_uri?: unknown; issuer?: unknown };
  if (typeof doc.jwks_uri !== 'string') throw new Error(`${url} names no jwks_uri`);
  // §4.3: the document must be the issuer's own
  if (typeof doc.issuer === 'string' && doc.issuer.replace(/\/+$/, '') !== issuer.replace(/\/+$/, '')) {
    throw new Error(`${url} is for issuer ${doc.issuer}, not ${issuer}`);
  }
  return doc.jwks_uri;
}

/**
 * Keys fetched from a JWKS URL, or from the one an OIDC issuer's discovery document names. jose
 * keeps the set, fetches it again when it is older than `cacheMaxAgeMs`, and when a token names a
 * `kid` it does not hold — at most once per `cooldownMs`, so forged `kid`s cannot flood the issuer.
 * The discovery document is read on first use (the issuer may be down while the server starts)
 * and again after a failure.
 */
export function remoteKeySet(o: RemoteJwksOptions): JWTVerifyGetKey {
  const build = (uri: string) => createRemoteJWKSet(new URL(uri), { cacheMaxAge: o.cacheMaxAgeMs, cooldownDuration: o.cooldownMs, timeoutDuration: o.timeoutMs });
  if (o.jwksUrl) return build(o.jwksUrl);
  const issuer = o.oidcIssuer!;
  let set: Promise<JWTVerifyGetKey> | undefined;
  return async (header, token) => {
    set ??= jwksUriOf(issuer, o.timeoutMs).then(build, (e: unknown) => {
      set = undefined;
      throw e;
    });
    return (await set)(header, token);
  };
}
