import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, type ClientOptions, type Message, type OmnipushClient, type TransportName } from '../src/client/index.js';
import { startBalancer, type Balancer } from './helpers/balancer.js';
import { httpPublish } from './helpers/cluster.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { spawnServer, waitFor, type ChildServer } from './helpers/server.js';

const nodeImpls: ClientOptions = {
  WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  EventSource: EventSource as unknown as ClientOptions['EventSource'],
  backoff: { min: 20, max: 300 },
  openTimeout: 3000,
};

describe('cluster: a node is killed (-9) mid-stream', { skip: redisMissing || false }, () => {
  it('SDK clients reconnect through the balancer to another node and end with every message once, in order', async () => {
    const redis = await startRedis();
    const env = { OMNIPUSH_STORE__KIND: 'redis', OMNIPUSH_STORE__REDIS__URL: redis.url, OMNIPUSH_STORE__REDIS__PREFIX: 'fo:', OMNIPUSH_BUS__KIND: 'redis', OMNIPUSH_SSE__RETRY: '50' };
    const nodes: ChildServer[] = [];
    const clients: OmnipushClient[] = [];
    let lb: Balancer | undefined;
    try {
      for (let i = 0; i < 3; i++) nodes.push(await spawnServer(['--log-level', 'warn'], env));
      lb = await startBalancer(nodes.map((n) => n.http));
      const transports: TransportName[] = ['websocket', 'sse', 'longpoll', 'websocket', 'sse', 'longpoll'];
      const got: Message[][] = transports.map(() => []);
      for (const [i, transport] of transports.entries()) {
        const c = await connect(lb.url, { ...nodeImpls, transports: [transport] });
        clients.push(c);
        c.subscribe('fo/#', (m) => got[i].push(m), { since: 'now' });
      }
      // every subscription is live once a first message reaches all of them
      const probe = await httpPublish(nodes[0].http, 'fo/x', 'probe');
      await waitFor(() => got.every((g) => g.some((m) => m.cursor === probe)), 'every client subscribed', 15_000);

      const sent: string[] = [];
      const publisher = (async () => {
        for (let i = 0; i < 300; i++) {
          // always to node 0, which stays up: the publisher is not what this test is about
          await httpPublish(nodes[0].http, 'fo/x', `m${i}`);
          sent.push(`m${i}`);
        }
      })();
      await waitFor(() => sent.length >= 100, 'a third of the stream');
      // the victim: the other node holding the most client connections right now
      const victim = lb.connectionsTo(1) >= lb.connectionsTo(2) ? 1 : 2;
      assert.ok(lb.connectionsTo(victim) >= 1, 'the killed node served clients');
      await nodes[victim].kill();
      await publisher;
      const all = ['probe', ...sent];
      await waitFor(() => got.every((g) => g.length >= all.length), 'every client to get every message', 30_000);
      for (const [i, g] of got.entries()) {
        assert.deepEqual(g.map((m) => m.data), all, `client ${i} (${transports[i]}): every message once, in order`);
      }
    } finally {
      for (const c of clients) c.close();
      await lb?.close();
      await Promise.all(nodes.map((n) => (n.proc.exitCode === null && n.proc.signalCode === null ? n.stop() : undefined)));
      await redis.remove();
    }
  });
});
