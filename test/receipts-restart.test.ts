import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startPushService, webpushConfig, type PushService } from './helpers/push-service.js';
import { spawnServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';

async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function receiptEvents(base: string): Promise<Array<{ type: string; cursor: string }>> {
  const r = await fetch(`${base}/v1/receipts?limit=1000`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { receipts: Array<{ type: string; cursor: string }> }).receipts;
}

describe('receipt windows across a kill -9 (sqlite)', () => {
  let svc: PushService;
  const dir = tempDir('omnipush-receipts-restart-');
  let server: ChildServer | undefined;
  let config: string;

  before(async () => {
    svc = await startPushService();
    config = join(dir.path, 'omnipush.json');
    writeFileSync(
      config,
      JSON.stringify({
        store: { kind: 'sqlite', dir: join(dir.path, 'data') },
        log: { level: 'warn' },
        webpush: webpushConfig(svc),
        // anonymous on loopback: the principal is "anonymous"
        receipts: { rules: [{ filter: 'user/{sub}/#' }] },
      }),
    );
  });
  after(async () => {
    await server?.kill().catch(() => undefined);
    await svc?.close();
    dir.remove();
  });

  const pushesOf = (cursor: string) => svc.received.filter((r) => r.status === 201 && r.payload?.cursor === cursor).length;

  it('a window pending when the process is killed fires its fallback exactly once after the restart', async () => {
    server = await spawnServer(['--config', config]);
    svc.expectedKey = ((await (await fetch(`${server.http}/v1/webpush/vapid-public-key`)).json()) as { publicKey: string }).publicKey;
    const b = svc.browser('restart-phone');
    assert.equal((await post(server.http, '/v1/webpush/subscriptions', { subscription: b.subscription, topics: ['user/anonymous/#'] })).status, 201);

    const pending = await post(server.http, '/v1/publish', { topic: 'user/anonymous/inbox', data: { title: 'while you were out' }, receipt: { within: '1500ms' } });
    assert.equal(pending.status, 200, JSON.stringify(pending.body));
    const cursor = pending.body.cursor as string;
    await server.kill();
    server = undefined;
    assert.equal(pushesOf(cursor), 0, 'the window had not ended when the process died');

    server = await spawnServer(['--config', config]);
    await waitFor(() => pushesOf(cursor) === 1, 'the fallback after the restart', 15_000);
    await waitFor(async () => (await receiptEvents(server!.http)).some((e) => e.cursor === cursor && e.type === 'pushed'), 'the pushed event');
    // killed again right after the push: the push and the receipt's state were one write, so no second push
    await server.kill();
    server = undefined;

    server = await spawnServer(['--config', config]);
    const control = await post(server.http, '/v1/publish', { topic: 'user/anonymous/control', data: 'c', receipt: { within: '300ms' } });
    await waitFor(() => pushesOf(control.body.cursor as string) === 1, 'the control message pushed after the second restart', 15_000);
    assert.equal(pushesOf(cursor), 1, 'exactly one fallback for the message pending at the kill');
    assert.deepEqual(
      (await receiptEvents(server.http)).filter((e) => e.cursor === cursor).map((e) => e.type),
      ['pushed'],
    );
    assert.deepEqual(svc.violations, []);
    assert.equal(await server.stop(), 0);
    server = undefined;
  });
});
