import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Config } from '../config/schema.js';
import type { Principal } from '../core/grants.js';
import { toGrants } from './authenticator.js';

/** Cost parameters of new hashes: 32 MiB of memory per check keeps offline guessing expensive. */
const N = 32768;
const R = 8;
const P = 1;
const KEY_BYTES = 32;

function derive(password: Buffer, salt: Buffer, o: { N: number; r: number; p: number }): Promise<Buffer> {
  const opts: ScryptOptions = { N: o.N, r: o.r, p: o.p, maxmem: 256 * o.N * o.r };
  return new Promise((resolve, reject) => scrypt(password, salt, KEY_BYTES, opts, (e, key) => (e ? reject(e) : resolve(key))));
}

/** `scrypt$N$r$p$<salt base64>$<hash base64>`, the form `auth.users[].passwordHash` takes. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(Buffer.from(password, 'utf8'), salt, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(h: string): ParsedHash | null {
  const parts = h.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [n, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], 'base64');
  const key = Buffer.from(parts[5], 'base64');
  if (!Number.isInteger(n) || n < 2 || (n & (n - 1)) !== 0 || !Number.isInteger(r) || r < 1 || !Number.isInteger(p) || p < 1) return null;
  if (salt.length < 8 || key.length < 16) return null;
  return { N: n, r, p, salt, key };
}

/** Checks a password against a hash in constant time. */
export async function verifyPassword(password: Buffer, hash: string): Promise<boolean> {
  const h = parseHash(hash);
  if (!h) return false;
  const key = await derive(password, h.salt, h);
  return key.length === h.key.length && timingSafeEqual(key, h.key);
}

/** The static users of `auth.users`, checked by username and password (MQTT CONNECT). */
export interface UserDirectory {
  has(username: string): boolean;
  /** The user's principal, or null when the password does not match. */
  verify(username: string, password: Buffer): Promise<Principal | null>;
}

export function createUserDirectory(users: Config['auth']['users']): UserDirectory {
  const byName = new Map<string, { hash: string; principal: Principal }>();
  for (const u of users) {
    if (!parseHash(u.passwordHash)) throw new Error(`auth.users: the passwordHash of ${JSON.stringify(u.username)} is not a valid scrypt hash (make one with \`omnipush passwd\`)`);
    byName.set(u.username, { hash: u.passwordHash, principal: { id: u.username, kind: 'user', grants: toGrants(u.grants) } });
  }
  return {
    has: (username) => byName.has(username),
    async verify(username, password) {
      const u = byName.get(username);
      if (!u) return null;
      return (await verifyPassword(password, u.hash)) ? u.principal : null;
    },
  };
}
