import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { mintToken } from '../src/auth/token.js';
import { hashPassword } from '../src/auth/users.js';
import type { ConfigInput } from '../src/config/schema.js';
import type { RunningServer } from '../src/server.js';
import { clusterConfig, httpPublish } from './helpers/cluster.js';
import { RawClient } from './helpers/mqtt.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { startTestServer, waitFor, within } from './helpers/server.js';

const SECRET = 'hostile-mqtt-secret-0123456789';
const EVERYTHING = { publish: ['#'], subscribe: ['#'], deny: { publish: [], subscribe: [] } };

async function authConfig(): Promise<ConfigInput> {
  return {
    auth: {
      allowAnonymous: true,
      anonymous: EVERYTHING,
      jwt: { secret: SECRET },
      users: [
        { username: 'alice', passwordHash: await hashPassword('alice-pw'), grants: EVERYTHING },
        { username: 'mallory', passwordHash: await hashPassword('mallory-pw'), grants: EVERYTHING },
      ],
    },
  };
}

type Via = 'tcp' | 'ws';
type Version = 4 | 5;

function urlOf(server: RunningServer, via: Via): string {
  return via === 'tcp' ? server.mqtt! : `${server.http.replace(/^http/, 'ws')}/mqtt`;
}

/** Options of a persistent (or clean) session for `clientId`, in either protocol version. */
function sessionOpts(version: Version, clientId: string, clean: boolean): IClientOptions {
  const o: IClientOptions = { protocolVersion: version, clientId, clean, reconnectPeriod: 0, connectTimeout: 5000 };
  if (version === 5) o.properties = { sessionExpiryInterval: clean ? 0 : 300 };
  return o;
}

interface Holder {
  client: MqttClient;
  got: string[];
  /** Times the server closed or disconnected this client. */
  lost: number;
}

/** A legitimate client that counts what it receives and every time it is cut off. */
async function holder(url: string, opts: IClientOptions, topic: string): Promise<Holder & { present: boolean }> {
  const client = await within(mqtt.connectAsync(url, opts), 10_000, 'holder CONNACK');
  const h = { client, got: [] as string[], lost: 0, present: false };
  client.on('message', (_t, payload) => h.got.push(payload.toString()));
  client.on('disconnect', () => h.lost++);
  client.on('close', () => h.lost++);
  client.on('error', () => undefined);
  await client.subscribeAsync(topic, { qos: 1 });
  return h;
}

/**
 * A CONNECT that must be refused: resolves with the CONNACK code (v5 reason code, 3.1.1 return
 * code); fails the test if the server accepts it.
 */
async function refusedWith(url: string, opts: IClientOptions): Promise<number> {
  try {
    const c = await within(mqtt.connectAsync(url, opts), 10_000, 'CONNACK of an intruder');
    await c.endAsync(true);
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (typeof code === 'number') return code;
    throw e;
  }
  assert.fail(`CONNECT as ${String(opts.username)} for ${String(opts.clientId)} was accepted`);
}

/** Connects with a message listener in place before CONNACK (a resumed session's messages follow it at once). */
async function connectWatching(url: string, opts: IClientOptions): Promise<{ client: MqttClient; got: string[] }> {
  const client = mqtt.connect(url, opts);
  const got: string[] = [];
  client.on('message', (_t, p) => got.push(p.toString()));
  await within(
    new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    }),
    10_000,
    'CONNACK',
  );
  client.on('error', () => undefined);
  return { client, got };
}

/** Publishes over HTTP and waits until the holder has it. */
async function stillServed(server: RunningServer, h: Holder, topic: string, data: string): Promise<void> {
  await httpPublish(server.http, topic, data);
  await waitFor(() => h.got.includes(data), `the holder to receive ${data}`);
}

async function metric(server: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('hostile MQTT clients: another principal cannot take over or wipe a session', () => {
  let server: RunningServer;
  let aliceToken: string;
  before(async () => {
    server = await startTestServer(await authConfig());
    // a token whose sub is "alice": a different principal from the static user alice
    aliceToken = await mintToken({ secret: SECRET, sub: 'alice', grants: EVERYTHING });
  });
  after(() => server.close());

  for (const via of ['tcp', 'ws'] as const) {
    for (const version of [4, 5] as const) {
      const refused = version === 5 ? 0x87 : 5;
      it(`[${via}, ${version === 5 ? 'MQTT 5' : 'MQTT 3.1.1'}] resume, clean start and token-holder CONNECTs for alice's client id are refused (${refused}) while alice is served`, async () => {
        const url = urlOf(server, via);
        const id = `victim-${via}-${version}`;
        const topic = `h/${id}`;
        const alice = await holder(url, { ...sessionOpts(version, id, false), username: 'alice', password: 'alice-pw' }, topic);
        const before = await metric(server, 'omnipush_mqtt_foreign_connects_total');
        const intruders: Array<[string, IClientOptions]> = [
          ['mallory resuming', { ...sessionOpts(version, id, false), username: 'mallory', password: 'mallory-pw' }],
          ['mallory with a clean start', { ...sessionOpts(version, id, true), username: 'mallory', password: 'mallory-pw' }],
          ['a token whose sub is alice', { ...sessionOpts(version, id, true), username: 'x', password: aliceToken }],
          ['an anonymous client', sessionOpts(version, id, true)],
        ];
        let n = 0;
        for (const [who, opts] of intruders) {
          assert.equal(await refusedWith(url, opts), refused, who);
          await stillServed(server, alice, topic, `live-${n++}`);
        }
        assert.equal(alice.lost, 0, 'the holder was never disconnected');
        assert.equal((await metric(server, 'omnipush_mqtt_foreign_connects_total')) - before, intruders.length, 'each refusal counted');

        // offline: the session waits with a message; a clean start by mallory must not wipe it
        await alice.client.endAsync();
        await httpPublish(server.http, topic, 'while-away');
        assert.equal(await refusedWith(url, { ...sessionOpts(version, id, true), username: 'mallory', password: 'mallory-pw' }), refused);
        const back = await connectWatching(url, { ...sessionOpts(version, id, false), username: 'alice', password: 'alice-pw' });
        await waitFor(() => back.got.includes('while-away'), 'the queued message after resuming');
        await back.client.endAsync();
      });
    }
  }

  it('the legitimate principal still takes its own session over, from another connection', async () => {
    const url = server.mqtt!;
    const alice = await holder(url, { ...sessionOpts(5, 'own-takeover', false), username: 'alice', password: 'alice-pw' }, 'h/own');
    const again = await connectWatching(url, { ...sessionOpts(5, 'own-takeover', false), username: 'alice', password: 'alice-pw' });
    await waitFor(() => alice.lost > 0, 'the older connection to be taken over');
    await httpPublish(server.http, 'h/own', 'to-the-new-one');
    await waitFor(() => again.got.includes('to-the-new-one'), 'delivery to the new connection (session kept its subscription)');
    await again.client.endAsync();
  });

  it('token principals: another sub is refused; a new token for the same sub resumes the session', async () => {
    const url = server.mqtt!;
    const mine = await mintToken({ secret: SECRET, sub: 'device-a', grants: EVERYTHING });
    const theirs = await mintToken({ secret: SECRET, sub: 'device-b', grants: EVERYTHING });
    const renewed = await mintToken({ secret: SECRET, sub: 'device-a', grants: EVERYTHING, expiresIn: '2h' });
    const dev = await holder(url, { ...sessionOpts(5, 'device-a-session', false), username: 'x', password: mine }, 'h/device');
    assert.equal(await refusedWith(url, { ...sessionOpts(5, 'device-a-session', false), username: 'x', password: theirs }), 0x87);
    await stillServed(server, dev, 'h/device', 'dev-live');
    assert.equal(dev.lost, 0);
    const next = await connectWatching(url, { ...sessionOpts(5, 'device-a-session', false), username: 'x', password: renewed });
    await waitFor(() => dev.lost > 0, 'the older connection to be taken over by the same principal');
    await httpPublish(server.http, 'h/device', 'after-renewal');
    await waitFor(() => next.got.includes('after-renewal'), 'the resumed session to be served');
    await next.client.endAsync();
  });

  it('a session record written before owners were kept is adopted by the first principal that resumes it', async () => {
    const legacy = { v: 1, epoch: server.hub.epoch, sent: server.hub.headSeq, expiry: 300, gone: Date.now(), subs: [['h/legacy', { qos: 1, nl: false, rap: false, rh: 0 }]], shared: [], inflight: [], inQos2: [] };
    await server.hub.putRecords([{ kind: 'mqtt-session', key: 'legacy-session', value: Buffer.from(JSON.stringify(legacy)) }]);
    const first = await RawClient.open(server, 5);
    const ack = await first.connect({ clientId: 'legacy-session', clean: false, username: 'alice', password: Buffer.from('alice-pw'), properties: { sessionExpiryInterval: 300 } });
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, true, 'the old session is resumed');
    first.close();
    await first.closedPromise;
    assert.equal(await refusedWith(server.mqtt!, { ...sessionOpts(5, 'legacy-session', true), username: 'mallory', password: 'mallory-pw' }), 0x87, 'now it is alice\'s');
  });

  it('anonymous clients share one identity: an anonymous session cannot be taken by alice either', async () => {
    const url = server.mqtt!;
    const anon = await holder(url, sessionOpts(5, 'anon-held', false), 'h/anon');
    assert.equal(await refusedWith(url, { ...sessionOpts(5, 'anon-held', true), username: 'alice', password: 'alice-pw' }), 0x87);
    await stillServed(server, anon, 'h/anon', 'anon-live');
    assert.equal(anon.lost, 0);
    await anon.client.endAsync();
  });
});

describe('hostile MQTT clients across a two-node cluster (Redis)', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  before(async () => {
    redis = await startRedis();
    const auth = await authConfig();
    a = await startTestServer(clusterConfig(redis, 'hostile:', auth));
    b = await startTestServer(clusterConfig(redis, 'hostile:', auth));
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await redis?.remove();
  });

  for (const [label, version, clean] of [
    ['a persistent MQTT 5 session', 5, false],
    ['an MQTT 3.1.1 clean session (no record)', 4, true],
  ] as const) {
    it(`${label} held on node A is refused to mallory on node B, and A's holder keeps receiving`, async () => {
      const refused = version === 5 ? 0x87 : 5;
      const id = `cluster-victim-${version}`;
      const topic = `h/${id}`;
      const alice = await holder(a.mqtt!, { ...sessionOpts(version, id, clean), username: 'alice', password: 'alice-pw' }, topic);
      for (const c of [false, true]) {
        assert.equal(await refusedWith(b.mqtt!, { ...sessionOpts(version, id, c), username: 'mallory', password: 'mallory-pw' }), refused);
        await stillServed(b, alice, topic, `via-b-${String(c)}`);
      }
      assert.equal(await refusedWith(urlOf(b, 'ws'), { ...sessionOpts(version, id, true), username: 'mallory', password: 'mallory-pw' }), refused, 'over WebSocket too');
      assert.equal(alice.lost, 0, 'the holder on node A was never disconnected');

      // the owner moves to node B (A lets go with 0x8E); mallory on A is now refused from there
      const { client: moved } = await connectWatching(b.mqtt!, { ...sessionOpts(version, id, clean), username: 'alice', password: 'alice-pw' });
      await waitFor(() => alice.lost > 0, 'node A to let the session go');
      let movedLost = 0;
      moved.on('close', () => movedLost++);
      assert.equal(await refusedWith(a.mqtt!, { ...sessionOpts(version, id, true), username: 'mallory', password: 'mallory-pw' }), refused);
      assert.equal(movedLost, 0);
      await moved.endAsync();
    });
  }
});

describe('mqtt.clientIdPrefix: each principal has its own part of the client identifier space', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ ...(await authConfig()), mqtt: { clientIdPrefix: '{sub}/' } });
  });
  after(() => server.close());

  it('an identifier outside the principal\'s prefix is refused (0x85 / 2); a generated one gets the prefix', async () => {
    const url = server.mqtt!;
    const own = await holder(url, { ...sessionOpts(5, 'alice/phone', false), username: 'alice', password: 'alice-pw' }, 'h/prefix');
    for (const version of [5, 4] as const) {
      assert.equal(await refusedWith(url, { ...sessionOpts(version, 'alice/phone', true), username: 'mallory', password: 'mallory-pw' }), version === 5 ? 0x85 : 2);
    }
    const token = await mintToken({ secret: SECRET, sub: 'dev-9', grants: EVERYTHING });
    assert.equal(await refusedWith(url, { ...sessionOpts(5, 'alice/phone', true), username: 'x', password: token }), 0x85);
    const gen = await RawClient.open(server, 5);
    const ack = await gen.connect({ clientId: '', username: 'x', password: Buffer.from(token) });
    assert.equal(ack.reasonCode, 0);
    const assignedId = ack.properties?.assignedClientIdentifier ?? '';
    assert.ok(assignedId.startsWith('dev-9/'), assignedId);
    gen.close();
    await stillServed(server, own, 'h/prefix', 'prefix-live');
    assert.equal(own.lost, 0);
    await own.client.endAsync();
  });
});
