import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

const SECRET = 'a-test-secret-of-enough-length-1234';

async function token(claims: Record<string, unknown>, opts: { secret?: string; exp?: number | string; sub?: string | null } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (opts.sub !== null) jwt.setSubject(opts.sub ?? 'alice');
  jwt.setExpirationTime(opts.exp ?? '1h');
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

const chatOnly = { omnipush: { publish: ['chat/#'], subscribe: ['chat/#'], deny: { subscribe: ['chat/secret'] } } };

describe('auth over HTTP', () => {
  let server: RunningServer;
  let good: string;
  before(async () => {
    server = await startTestServer({ auth: { jwt: { secret: SECRET } } });
    good = await token(chatOnly);
  });
  after(() => server.close());

  const get = (path: string, tok?: string, headers: Record<string, string> = {}) =>
    fetch(`${server.http}${path}`, { headers: tok ? { authorization: `Bearer ${tok}`, ...headers } : headers });
  const pub = (topic: string, tok?: string) =>
    fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data: 'x' }), headers: tok ? { authorization: `Bearer ${tok}` } : {} });

  async function code(r: Response): Promise<string> {
    return ((await r.json()) as { error: { code: string } }).error.code;
  }

  it('accepts a good token for publish, SSE, long-poll and history', async () => {
    const r = await pub('chat/room1', good);
    assert.equal(r.status, 200);
    assert.equal((await get('/v1/history?topic=chat/%23', good)).status, 200);
    assert.equal((await get('/v1/poll?topic=chat/%23&timeout=0', good)).status, 200);
    const sse = await openRawSse(`${server.http}/v1/sse?topic=chat/room1`, { authorization: `Bearer ${good}` });
    assert.equal(sse.status, 200);
    sse.close();
  });

  it('answers 401 for missing, expired, wrongly signed and malformed tokens on every door', async () => {
    const expired = await token(chatOnly, { exp: Math.floor(Date.now() / 1000) - 60 });
    const wrongSig = await token(chatOnly, { secret: 'another-secret-that-is-long-enough' });
    const noSub = await token(chatOnly, { sub: null });
    const cases: Array<[string, string | undefined]> = [
      ['missing', undefined],
      ['expired', expired],
      ['wrong signature', wrongSig],
      ['malformed', 'not.a.jwt'],
      ['no sub', noSub],
    ];
    const messages = new Set<string>();
    for (const [what, tok] of cases) {
      for (const r of [await pub('chat/a', tok), await get('/v1/history?topic=chat/a', tok), await get('/v1/poll?topic=chat/a&timeout=0', tok), await get('/v1/sse?topic=chat/a', tok)]) {
        assert.equal(r.status, 401, `${what} → ${r.url}`);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
        const body = (await r.json()) as { error: { code: string; message: string } };
        assert.equal(body.error.code, 'unauthorized');
        messages.add(body.error.message);
      }
    }
    assert.ok(messages.size >= 3, `errors tell the cases apart: ${[...messages].join(' | ')}`);
    const badScheme = await get('/v1/history?topic=chat/a', undefined, { authorization: 'Basic abc' });
    assert.equal(badScheme.status, 401);
  });

  it('answers 403 for topics outside the grants on publish, SSE, long-poll and history', async () => {
    assert.equal(await code(await pub('news/x', good)), 'forbidden');
    for (const path of ['/v1/sse?topic=news/x', '/v1/poll?topic=news/x&timeout=0', '/v1/history?topic=news/x', '/v1/sse?topic=%23', '/v1/sse?topic=chat/secret', '/v1/poll?topic=chat/room&topic=other&timeout=0']) {
      const r = await get(path, good);
      assert.equal(r.status, 403, path);
      assert.equal(await code(r), 'forbidden', path);
    }
  });

  it('filters deliveries on a subscription that a deny filter overlaps', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=chat/%2B`, { authorization: `Bearer ${good}` });
    assert.equal(sse.status, 200);
    await pub('chat/secret', good);
    await pub('chat/open', good);
    await waitFor(() => sse.events().length >= 1, 'the allowed message');
    const hist = (await (await get('/v1/history?topic=chat/%2B', good)).json()) as { messages: Array<{ topic: string }> };
    sse.close();
    assert.deepEqual(
      sse.events().map((e) => e.data),
      ['x'],
    );
    assert.ok(hist.messages.every((m) => m.topic !== 'chat/secret'), 'history leaves out denied topics');
    assert.ok(hist.messages.some((m) => m.topic === 'chat/open'));
  });

  it('takes the token from ?access_token= and from the cookie (EventSource cannot set headers)', async () => {
    const viaQuery = await openRawSse(`${server.http}/v1/sse?topic=chat/q&access_token=${good}`);
    assert.equal(viaQuery.status, 200);
    viaQuery.close();
    const viaCookie = await openRawSse(`${server.http}/v1/sse?topic=chat/q`, { cookie: `other=1; omnipush_token=${good}` });
    assert.equal(viaCookie.status, 200);
    viaCookie.close();
  });

  it('ends a stream when its token expires, with a close event naming the reason', async () => {
    const short = await token(chatOnly, { exp: Math.floor(Date.now() / 1000) + 2 });
    const sse = await openRawSse(`${server.http}/v1/sse?topic=chat/exp`, { authorization: `Bearer ${short}` });
    assert.equal(sse.status, 200);
    await sse.ended;
    const last = sse.events().at(-1);
    assert.equal(last?.event, 'close');
    assert.equal((JSON.parse(last!.data) as { code: string }).code, 'unauthorized');
    // reconnecting with the same token is refused, which stops an EventSource for good
    assert.equal((await get('/v1/sse?topic=chat/exp', short)).status, 401);
  });
});
