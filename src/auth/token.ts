import { SignJWT } from 'jose';
import type { GrantsConfig } from '../config/schema.js';

export interface MintOptions {
  secret: string;
  sub: string;
  grants: GrantsConfig;
  /** jose time span (`1h`, `30m`) or seconds. Default 1h. */
  expiresIn?: string | number;
  issuer?: string;
  audience?: string;
  claim?: string;
}

/** Mints an HS256 token carrying grants, as `omnipush token` prints it (for testing and tooling). */
export async function mintToken(o: MintOptions): Promise<string> {
  const jwt = new SignJWT({ [o.claim ?? 'omnipush']: o.grants }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(o.sub).setIssuedAt();
  const exp = o.expiresIn ?? '1h';
  jwt.setExpirationTime(typeof exp === 'number' ? Math.floor(Date.now() / 1000) + exp : exp);
  if (o.issuer) jwt.setIssuer(o.issuer);
  if (o.audience) jwt.setAudience(o.audience);
  return jwt.sign(new TextEncoder().encode(o.secret));
}
