import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SignJWT, exportJWK, importPKCS8 } from 'jose';
import { checkBindSafety, createAuthenticator } from '../src/auth/authenticator.js';
import { mintToken } from '../src/auth/token.js';
import { parseConfig } from '../src/config/schema.js';
import { OmnipushError } from '../src/core/errors.js';
import { tempDir } from './helpers/server.js';

const claim = { omnipush: { publish: ['a/#'], subscribe: ['a/#'] } };
const dir = tempDir('omnipush-auth-');
after(() => dir.remove());

function pair(type: 'rsa' | 'ec' | 'ed25519') {
  const kp =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
        : generateKeyPairSync('ed25519');
  return {
    publicPem: kp.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: kp.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

async function sign(alg: string, privatePem: string, claims: Record<string, unknown> = claim, kid?: string): Promise<string> {
  const key = await importPKCS8(privatePem, alg);
  return new SignJWT(claims).setProtectedHeader({ alg, ...(kid ? { kid } : {}) }).setSubject('dev').setExpirationTime('5m').sign(key);
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    assert.ok(e instanceof OmnipushError, String(e));
    assert.equal(e.code, 'unauthorized');
    return e.message;
  }
}

describe('authenticator', () => {
  it('HS256: good, expired, wrong secret, malformed, no sub, bad claim', async () => {
    const secret = 'sixteen-chars-secret!';
    const auth = await createAuthenticator(parseConfig({ auth: { jwt: { secret } } }).auth);
    const good = await mintToken({ secret, sub: 'alice', grants: { publish: ['a/#'], subscribe: [], deny: { publish: ['a/x'], subscribe: [] } } });
    const p = await auth.authenticate(good);
    assert.equal(p.id, 'alice');
    assert.deepEqual(p.grants.publish, { allow: ['a/#'], deny: ['a/x'] });
    assert.ok(p.expiresAt! > Date.now());
    const enc = new TextEncoder().encode(secret);
    const expired = await new SignJWT(claim).setProtectedHeader({ alg: 'HS256' }).setSubject('a').setExpirationTime(Math.floor(Date.now() / 1000) - 10).sign(enc);
    assert.match(await reason(auth.authenticate(expired)), /expired/);
    const wrong = await mintToken({ secret: 'another-secret-16chars', sub: 'a', grants: { publish: [], subscribe: [], deny: { publish: [], subscribe: [] } } });
    assert.match(await reason(auth.authenticate(wrong)), /signature/);
    assert.match(await reason(auth.authenticate('abc.def.ghi')), /malformed/);
    const noSub = await new SignJWT(claim).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(enc);
    assert.match(await reason(auth.authenticate(noSub)), /sub/);
    const badClaim = await new SignJWT({ omnipush: { publish: ['a/#/b'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject('a').sign(enc);
    assert.match(await reason(auth.authenticate(badClaim)), /filter/);
    const extraKey = await new SignJWT({ omnipush: { publish: [], owner: true } }).setProtectedHeader({ alg: 'HS256' }).setSubject('a').sign(enc);
    assert.match(await reason(auth.authenticate(extraKey)), /claim/);
    // `admin` is a grant (the server API), off unless the claim says true
    const admin = await new SignJWT({ omnipush: { admin: true } }).setProtectedHeader({ alg: 'HS256' }).setSubject('a').sign(enc);
    assert.equal((await auth.authenticate(admin)).grants.admin, true);
    const plain = await new SignJWT({ omnipush: { publish: ['x'] } }).setProtectedHeader({ alg: 'HS256' }).setSubject('a').sign(enc);
    assert.equal((await auth.authenticate(plain)).grants.admin, undefined);
    const notBool = await new SignJWT({ omnipush: { admin: 'yes' } }).setProtectedHeader({ alg: 'HS256' }).setSubject('a').sign(enc);
    assert.match(await reason(auth.authenticate(notBool)), /claim/);
    assert.match(await reason(auth.authenticate(undefined)), /credentials required/);
  });

  it('RS256, ES256 and EdDSA with PEM keys (inline and as files), each key bound to its algorithm', async () => {
    const rsa = pair('rsa');
    const ec = pair('ec');
    const ed = pair('ed25519');
    const rsaFile = join(dir.path, 'rsa.pem');
    writeFileSync(rsaFile, rsa.publicPem);
    const auth = await createAuthenticator(parseConfig({ auth: { jwt: { publicKeys: [rsaFile, ec.publicPem, ed.publicPem] } } }).auth);
    assert.equal((await auth.authenticate(await sign('RS256', rsa.privatePem))).id, 'dev');
    assert.equal((await auth.authenticate(await sign('ES256', ec.privatePem))).id, 'dev');
    assert.equal((await auth.authenticate(await sign('EdDSA', ed.privatePem))).id, 'dev');
    const other = pair('rsa');
    assert.match(await reason(auth.authenticate(await sign('RS256', other.privatePem))), /signature/);
    // algorithm confusion: an HS256 token "signed" with the RSA public key as secret
    const confused = await new SignJWT(claim).setProtectedHeader({ alg: 'HS256' }).setSubject('evil').sign(new TextEncoder().encode(rsa.publicPem));
    assert.notEqual(await reason(auth.authenticate(confused)), 'accepted');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`;
    assert.notEqual(await reason(auth.authenticate(none)), 'accepted');
  });

  it('verifies against a JWKS file', async () => {
    const ec = pair('ec');
    const jwk = await exportJWK((await import('node:crypto')).createPublicKey(ec.publicPem));
    const file = join(dir.path, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] }));
    const auth = await createAuthenticator(parseConfig({ auth: { jwt: { jwksFile: file } } }).auth);
    assert.equal((await auth.authenticate(await sign('ES256', ec.privatePem, claim, 'k1'))).id, 'dev');
    assert.notEqual(await reason(auth.authenticate(await sign('ES256', pair('ec').privatePem, claim, 'k1'))), 'accepted');
  });

  it('anonymous rules: everything without auth, nothing (or configured grants) with auth', async () => {
    const open = await createAuthenticator(parseConfig({}).auth);
    assert.deepEqual((await open.authenticate(undefined)).grants.publish.allow, ['#']);
    const closed = await createAuthenticator(parseConfig({ auth: { jwt: { secret: 'sixteen-chars-secret!' } } }).auth);
    assert.match(await reason(closed.authenticate(undefined)), /credentials required/);
    const mixed = await createAuthenticator(parseConfig({ auth: { jwt: { secret: 'sixteen-chars-secret!' }, allowAnonymous: true, anonymous: { subscribe: ['public/#'] } } }).auth);
    const anon = await mixed.authenticate(undefined);
    assert.deepEqual(anon.grants.subscribe.allow, ['public/#']);
    assert.deepEqual(anon.grants.publish.allow, []);
  });

  it('refuses to bind beyond loopback without auth unless anonymous access is explicit', () => {
    assert.doesNotThrow(() => checkBindSafety(parseConfig({ http: { host: '127.0.0.1' } })));
    assert.doesNotThrow(() => checkBindSafety(parseConfig({ http: { host: '::1' } })));
    assert.throws(() => checkBindSafety(parseConfig({ http: { host: '0.0.0.0' } })), /no authentication configured/);
    assert.doesNotThrow(() => checkBindSafety(parseConfig({ http: { host: '0.0.0.0' }, auth: { allowAnonymous: true } })));
    assert.doesNotThrow(() => checkBindSafety(parseConfig({ http: { host: '0.0.0.0' }, auth: { jwt: { secret: 'sixteen-chars-secret!' } } })));
  });
});
