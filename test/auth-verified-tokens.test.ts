import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { VerifiedTokens } from '../src/auth/verified-tokens.js';
import type { Principal } from '../src/core/grants.js';
import { ALLOW_ALL } from '../src/core/grants.js';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';

const SECRET = 'verified-tokens-secret-of-enough-length';

async function token(sub: string, publish: string[], expSeconds: number): Promise<string> {
  return new SignJWT({ omnipush: { publish, subscribe: ['#'] } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expSeconds)
    .sign(new TextEncoder().encode(SECRET));
}

async function publishStatus(server: RunningServer, t: string, topic: string): Promise<number> {
  const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${t}` }, body: JSON.stringify({ topic, data: 'x' }) });
  await r.arrayBuffer();
  return r.status;
}

const principal = (id: string, expiresAt?: number): Principal => ({ id, kind: 'token', grants: ALLOW_ALL, ...(expiresAt === undefined ? {} : { expiresAt }) });

describe('VerifiedTokens', () => {
  it('answers a remembered token until its exp or its time to live, whichever is first', () => {
    const v = new VerifiedTokens(10, 60_000);
    const p = principal('a', 5_000);
    v.put('t1', p, 1_000);
    assert.equal(v.get('t1', 4_999), p);
    assert.equal(v.get('t1', 5_000), undefined, 'past exp');
    const q = principal('b', 1_000_000);
    v.put('t2', q, 1_000);
    assert.equal(v.get('t2', 60_999), q);
    assert.equal(v.get('t2', 61_000), undefined, 'past the time to live');
    assert.equal(v.get('never-put', 0), undefined);
  });

  it('keeps at most its size (the oldest goes), nothing with size 0, and no overlong token', () => {
    const v = new VerifiedTokens(2, 60_000);
    v.put('t1', principal('1'), 0);
    v.put('t2', principal('2'), 0);
    v.put('t3', principal('3'), 0);
    assert.equal(v.get('t1', 1), undefined);
    assert.equal(v.get('t2', 1)?.id, '2');
    assert.equal(v.get('t3', 1)?.id, '3');
    const off = new VerifiedTokens(0, 60_000);
    off.put('t', principal('x'), 0);
    assert.equal(off.get('t', 1), undefined);
    const long = 'x'.repeat(5000);
    v.put(long, principal('l'), 0);
    assert.equal(v.get(long, 1), undefined);
  });
});

describe('auth.jwt.verifiedCache', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } } });
  });
  after(() => server.close());

  it('refuses a remembered token once it expires', async () => {
    const t = await token('alice', ['#'], 2);
    assert.equal(await publishStatus(server, t, 'cache/a'), 200);
    assert.equal(await publishStatus(server, t, 'cache/a'), 200);
    // the time to live (60 s) is far off: only the token's exp can end it this soon
    await waitFor(async () => (await publishStatus(server, t, 'cache/a')) === 401, 'the expired token to be refused', 10_000);
  });

  it('keeps each token to its own grants, also for one subject', async () => {
    const onlyA = await token('bob', ['a/#'], 3600);
    const onlyB = await token('bob', ['b/#'], 3600);
    for (let i = 0; i < 2; i++) {
      assert.equal(await publishStatus(server, onlyA, 'a/x'), 200);
      assert.equal(await publishStatus(server, onlyB, 'b/x'), 200);
      assert.equal(await publishStatus(server, onlyA, 'b/x'), 403);
      assert.equal(await publishStatus(server, onlyB, 'a/x'), 403);
    }
  });

  it('never remembers a token that failed', async () => {
    const good = await token('carol', ['#'], 3600);
    const forged = `${good.slice(0, good.lastIndexOf('.') + 1)}${'A'.repeat(43)}`;
    for (let i = 0; i < 2; i++) assert.equal(await publishStatus(server, forged, 'cache/c'), 401);
    assert.equal(await publishStatus(server, good, 'cache/c'), 200);
  });
});
