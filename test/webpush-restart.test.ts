import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SqliteStore } from '../src/store/sqlite.js';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { spawnServer, startTestServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';

async function metric(base: string, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${base}/metrics`)).text());
  return m ? Number(m[1]) : NaN;
}

describe('the Web Push queue across a kill -9', () => {
  let svc: PushService;
  const dir = tempDir('omnipush-webpush-restart-');
  let server: ChildServer | undefined;
  let config: string;

  before(async () => {
    svc = await startPushService();
    config = join(dir.path, 'omnipush.json');
    writeFileSync(config, JSON.stringify({ store: { kind: 'sqlite', dir: join(dir.path, 'data') }, log: { level: 'warn' }, webpush: webpushConfig(svc, { retryMinDelay: 20, retryMaxDelay: 200 }) }));
  });
  after(async () => {
    await server?.kill().catch(() => undefined);
    await svc?.close();
    dir.remove();
  });

  const publish = async (base: string, data: string): Promise<string> => {
    const r = await fetch(`${base}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'k/t', data }) });
    assert.equal(r.status, 200);
    return ((await r.json()) as { cursor: string }).cursor;
  };
  /** Cursor → how many times the push service acknowledged it (201). */
  const acks = () => {
    const n = new Map<string, number>();
    for (const r of svc.received) if (r.status === 201) n.set(r.payload!.cursor as string, (n.get(r.payload!.cursor as string) ?? 0) + 1);
    return n;
  };

  it('keeps pending deliveries, resends them after the restart, and never repeats an acknowledged one', async () => {
    server = await spawnServer(['--config', config]);
    const keyBefore = ((await (await fetch(`${server.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    svc.expectedKey = keyBefore;
    const b = svc.browser('restart');
    const reg = await fetch(`${server.http}/v1/webpush/subscriptions`, { method: 'POST', body: JSON.stringify({ subscription: b.subscription, topics: ['k/#'] }) });
    assert.equal(reg.status, 201);

    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push(await publish(server.http, `acked ${i}`));
    await waitFor(() => acks().size === 5, 'first five acknowledged');

    // the push service stops answering: the next five are in flight when the server dies
    svc.answer = () => ({ status: 0, hang: true });
    for (let i = 0; i < 5; i++) cursors.push(await publish(server.http, `pending ${i}`));
    await waitFor(() => svc.received.filter((r) => r.status === -1).length >= 5, 'five attempts hanging');
    await server.kill();
    server = undefined;

    svc.answer = () => ({ status: 201 });
    server = await spawnServer(['--config', config]);
    const keyAfter = ((await (await fetch(`${server.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    assert.equal(keyAfter, keyBefore, 'the generated VAPID key pair was stored');
    await waitFor(() => acks().size === 10, 'the pending five delivered after the restart', 20_000);
    cursors.push(await publish(server.http, 'after restart'));
    await waitFor(() => acks().size === 11, 'live delivery after the restart');
    await waitFor(async () => (await metric(server!.http, 'omnipush_webpush_queue_entries')) === 0, 'queue empty');

    const counts = acks();
    assert.deepEqual([...counts.keys()].sort(), [...cursors].sort());
    for (const [c, n] of counts) assert.equal(n, 1, `${c} acknowledged ${n} times`);
    assert.deepEqual(svc.violations, []);
    assert.equal(await server.stop(), 0);
    server = undefined;
  });
});

describe('messages stored but not yet queued when the server died', () => {
  it('are queued on the next start, from the last head the queue wrote', async () => {
    const svc = await startPushService();
    const dir = tempDir('omnipush-webpush-head-');
    const config = { store: { kind: 'sqlite', dir: dir.path }, webpush: webpushConfig(svc) } as const;
    try {
      let server = await startTestServer(config);
      svc.expectedKey = server.webpush!.publicKey;
      const b = svc.browser('head');
      assert.equal((await fetch(`${server.http}/v1/webpush/subscriptions`, { method: 'POST', body: JSON.stringify({ subscription: b.subscription, topics: ['h/#'] }) })).status, 201);
      const cursors: string[] = [];
      for (const data of ['one', 'two', 'three']) {
        const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'h/t', data }) });
        cursors.push(((await r.json()) as { cursor: string }).cursor);
      }
      await waitFor(() => svc.received.length === 3, 'three pushes');
      await server.close();

      // as if the process had died after storing "two" and "three" but before queueing them:
      // the head the queue wrote last is still "one"
      const store = new SqliteStore(dir.path);
      await store.open();
      await store.putRecords([{ kind: 'webpush.meta', key: 'head', value: Buffer.from(cursors[0]) }]);
      await store.close();

      server = await startTestServer(config);
      await waitFor(() => svc.received.length === 5, 'the two after the head pushed again');
      assert.deepEqual(
        svc.received.slice(3).map((r) => r.payload!.cursor),
        cursors.slice(1),
      );
      await server.webpush!.queue.idle();
      assert.equal(svc.received.length, 5, 'nothing at or before the head');
      await server.close();
      assert.deepEqual(svc.violations, []);
    } finally {
      await svc.close();
      dir.remove();
    }
  });
});
