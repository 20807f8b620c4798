/**
 * Row of scenario `hooks`: webhook events per second delivered to a local receiver. Messages are
 * published on a watched filter (1000 per server API call); the server queues one `message` event each (durably, in the
 * store) and POSTs them signed, batched, 4 requests at a time; the receiver checks nothing but
 * counts events, so the figure is the server's side.
 */
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess } from '../lib/procs.js';
import type { Row } from './adversarial.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const KEY = 'bench-admin-key-0123456789abcdef';

export async function webhookDelivery(o: { quick: boolean; row: Row; results: Record<string, unknown> }): Promise<void> {
  let received = 0;
  let target = Infinity;
  let done: () => void = () => undefined;
  const all = new Promise<void>((r) => (done = r));
  const rx = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
      received += Array.isArray(body) ? body.length : 1;
      res.end();
      if (received >= target) done();
    });
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', () => r()));
  const port = (rx.address() as { port: number }).port;
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-webhooks-'));
  const config = join(dir, 'config.json');
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  writeFileSync(
    config,
    JSON.stringify({
      webhooks: { endpoints: [{ url: `http://127.0.0.1:${port}/hooks`, secret, events: ['message'], filters: ['bench/wh/#'], batch: { maxEvents: 100, maxDelay: 5 }, concurrency: 4 }] },
      history: { maxCount: 1_000_000 },
      admin: { apiKeys: [KEY] },
    }),
  );
  const server = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--log-level', 'warn', '--store', 'sqlite', '--data', join(dir, 'data'), '--config', config]);
  try {
    const n = o.quick ? 5000 : 50_000;
    target = n;
    const t0 = performance.now();
    // the server API's publish stores 1000 messages (one per topic) per call, so publishing is not the bottleneck
    for (let i = 0; i < n; i += 1000) {
      const topics = Array.from({ length: Math.min(1000, n - i) }, (_, j) => `bench/wh/${(i + j) % 100}/${i + j}`);
      const r = await fetch(`${server.url}/v1/admin/publish`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify({ topics, data: 'x'.repeat(100) }) });
      if (r.status !== 200) throw new Error(`admin publish: ${r.status} ${await r.text()}`);
    }
    const published = (performance.now() - t0) / 1000;
    await Promise.race([all, new Promise((r) => setTimeout(r, 120_000))]);
    const elapsed = (performance.now() - t0) / 1000;
    const eps = Math.round(received / elapsed);
    o.results.hooksWebhooks = { events: n, received, seconds: elapsed, publishSeconds: published, eventsPerSec: eps };
    o.row('hooks: webhook events delivered (sqlite queue, batches ≤ 100, 4 in flight)', `${(eps / 1000).toFixed(1)}k events/s (${received}/${n}; publishing took ${published.toFixed(1)} s of ${elapsed.toFixed(1)})`);
  } finally {
    await server.stop();
    rx.close();
  }
}
