import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { IPubackPacket } from 'mqtt-packet';
import type { RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { startTestServer, tempDir } from './helpers/server.js';

type Json = Record<string, unknown>;

async function publish(server: RunningServer, topic: string, data: string, retain = true): Promise<{ status: number; error?: Json }> {
  const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data, retain }) });
  const j = (await r.json()) as Json;
  return { status: r.status, error: j.error as Json | undefined };
}

/** The topics with a retained message now, as a new subscriber would get them. */
async function retainedTopics(server: RunningServer, filter: string): Promise<string[]> {
  return (await server.hub.store.retained([filter], Date.now())).map((m) => m.topic).sort();
}

const dirs: Array<{ remove(): void }> = [];
after(() => dirs.forEach((d) => d.remove()));

describe('quota: retained topics per principal', () => {
  it('HTTP: refuses a new retained topic past the limit with 429 quota_exceeded; replacing and clearing one’s own is fine', async () => {
    const server = await startTestServer({ quotas: { retainedTopicsPerPrincipal: 3 } });
    try {
      for (const t of ['q/1', 'q/2', 'q/3']) assert.equal((await publish(server, t, 'v')).status, 200);
      const refused = await publish(server, 'q/4', 'v');
      assert.equal(refused.status, 429);
      assert.equal(refused.error?.code, 'quota_exceeded');
      assert.equal(refused.error?.limit, 'retainedTopicsPerPrincipal');
      assert.match(String(refused.error?.message), /retainedTopicsPerPrincipal is 3/);
      assert.equal((await publish(server, 'q/4', 'not retained', false)).status, 200, 'a publish that retains nothing is not counted');
      assert.equal((await publish(server, 'q/1', 'again')).status, 200, 'replacing one’s own');
      assert.equal((await publish(server, 'q/2', '')).status, 200, 'clearing one’s own');
      assert.equal((await publish(server, 'q/4', 'v')).status, 200, 'the cleared topic freed a place');
      assert.equal((await publish(server, 'q/5', 'v')).status, 429);
      assert.deepEqual(await retainedTopics(server, 'q/#'), ['q/1', 'q/3', 'q/4']);
    } finally {
      await server.close();
    }
  });

  it('MQTT 5: PUBACK 0x97 for a QoS 1 publish over the limit, DISCONNECT 0x97 for QoS 0', async () => {
    const server = await startTestServer({ quotas: { retainedTopicsPerPrincipal: 2 } });
    const c = await RawClient.open(server, 5);
    try {
      await c.connect({ clientId: 'quota-5' });
      const pub = async (topic: string, messageId: number, payload = 'v'): Promise<number> => {
        c.send({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: true, dup: false });
        return ((await c.next('puback')) as IPubackPacket).reasonCode ?? 0;
      };
      assert.equal(await pub('m/1', 1), 0);
      assert.equal(await pub('m/2', 2), 0);
      assert.equal(await pub('m/3', 3), 0x97);
      assert.equal(await pub('m/1', 4, 'again'), 0, 'replacing one’s own');
      c.send({ cmd: 'publish', topic: 'm/4', payload: 'v', qos: 0, retain: true, dup: false });
      assert.equal(await c.disconnectCode(), 0x97);
      await c.waitClosed();
      assert.deepEqual(await retainedTopics(server, 'm/#'), ['m/1', 'm/2']);
    } finally {
      c.close();
      await server.close();
    }
  });

  it('counts from the store, so the limit holds across a restart (sqlite)', async () => {
    const d = tempDir('omnipush-quota-');
    dirs.push(d);
    const config = { store: { kind: 'sqlite', dir: d.path }, quotas: { retainedTopicsPerPrincipal: 2 } } as const;
    const first = await startTestServer(config);
    try {
      assert.equal((await publish(first, 'r/1', 'v')).status, 200);
      assert.equal((await publish(first, 'r/2', 'v')).status, 200);
    } finally {
      await first.close();
    }
    const second = await startTestServer(config);
    try {
      assert.equal((await publish(second, 'r/3', 'v')).status, 429);
      assert.equal((await publish(second, 'r/2', 'new')).status, 200);
    } finally {
      await second.close();
    }
  });
});
