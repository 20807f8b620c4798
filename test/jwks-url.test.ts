import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import type { RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, waitFor } from './helpers/server.js';

interface Key {
  kid: string;
  priv: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  jwk: JWK;
}

async function makeKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { kid, priv: privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

/** An identity provider: a JWKS at /jwks.json and OIDC discovery, counting how often the keys are fetched. */
class Issuer {
  keys: Key[] = [];
  fetches = 0;
  lastFetch = 0;
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: this.url, jwks_uri: `${this.url}/jwks.json` }));
        return;
      }
      if (req.url === '/jwks.json') {
        this.fetches++;
        this.lastFetch = Date.now();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys: this.keys.map((k) => k.jwk) }));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

function sign(key: Key, opts: { sub?: string; iss?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ omnipush: { subscribe: ['k/#'], publish: ['k/#'] } })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setSubject(opts.sub ?? 'kim')
    .setIssuedAt()
    .setExpirationTime('1h');
  if (opts.iss) jwt.setIssuer(opts.iss);
  return jwt.sign(key.priv);
}

async function poll(server: RunningServer, token: string): Promise<{ status: number; message?: string }> {
  const r = await fetch(`${server.http}/v1/poll?topic=k/x&timeout=0`, { headers: { authorization: `Bearer ${token}` } });
  const body = r.status === 200 ? undefined : ((await r.json()) as { error: { message: string } });
  return { status: r.status, message: body?.error.message };
}

describe('JWKS by URL', () => {
  const issuer = new Issuer();
  let server: RunningServer;
  let k1: Key;
  let k2: Key;
  before(async () => {
    await issuer.start();
    k1 = await makeKey('k1');
    k2 = await makeKey('k2');
    issuer.keys = [k1];
    server = await startTestServer({ auth: { jwt: { jwksUrl: `${issuer.url}/jwks.json`, jwksCooldown: 1 } } });
  });
  after(async () => {
    await server.close();
    await issuer.stop();
  });

  it('verifies a token with a key from the URL, over HTTP and MQTT, fetching the set once', async () => {
    assert.equal((await poll(server, await sign(k1))).status, 200);
    const c = await RawClient.open(server, 5);
    try {
      assert.equal((await c.connect({ clientId: 'kim-1', username: 'kim', password: Buffer.from(await sign(k1)) })).reasonCode, 0);
    } finally {
      c.close();
    }
    assert.equal(issuer.fetches, 1);
  });

  it('a rotation: a token with the new kid makes the set be fetched again; the retired key no longer verifies', async () => {
    issuer.keys = [k2];
    // the cooldown since the last fetch must have passed for an unknown kid to cause a fetch
    await waitFor(() => Date.now() - issuer.lastFetch > 1100, 'the cooldown to pass', 5000);
    const before = issuer.fetches;
    assert.equal((await poll(server, await sign(k2))).status, 200);
    assert.equal(issuer.fetches, before + 1);
    const old = await poll(server, await sign(k1));
    assert.equal(old.status, 401);
  });

  it('forged kids cannot make it fetch more than once per cooldown', async () => {
    const forged = await makeKey('forged');
    await waitFor(() => Date.now() - issuer.lastFetch > 1100, 'the cooldown to pass', 5000);
    const before = issuer.fetches;
    // signed first, then sent together: on a loaded machine signing one by one spread the requests past the cooldown
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => sign({ ...forged, kid: `forged-${i}` })));
    const results = await Promise.all(tokens.map((t) => poll(server, t)));
    for (const r of results) {
      assert.equal(r.status, 401);
      assert.match(r.message ?? '', /no key matches|not valid/);
    }
    assert.ok(issuer.fetches - before <= 1, `${issuer.fetches - before} fetches for 20 unknown kids`);
  });
});

describe('JWKS from an OIDC issuer', () => {
  const issuer = new Issuer();
  let server: RunningServer;
  let key: Key;
  before(async () => {
    await issuer.start();
    key = await makeKey('oidc-1');
    issuer.keys = [key];
    server = await startTestServer({ auth: { jwt: { oidcIssuer: issuer.url } } });
  });
  after(async () => {
    await server.close();
    await issuer.stop();
  });

  it('finds the keys through discovery, and takes the issuer as the required `iss`', async () => {
    assert.equal((await poll(server, await sign(key, { iss: issuer.url }))).status, 200);
    const other = await poll(server, await sign(key, { iss: 'https://elsewhere.example' }));
    assert.equal(other.status, 401);
    assert.match(other.message ?? '', /"iss"/);
  });

  it('an issuer that is down: tokens are refused with 401, the server keeps serving', async () => {
    await issuer.stop();
    const s = await startTestServer({ auth: { jwt: { oidcIssuer: issuer.url } } });
    try {
      const r = await poll(s, await sign(key, { iss: issuer.url }));
      assert.equal(r.status, 401);
      assert.equal((await fetch(`${s.http}/healthz`)).status, 200);
    } finally {
      await s.close();
    }
  });
});
