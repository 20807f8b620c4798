import assert from 'node:assert/strict';
import { createECDH } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compactVerify, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { encryptWebPush, MAX_PLAINTEXT, MAX_PUSH_BODY } from '../src/transports/webpush/ece.js';
import { pushJobFor, replaceKeyFor } from '../src/transports/webpush/payload.js';
import { checkVapidSubject, generateVapidKeys, VapidSigner } from '../src/transports/webpush/vapid.js';
import type { StoredMessage } from '../src/core/message.js';
import { decryptPushBody, verifyVapid } from './helpers/push-service.js';
import { REPO_ROOT } from './helpers/server.js';

const b64 = (s: string) => Buffer.from(s, 'base64url');
const vector = <T>(name: string) => JSON.parse(readFileSync(join(REPO_ROOT, 'test/vectors', name), 'utf8')) as T;

interface Rfc8291 {
  plaintext_utf8: string;
  as_private: string;
  as_public: string;
  ua_public: string;
  ua_private: string;
  salt: string;
  auth_secret: string;
  body: string;
  body_length: number;
}

describe('RFC 8291 encryption', () => {
  const v = vector<Rfc8291>('rfc8291.json');

  it('gives the exact body of appendix A for its salt and key pair', () => {
    const body = encryptWebPush(Buffer.from(v.plaintext_utf8), b64(v.ua_public), b64(v.auth_secret), { salt: b64(v.salt), senderPrivateKey: b64(v.as_private) });
    assert.equal(body.length, v.body_length);
    assert.equal(body.toString('base64url'), v.body);
  });

  it('the test decryptor (independent code) reads the appendix A body, so it can judge ours', () => {
    assert.equal(decryptPushBody(b64(v.body), b64(v.ua_private), b64(v.ua_public), b64(v.auth_secret)).toString('utf8'), v.plaintext_utf8);
  });

  it('uses a fresh key and salt per message, and the largest plaintext fits 4096 bytes', () => {
    const ua = createECDH('prime256v1');
    ua.generateKeys();
    const auth = Buffer.alloc(16, 7);
    const a = encryptWebPush(Buffer.from('x'), ua.getPublicKey(), auth);
    const b = encryptWebPush(Buffer.from('x'), ua.getPublicKey(), auth);
    assert.notDeepEqual(a.subarray(0, 16), b.subarray(0, 16), 'salt');
    assert.notDeepEqual(a.subarray(21, 86), b.subarray(21, 86), 'sender key');
    const big = encryptWebPush(Buffer.alloc(MAX_PLAINTEXT, 0x61), ua.getPublicKey(), auth);
    assert.equal(big.length, MAX_PUSH_BODY);
    assert.equal(decryptPushBody(big, ua.getPrivateKey(), ua.getPublicKey(), auth).length, MAX_PLAINTEXT);
    assert.throws(() => encryptWebPush(Buffer.alloc(MAX_PLAINTEXT + 1), ua.getPublicKey(), auth), RangeError);
  });
});

describe('RFC 8292 VAPID', () => {
  interface Rfc8292 {
    authorization: string;
    jwt_claims: { aud: string; exp: number; sub: string };
    public_key_jwk: { kty: string; crv: string; x: string; y: string };
  }
  const v = vector<Rfc8292>('rfc8292.json');

  it('the example token verifies with the example key (ES256, raw r||s), with a clock before its exp', async () => {
    const m = /^vapid t=([^,]+), k=(\S+)$/.exec(v.authorization)!;
    assert.ok(m);
    const key = await importJWK(v.public_key_jwk, 'ES256');
    const { payload } = await jwtVerify(m[1], key, { algorithms: ['ES256'], currentDate: new Date((v.jwt_claims.exp - 60) * 1000) });
    assert.deepEqual(payload, v.jwt_claims);
    const jwk = v.public_key_jwk;
    assert.equal(m[2], Buffer.concat([Buffer.from([4]), b64(jwk.x), b64(jwk.y)]).toString('base64url'), 'k is the same key as the JWK');
    // one flipped signature bit must fail
    const parts = m[1].split('.');
    const sig = b64(parts[2]);
    sig[5] ^= 1;
    await assert.rejects(compactVerify(`${parts[0]}.${parts[1]}.${sig.toString('base64url')}`, key));
  });

  it('our header verifies the same way and is cached per audience until near expiry', async () => {
    let now = Date.UTC(2026, 0, 1);
    const keys = generateVapidKeys();
    const s = new VapidSigner(keys, 'mailto:ops@example.com', () => now);
    const h1 = s.authorization('https://push.example.net');
    const claims = await verifyVapid(h1, 'https://push.example.net', now);
    assert.equal(claims.sub, 'mailto:ops@example.com');
    assert.ok(claims.exp * 1000 - now <= 24 * 3600_000);
    assert.equal(decodeProtectedHeader(/t=([^,]+)/.exec(h1)![1]).alg, 'ES256');
    assert.equal(s.authorization('https://push.example.net'), h1, 'cached');
    assert.notEqual(s.authorization('https://other.example'), h1, 'one per audience');
    now += 11.5 * 3600_000;
    const h2 = s.authorization('https://push.example.net');
    assert.notEqual(h2, h1, 'renewed before it lapses');
    await verifyVapid(h2, 'https://push.example.net', now);
  });

  it('accepts mailto: and https: subjects only', () => {
    checkVapidSubject('mailto:ops@example.com');
    checkVapidSubject('https://example.com/contact');
    for (const bad of ['ops@example.com', 'http://example.com', 'mailto:', 'https://', '']) assert.throws(() => checkVapidSubject(bad), /webpush.subject/, bad);
  });
});

describe('push payloads', () => {
  const msg = (over: Partial<StoredMessage>): StoredMessage => ({ topic: 'news/a', payload: Buffer.from('hi'), seq: 5, cursor: 'e_5', publishedAt: 1000, retain: false, ...over });

  it('takes notification fields from properties first, then from a JSON object payload', () => {
    const j = pushJobFor(msg({ payload: Buffer.from(JSON.stringify({ title: 'T', body: 'B', url: 'https://x.example/1' })), properties: [['title', 'P']] }), 60, 0);
    const p = JSON.parse(j.full!) as Record<string, unknown>;
    assert.equal(p.title, 'P');
    assert.equal(p.body, 'B');
    assert.equal(p.url, 'https://x.example/1');
    assert.equal(p.cursor, 'e_5');
    assert.equal(j.ttl, 60);
    assert.equal(j.urgency, 'normal');
  });

  it('flags a message too big for a push message and keeps its pointer', () => {
    const j = pushJobFor(msg({ payload: Buffer.alloc(5000, 0x61), properties: [['title', 'Big'], ['urgency', 'high'], ['push-topic', 'a key with spaces']] }), 60, 0);
    assert.equal(j.full, null);
    assert.deepEqual(JSON.parse(j.small), { topic: 'news/a', cursor: 'e_5', publishedAt: 1000, title: 'Big', truncated: true, since: 'e_4' });
    assert.equal(j.urgency, 'high');
    assert.match(j.replaceKey!, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(replaceKeyFor('short_key-1'), 'short_key-1');
  });

  it('TTL is what is left of the message ttl', () => {
    assert.equal(pushJobFor(msg({ expiresAt: 31_000 }), 60, 1000).ttl, 30);
    assert.equal(pushJobFor(msg({ expiresAt: 500 }), 60, 1000).ttl, 0);
  });
});
