import { createECDH, createPrivateKey, sign, type KeyObject } from 'node:crypto';

/** A VAPID key pair as push services and browsers see it: raw P-256 keys, base64url. */
export interface VapidKeys {
  /** 65-byte uncompressed point, base64url (the `applicationServerKey` browsers subscribe with). */
  publicKey: string;
  /** 32-byte scalar, base64url. */
  privateKey: string;
}

/** A fresh key pair. */
export function generateVapidKeys(): VapidKeys {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { publicKey: ecdh.getPublicKey().toString('base64url'), privateKey: padScalar(ecdh.getPrivateKey()).toString('base64url') };
}

/** OpenSSL may return a private scalar shorter than 32 bytes when it has leading zeros. */
function padScalar(d: Buffer): Buffer {
  return d.length >= 32 ? d : Buffer.concat([Buffer.alloc(32 - d.length), d]);
}

/** Checks a configured or stored pair: right lengths, on the curve, and the public key belongs to the private one. */
export function checkVapidKeys(keys: VapidKeys): void {
  const pub = Buffer.from(keys.publicKey, 'base64url');
  const priv = Buffer.from(keys.privateKey, 'base64url');
  if (pub.length !== 65 || pub[0] !== 4) throw new Error('webpush.publicKey must be a base64url uncompressed P-256 point (65 bytes)');
  if (priv.length !== 32) throw new Error('webpush.privateKey must be a base64url P-256 private key (32 bytes)');
  const ecdh = createECDH('prime256v1');
  try {
    ecdh.setPrivateKey(priv);
  } catch {
    throw new Error('webpush.privateKey is not a valid P-256 private key');
  }
  if (!ecdh.getPublicKey().equals(pub)) throw new Error('webpush.publicKey does not belong to webpush.privateKey');
}

/**
 * Push services reach the operator through the subject, and reject requests whose subject is
 * neither a `mailto:` address nor an `https:` URL (RFC 8292 section 2.1).
 */
export function checkVapidSubject(subject: string): void {
  if (/^mailto:[^@\s]+@[^@\s]+$/.test(subject)) return;
  if (subject.startsWith('https://')) {
    try {
      new URL(subject);
      return;
    } catch {
      /* falls through */
    }
  }
  throw new Error(`webpush.subject must be a mailto: address or an https: URL, not ${JSON.stringify(subject)}`);
}

interface CachedHeader {
  value: string;
  /** ms; the header is renewed after this */
  renewAt: number;
}

/** JWT lifetime: push services refuse `exp` more than 24 h ahead; 12 h leaves room for clock skew. */
const TOKEN_LIFETIME_S = 12 * 3600;
/** Renewed this long before it expires, so a request never carries a token about to lapse in flight. */
const RENEW_BEFORE_S = 3600;

/**
 * Signs VAPID tokens (ES256 JWT, RFC 8292) and caches the `Authorization` header per audience
 * (push-service origin): one signature per origin per ~11 hours instead of one per message.
 */
export class VapidSigner {
  private readonly key: KeyObject;
  private readonly cache = new Map<string, CachedHeader>();
  private readonly header = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ES256' })).toString('base64url');

  constructor(
    readonly keys: VapidKeys,
    readonly subject: string,
    private readonly now: () => number = Date.now,
  ) {
    checkVapidKeys(keys);
    checkVapidSubject(subject);
    const pub = Buffer.from(keys.publicKey, 'base64url');
    this.key = createPrivateKey({
      key: { kty: 'EC', crv: 'P-256', d: keys.privateKey, x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') },
      format: 'jwk',
    });
  }

  /** `vapid t=<jwt>, k=<public key>` for requests to `audience` (an origin: scheme://host[:port]). */
  authorization(audience: string): string {
    const now = this.now();
    const hit = this.cache.get(audience);
    if (hit && hit.renewAt > now) return hit.value;
    const exp = Math.floor(now / 1000) + TOKEN_LIFETIME_S;
    const claims = Buffer.from(JSON.stringify({ aud: audience, exp, sub: this.subject })).toString('base64url');
    const input = `${this.header}.${claims}`;
    // JWS ES256 wants the raw r||s form, not DER
    const sig = sign('sha256', Buffer.from(input), { key: this.key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    const value = `vapid t=${input}.${sig}, k=${this.keys.publicKey}`;
    this.cache.set(audience, { value, renewAt: (exp - RENEW_BEFORE_S) * 1000 });
    return value;
  }
}
