import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import mqtt from 'mqtt';
import { parseConfig } from '../src/config/schema.js';
import { ClientAddresses } from '../src/wire/client-address.js';
import type { RunningServer } from '../src/server.js';
import { openRawSse, type RawSse } from './helpers/sse.js';
import { startTestServer, waitFor } from './helpers/server.js';

/** An SSE stream's status, sent with an `X-Forwarded-For` header as a proxy would. */
async function sseFrom(server: RunningServer, forwardedFor: string | undefined, open: RawSse[]): Promise<number> {
  const s = await openRawSse(`${server.http}/v1/sse?topic=tp/x`, forwardedFor ? { 'X-Forwarded-For': forwardedFor } : {});
  open.push(s);
  return s.status;
}

const addressesOf = (server: RunningServer, door: string): string[] =>
  [...server.registry.all()].filter((c) => c.door === door).map((c) => c.address).sort();

describe('trusted proxies', () => {
  it('reads the client from X-Forwarded-For only from trusted peers, walking from the right past trusted hops', () => {
    const a = new ClientAddresses(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
    const req = (peer: string, xff?: string | string[]) => ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as never;
    assert.equal(a.of(req('127.0.0.1', '203.0.113.7')), '203.0.113.7');
    assert.equal(a.of(req('::ffff:127.0.0.1', '203.0.113.7')), '203.0.113.7', 'a dual-stack socket of a trusted IPv4 peer');
    // a client may put anything on the left; only the hop our proxies appended counts
    assert.equal(a.of(req('127.0.0.1', '6.6.6.6, 203.0.113.7, 10.1.2.3')), '203.0.113.7');
    assert.equal(a.of(req('127.0.0.1', ['6.6.6.6', '203.0.113.7'])), '203.0.113.7', 'repeated headers are one list');
    assert.equal(a.of(req('127.0.0.1', '203.0.113.7:5555')), '203.0.113.7', 'a port is dropped');
    assert.equal(a.of(req('127.0.0.1', '[2001:db8::1]:443')), '2001:db8::1');
    assert.equal(a.of(req('127.0.0.1', 'garbage, 10.0.0.2')), '10.0.0.2', 'a malformed hop ends the walk at the last good one');
    assert.equal(a.of(req('127.0.0.1', '10.0.0.2')), '10.0.0.2', 'all hops trusted: the leftmost');
    assert.equal(a.of(req('127.0.0.1')), '127.0.0.1', 'no header: the peer');
    assert.equal(a.of(req('192.0.2.9', '203.0.113.7')), '192.0.2.9', 'an untrusted peer cannot choose its address');
    assert.equal(new ClientAddresses([]).of(req('127.0.0.1', '203.0.113.7')), '127.0.0.1', 'no proxies configured: the header is never read');
    assert.equal(a.poolKey({ remoteAddress: '127.0.0.1', remotePort: 4000 }), '127.0.0.1#4000', 'each socket of a proxy counts alone before its head');
    assert.equal(a.poolKey({ remoteAddress: '192.0.2.9', remotePort: 4000 }), '192.0.2.9');
  });

  it('refuses entries that are not addresses or CIDR ranges, naming them', () => {
    for (const bad of ['localhost', '10.0.0.0/33', '::1/129', '10.0.0.0/8/1', '']) {
      assert.throws(() => parseConfig({ http: { trustedProxies: [bad] } }), (e: Error) => e.message.includes('trustedProxies'), bad);
    }
    assert.deepEqual(parseConfig({ http: { trustedProxies: ['127.0.0.1', '::1', '10.0.0.0/8'] } }).http.trustedProxies, ['127.0.0.1', '::1', '10.0.0.0/8']);
  });

  it('behind a trusted proxy the per-address quota counts each client, on SSE, WebSocket and MQTT over WebSocket', async () => {
    const server = await startTestServer({ http: { trustedProxies: ['127.0.0.1'] }, quotas: { connectionsPerAddress: 2 } });
    const open: RawSse[] = [];
    const sockets: WebSocket[] = [];
    try {
      assert.equal(await sseFrom(server, '198.51.100.1', open), 200);
      assert.equal(await sseFrom(server, '198.51.100.1', open), 200);
      assert.equal(await sseFrom(server, '198.51.100.1', open), 429, 'the third stream of one client is over its quota');
      assert.equal(await sseFrom(server, '198.51.100.2', open), 200, 'another client behind the same proxy is not');
      await waitFor(() => addressesOf(server, 'sse').length === 3, 'three streams registered');
      assert.deepEqual(addressesOf(server, 'sse'), ['198.51.100.1', '198.51.100.1', '198.51.100.2']);

      const ws = new WebSocket(`${server.http.replace('http', 'ws')}/v1/ws`, { headers: { 'X-Forwarded-For': '198.51.100.3' } });
      sockets.push(ws);
      await new Promise((r, j) => ws.once('open', r).once('error', j));
      await waitFor(() => addressesOf(server, 'websocket').length === 1, 'the WebSocket registered');
      assert.deepEqual(addressesOf(server, 'websocket'), ['198.51.100.3']);

      const m = await mqtt.connectAsync(`${server.http.replace('http', 'ws')}/mqtt`, { wsOptions: { headers: { 'X-Forwarded-For': '198.51.100.4' } }, reconnectPeriod: 0 });
      try {
        await waitFor(() => addressesOf(server, 'mqtt').length === 1, 'the MQTT client registered');
        assert.deepEqual(addressesOf(server, 'mqtt'), ['198.51.100.4']);
      } finally {
        await m.endAsync();
      }
    } finally {
      open.forEach((s) => s.close());
      sockets.forEach((s) => s.close());
      await server.close();
    }
  });

  it('without trusted proxies X-Forwarded-For is ignored: a client cannot dodge its quota by naming another address', async () => {
    const server = await startTestServer({ quotas: { connectionsPerAddress: 2 } });
    const open: RawSse[] = [];
    try {
      assert.equal(await sseFrom(server, '198.51.100.1', open), 200);
      assert.equal(await sseFrom(server, '198.51.100.2', open), 200);
      assert.equal(await sseFrom(server, '198.51.100.3', open), 429);
      await waitFor(() => addressesOf(server, 'sse').length === 2, 'two streams registered');
      assert.deepEqual(addressesOf(server, 'sse'), ['127.0.0.1', '127.0.0.1']);
      // and a publish's rate bucket is the socket's too (no 500 on a header it does not read)
      const r = await new Promise<number>((resolve, reject) => {
        const q = request(`${server.http}/v1/publish`, { method: 'POST', headers: { 'X-Forwarded-For': 'not an address', 'content-type': 'application/json' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        q.on('error', reject);
        q.end(JSON.stringify({ topic: 'tp/x', data: 'x' }));
      });
      assert.equal(r, 200);
    } finally {
      open.forEach((s) => s.close());
      await server.close();
    }
  });
});
