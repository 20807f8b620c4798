import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnServer, tempDir, waitFor, type ChildServer } from './helpers/server.js';
import { ReceiverProcess } from './helpers/webhook-receiver-process.js';

const CONCURRENCY = 4;

async function publish(base: string, topic: string, data: string): Promise<string> {
  const r = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });
  assert.equal(r.status, 200);
  return ((await r.json()) as { cursor: string }).cursor;
}

describe('webhooks across a kill -9 of the server during delivery', () => {
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const rx = new ReceiverProcess(secret);
  const dir = tempDir('omnipush-webhooks-crash-');
  let server: ChildServer | undefined;
  let config: string;

  before(async () => {
    await rx.start();
    config = join(dir.path, 'omnipush.json');
    writeFileSync(
      config,
      JSON.stringify({
        store: { kind: 'sqlite', dir: join(dir.path, 'data') },
        log: { level: 'warn' },
        webhooks: {
          endpoints: [{ url: rx.url, secret, events: ['message'], filters: ['crash/#'], concurrency: CONCURRENCY }],
          retry: { minDelay: 20, maxDelay: 200 },
        },
      }),
    );
  });
  after(async () => {
    await server?.kill().catch(() => undefined);
    await rx.kill();
    dir.remove();
  });

  it('delivers every event after the restart; only those in flight at the kill can repeat', async () => {
    server = await spawnServer(['--config', config]);
    // slow answers: the kill lands with requests in flight and most events still queued
    await rx.answer(200, undefined, 150);
    const cursors: string[] = [];
    for (let i = 0; i < 40; i++) cursors.push(await publish(server.http, 'crash/a', `event ${i}`));
    await waitFor(() => rx.events().length >= CONCURRENCY, 'some events acknowledged');
    await server.kill();
    const beforeKill = rx.events().length;
    assert.ok(beforeKill < cursors.length, `the kill came during delivery (${beforeKill} of ${cursors.length} acknowledged)`);

    await rx.answer(200);
    server = await spawnServer(['--config', config]);
    const want = cursors.map((c) => `evt_m_${c}`);
    await waitFor(() => {
      const got = new Set(rx.events().map((e) => e.id));
      return want.every((id) => got.has(id));
    }, 'every event delivered after the restart', 20_000);
    const counts = new Map<string, number>();
    for (const e of rx.events()) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
    const repeated = [...counts.values()].filter((n) => n > 1).length;
    // an attempt in flight (answered, but its completion not yet written) is the only kind that repeats
    assert.ok(repeated <= CONCURRENCY, `${repeated} events repeated`);
    assert.ok([...counts.values()].every((n) => n <= 2));
    for (const h of rx.received) assert.ok(h.verified, h.error);
    assert.equal(await server.stop(), 0);
  });
});
