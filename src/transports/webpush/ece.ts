import { createCipheriv, createECDH, createHmac, randomBytes } from 'node:crypto';

/**
 * RFC 8291 message encryption with the RFC 8188 `aes128gcm` content coding, in one record
 * (Web Push bodies are at most 4096 bytes, so one record always suffices).
 */

/** Bytes the coding adds around a plaintext: header (salt 16, rs 4, idlen 1, key 65), delimiter 1, tag 16. */
export const ECE_OVERHEAD = 16 + 4 + 1 + 65 + 1 + 16;
/** The largest body push services must accept (RFC 8030 section 7.2). */
export const MAX_PUSH_BODY = 4096;
/** The largest plaintext that still fits {@link MAX_PUSH_BODY}. */
export const MAX_PLAINTEXT = MAX_PUSH_BODY - ECE_OVERHEAD;

const KEY_INFO_PREFIX = Buffer.from('WebPush: info\0');
const CEK_INFO = Buffer.from('Content-Encoding: aes128gcm\0\x01');
const NONCE_INFO = Buffer.from('Content-Encoding: nonce\0\x01');
const ONE = Buffer.from([1]);

export interface EncryptOptions {
  /** Fixed salt (tests only: RFC 8291 appendix A); random otherwise. */
  salt?: Buffer;
  /** Fixed application-server private key (tests only); a fresh key pair per message otherwise. */
  senderPrivateKey?: Buffer;
}

function hmac(key: Buffer, ...parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * Encrypts `plaintext` for a browser whose subscription holds `uaPublic` (p256dh, 65 bytes
 * uncompressed) and `authSecret` (16 bytes). Throws on a key that is not a P-256 point.
 */
export function encryptWebPush(plaintext: Buffer, uaPublic: Buffer, authSecret: Buffer, opts: EncryptOptions = {}): Buffer {
  if (plaintext.length > MAX_PLAINTEXT) throw new RangeError(`plaintext is ${plaintext.length} bytes; at most ${MAX_PLAINTEXT} fit a push message`);
  // A new key pair for every message, as RFC 8291 section 2 has it ("generates an ECDH key pair
  // and a random salt" per message). It costs a key generation per send; sharing one across a
  // fan-out would be cheaper but would tie the messages together.
  const ecdh = createECDH('prime256v1');
  if (opts.senderPrivateKey) ecdh.setPrivateKey(opts.senderPrivateKey);
  else ecdh.generateKeys();
  const asPublic = ecdh.getPublicKey();
  const ecdhSecret = ecdh.computeSecret(uaPublic);
  const salt = opts.salt ?? randomBytes(16);

  // HKDF with one output block each time, written out: every output here is ≤ 32 bytes, so
  // expand is a single HMAC (T(1) = HMAC(PRK, info || 0x01)).
  const prkKey = hmac(authSecret, ecdhSecret);
  const ikm = hmac(prkKey, KEY_INFO_PREFIX, uaPublic, asPublic, ONE);
  const prk = hmac(salt, ikm);
  const cek = hmac(prk, CEK_INFO).subarray(0, 16);
  const nonce = hmac(prk, NONCE_INFO).subarray(0, 12);

  const header = Buffer.allocUnsafe(16 + 4 + 1 + 65);
  salt.copy(header, 0);
  header.writeUInt32BE(MAX_PUSH_BODY, 16);
  header[20] = 65;
  asPublic.copy(header, 21);

  const cipher = createCipheriv('aes-128-gcm', cek, nonce);
  // 0x02: the padding delimiter of the last (and only) record, no padding after it.
  const body = Buffer.concat([header, cipher.update(plaintext), cipher.update(Buffer.from([2])), cipher.final(), cipher.getAuthTag()]);
  return body;
}

/** Checks that a p256dh value is an uncompressed P-256 point; returns it decoded. */
export function parseUaPublicKey(p256dh: string): Buffer | null {
  const key = Buffer.from(p256dh, 'base64url');
  if (key.length !== 65 || key[0] !== 4) return null;
  try {
    // computeSecret rejects points not on the curve
    const probe = createECDH('prime256v1');
    probe.generateKeys();
    probe.computeSecret(key);
    return key;
  } catch {
    return null;
  }
}
