/**
 * Scenario `hooks`: pushes triggered by the app's data. The PostgreSQL outbox: rows per second from
 * INSERT to publish (bulk inserts, until an SSE subscriber has every row), and the time from sending
 * a single-row INSERT (autocommit: the commit is inside it) to its SSE delivery, p50/p99, while
 * LISTEN/NOTIFY works (the poll interval is 60 s, so only NOTIFY wakes the consumer).
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Histogram } from '../lib/histogram.js';
import { startServerProcess, trackChild } from '../lib/procs.js';
import { postgresMissing, startPostgres } from '../../test/helpers/postgres.js';
import { SseParser } from '../../test/helpers/sse.js';
import type { Row } from './adversarial.js';
import { connectHookRows } from './hooks-connect.js';
import { webhookDelivery } from './webhook-delivery.js';

export interface HooksOptions {
  quick: boolean;
  row: Row;
  results: Record<string, unknown>;
}

const ROOT = new URL('../../../', import.meta.url).pathname;

/** An SSE subscriber calling `onData` with each event's data. */
function subscribe(url: string, onData: (data: string) => void): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Accept: 'text/event-stream' } }, (res) => {
      const parser = new SseParser();
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        parser.push(d);
        for (const e of parser.events.splice(0)) onData(e.data);
      });
      resolve(() => req.destroy());
    });
    req.on('error', reject);
    req.end();
  });
}

export async function hooks(o: HooksOptions): Promise<void> {
  await connectHookRows(o);
  await webhookDelivery(o);
  if (postgresMissing) {
    o.row('hooks: outbox', `skipped: ${postgresMissing}`);
    return;
  }
  const pgs = await startPostgres({ onSpawn: trackChild });
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-hooks-'));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ triggers: { postgres: { url: pgs.url, pollInterval: 60, batchSize: 500 } }, history: { maxCount: 1_000_000 } }));
  const server = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--log-level', 'warn', '--store', 'memory', '--config', config]);
  const db = await pgs.client();
  try {
    // the server creates the table on start; wait for it
    for (let i = 0; i < 100 && !(await db.query("SELECT to_regclass('omnipush_outbox') AS t")).rows[0].t; i++) await new Promise((r) => setTimeout(r, 50));

    // latency: one row at a time, each INSERT its own transaction
    const sent = new Map<string, number>();
    const hist = new Histogram();
    let waiting: (() => void) | null = null;
    const stopLat = await subscribe(`${server.url}/v1/sse?topic=bench/lat`, (data) => {
      const t = sent.get(data);
      if (t === undefined) return;
      hist.add(performance.now() - t);
      sent.delete(data);
      waiting?.();
    });
    const n = o.quick ? 300 : 2000;
    for (let i = 0; i < n; i++) {
      const id = `l${i}`;
      const got = new Promise<void>((r) => (waiting = r));
      sent.set(id, performance.now());
      await db.query("INSERT INTO omnipush_outbox (topic, payload) VALUES ('bench/lat', $1)", [id]);
      await Promise.race([got, new Promise((r) => setTimeout(r, 2000))]);
    }
    stopLat();
    const lost = sent.size;

    // throughput: bulk inserts from 4 connections until the subscriber has every row
    const rows = o.quick ? 20_000 : 100_000;
    let received = 0;
    let done: () => void = () => undefined;
    const all = new Promise<void>((r) => (done = r));
    const stopTp = await subscribe(`${server.url}/v1/sse?topic=bench/tp/%2B`, () => {
      if (++received === rows) done();
    });
    const writers = await Promise.all(Array.from({ length: 4 }, () => pgs.client()));
    const t0 = performance.now();
    const per = rows / writers.length;
    await Promise.all(
      writers.map(async (w, k) => {
        for (let i = 0; i < per; i += 1000) {
          await w.query("INSERT INTO omnipush_outbox (topic, payload) SELECT 'bench/tp/' || (g % 100), 'r' || g FROM generate_series($1::int, $2::int) g", [k * per + i, k * per + i + 999]);
        }
      }),
    );
    await Promise.race([all, new Promise((r) => setTimeout(r, 120_000))]);
    const elapsed = (performance.now() - t0) / 1000;
    stopTp();
    await Promise.all(writers.map((w) => w.end()));
    const rps = Math.round(received / elapsed);
    o.results.hooksOutbox = { latency: { rows: n, p50ms: hist.percentile(0.5), p99ms: hist.percentile(0.99), lost }, throughput: { rows, received, seconds: elapsed, rowsPerSec: rps } };
    o.row('hooks: outbox INSERT → publish → SSE, bulk (4 writers)', `${(rps / 1000).toFixed(1)}k rows/s (${received}/${rows})`);
    const p99 = hist.percentile(0.99);
    o.row('hooks: outbox INSERT-commit → SSE delivery p50/p99', `${hist.percentile(0.5)}/${p99} ms${lost ? `, ${lost} lost` : ''}`, 'p99 ≤ 50 ms', p99 <= 50 && lost === 0 ? 'PASS' : 'MISS');
  } finally {
    await db.end();
    await server.stop();
    await pgs.remove();
  }
}
