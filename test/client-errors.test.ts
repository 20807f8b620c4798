import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, OmnipushClientError, type ClientOptions, type Message, type TransportName } from '../src/client/index.js';
import type { RunningServer } from '../src/server.js';
import { startTestServer, waitFor, within } from './helpers/server.js';

// the `ws` and `eventsource` classes as they are: no casts (typecheck covers this file)
const impls: ClientOptions = { WebSocket, EventSource, backoff: { min: 20, max: 200 }, openTimeout: 3000 };

/** Refused requests the server counted on `route` (from /metrics). */
async function refusedCount(server: RunningServer, route: string, status: number): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const m = new RegExp(`omnipush_http_requests_total\\{route="${route.replace(/\//g, '\\/')}",status="${status}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

describe('client SDK errors', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ auth: { anonymous: { subscribe: ['open/#'], publish: ['open/#'] } } });
  });
  after(() => server.close());

  it('refuses an unknown transport name before touching the network', async () => {
    await assert.rejects(connect(server.http, { ...impls, transports: ['websockets' as TransportName] }), (e: unknown) => e instanceof TypeError && /unknown transport "websockets"; use websocket, sse, longpoll/.test(e.message));
    await assert.rejects(connect('http://127.0.0.1:9', { ...impls, transports: [] }), TypeError);
  });

  for (const transport of ['websocket', 'sse', 'longpoll'] as TransportName[]) {
    it(`over ${transport}: a forbidden subscription gives one final error event and is not retried; the others go on`, async (t) => {
      const client = await connect(server.http, { ...impls, transports: [transport] });
      t.after(() => client.close());
      const errors: OmnipushClientError[] = [];
      client.on('error', (e) => errors.push(e));
      const got: Message[] = [];
      client.subscribe('secret/#', () => assert.fail('no message on a forbidden filter'));
      client.subscribe('open/#', (m) => got.push(m), { since: 'now' });
      const err = await waitFor(() => errors.find((e) => e.filter === 'secret/#'), 'the refusal');
      assert.ok(err instanceof OmnipushClientError);
      assert.equal(err.code, 'forbidden');
      assert.equal(err.final, true);
      // the allowed subscription works; by the time two messages went round, a retry would have shown
      const route = transport === 'sse' ? '/v1/sse' : '/v1/poll';
      const refusedBefore = transport === 'websocket' ? 0 : await refusedCount(server, route, 403);
      for (const data of ['one', 'two']) {
        await waitFor(async () => {
          await client.publish('open/x', data);
          return got.some((m) => m.data === data);
        }, `open/x ${data} delivered`);
      }
      assert.equal(client.state, 'open');
      assert.equal(errors.length, 1, `one error: ${errors.map((e) => e.message).join('; ')}`);
      if (transport !== 'websocket') assert.equal(await refusedCount(server, route, 403), refusedBefore, 'no request for the refused filter since');
    });
  }

  it('a publish the server refuses rejects with its code and status', async (t) => {
    const client = await connect(server.http, { ...impls, transports: ['sse'] });
    t.after(() => client.close());
    await assert.rejects(client.publish('secret/x', 'no'), (e: unknown) => e instanceof OmnipushClientError && e.code === 'forbidden' && e.status === 403 && e.final);
  });

  it('a refused token ends the client with a final error instead of retrying', async () => {
    const locked = await startTestServer({ auth: { jwt: { secret: 'client-errors-secret-0123' } } });
    try {
      const e = await within(
        connect(locked.http, { ...impls, token: 'not-a-jwt' }).then(
          () => undefined,
          (err: unknown) => err,
        ),
        15_000,
        'connect refused',
      );
      assert.ok(e instanceof OmnipushClientError, String(e));
      assert.equal(e.code, 'unauthorized');
      assert.equal(e.status, 401);
      assert.equal(e.final, true);
    } finally {
      await locked.close();
    }
  });

  for (const transport of ['websocket', 'longpoll'] as TransportName[]) {
    it(`over ${transport}: tells the app, as errors that are not final, while the server cannot be reached`, async (t) => {
      const gone = await startTestServer();
      const client = await connect(gone.http, { ...impls, transports: [transport] });
      t.after(() => client.close());
      const errors: OmnipushClientError[] = [];
      client.on('error', (e) => errors.push(e));
      client.subscribe('x', () => undefined);
      await gone.close();
      const e = await waitFor(() => errors.find((x) => x.code === 'unreachable'), 'an unreachable error', 15_000);
      assert.equal(e.final, false);
      assert.notEqual(client.state, 'closed');
    });
  }
});
