/**
 * Part `retained` of scenario `adversarial`: what 100,000 unrelated retained topics cost a client
 * that subscribes to a filter matching three of them, and whether many such subscribes at once
 * stall the server's event loop. Our server with its default sqlite store, real WebSocket clients.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { WebSocket } from 'ws';
import type { AdversarialOptions } from './adversarial.js';
import { startServerProcess } from '../lib/procs.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const FILTER = 'bench/r/+/temp';
const MATCHING = ['bench/r/1/temp', 'bench/r/2/temp', 'bench/r/3/temp'];
const http = new Agent({ keepAliveTimeout: 1000, connections: 16 });

async function publishRetained(url: string, topics: string[]): Promise<void> {
  const body = JSON.stringify({ messages: topics.map((topic) => ({ topic, data: 'x'.repeat(40), retain: true })) });
  const r = await fetch(`${url}/v1/publish`, { dispatcher: http, method: 'POST', headers: { 'content-type': 'application/json' }, body });
  if (r.status !== 200) throw new Error(`retained publish failed: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
}

/** ms from the subscribe request to the last of the matching retained messages, over a fresh socket. */
async function subscribeOnce(url: string): Promise<number> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`);
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      let got = 0;
      const t0 = performance.now();
      const timer = setTimeout(() => reject(new Error('retained messages did not all arrive within 30 s')), 30_000);
      ws.on('message', (d: Buffer) => {
        const f = JSON.parse(d.toString()) as { type: string };
        if (f.type === 'error') reject(new Error(d.toString()));
        if (f.type === 'message' && ++got === MATCHING.length) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        }
      });
      ws.send(JSON.stringify({ type: 'subscribe', id: 1, topics: [FILTER] }));
    });
  } finally {
    ws.close();
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}
const p99 = (xs: number[]): number => pct(xs, 0.99);

/** `n` subscribes to each server, alternating which goes first, so the machine's noise falls on both alike. */
async function interleaved(a: string, b: string, n: number): Promise<[number[], number[]]> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2) {
      as.push(await subscribeOnce(a));
      bs.push(await subscribeOnce(b));
    } else {
      bs.push(await subscribeOnce(b));
      as.push(await subscribeOnce(a));
    }
  }
  return [as, bs];
}

/** The server's event-loop delay p99 (ms) since the previous scrape (src/metrics/event-loop.ts). */
async function loopDelayP99(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { dispatcher: http })).text();
  const m = /^omnipush_event_loop_delay_p99_seconds (\S+)$/m.exec(text);
  if (!m) throw new Error('no omnipush_event_loop_delay_p99_seconds on /metrics');
  return Number(m[1]) * 1000;
}

function startSqliteServer(): ReturnType<typeof startServerProcess> {
  return startServerProcess(
    join(ROOT, 'bin/omnipush.js'),
    ['serve', '--port', '0', '--mqtt-port', '0', '--log-level', 'warn', '--store', 'sqlite', '--data', mkdtempSync(join(tmpdir(), 'omnipush-bench-'))],
    {
      // one publisher seeds all 100k: past the default retained-topics quota, so it is lifted here
      OMNIPUSH_QUOTAS__RETAINED_TOPICS_PER_PRINCIPAL: '0',
      // sampled every millisecond, a stall reads as its own length (the default 10 ms reads S-10..S)
      OMNIPUSH_METRICS__LOOP_DELAY_RESOLUTION: '1',
    },
  );
}

export async function retainedCost(o: AdversarialOptions): Promise<void> {
  const unrelated = 100_000;
  const samples = o.quick ? 100 : 1000;
  // two servers, one with no unrelated retained topics and one with 100k, asked in turn
  const none = await startSqliteServer();
  const loaded = await startSqliteServer();
  try {
    await publishRetained(none.url, MATCHING);
    await publishRetained(loaded.url, MATCHING);
    const t0 = performance.now();
    const batch = 1000;
    for (let i = 0; i < unrelated; i += batch) {
      await publishRetained(
        loaded.url,
        Array.from({ length: Math.min(batch, unrelated - i) }, (_, j) => `noise/${(i + j) >> 7}/${i + j}`),
      );
    }
    const seedSeconds = (performance.now() - t0) / 1000;
    await interleaved(none.url, loaded.url, 20);
    const [noneMs, loadedMs] = await interleaved(none.url, loaded.url, samples);

    // 20 subscribers at once, round after round, with the delay window opened by a first scrape
    await loopDelayP99(loaded.url);
    const rounds = o.quick ? 10 : 50;
    for (let r = 0; r < rounds; r++) await Promise.all(Array.from({ length: 20 }, () => subscribeOnce(loaded.url)));
    const delay = await loopDelayP99(loaded.url);

    const ratio = p99(loadedMs) / p99(noneMs);
    o.results.retained = { unrelated, samples, seedSeconds, p99NoneMs: p99(noneMs), p99LoadedMs: p99(loadedMs), ratio, loopDelayP99Ms: delay, rounds };
    o.row('retained: seed 100k unrelated retained topics (HTTP, batches of 1000)', `${seedSeconds.toFixed(1)} s`);
    o.row(
      `retained: subscribe p99, 100k unrelated / none (${samples} WS subscribes each, in turn)`,
      `${p99(loadedMs).toFixed(2)} / ${p99(noneMs).toFixed(2)} ms = ${ratio.toFixed(2)}`,
      '≤ 1.2',
      ratio <= 1.2 ? 'PASS' : 'MISS',
    );
    o.row('  subscribe p50 / p90, 100k unrelated | none', `${pct(loadedMs, 0.5).toFixed(2)} / ${pct(loadedMs, 0.9).toFixed(2)} | ${pct(noneMs, 0.5).toFixed(2)} / ${pct(noneMs, 0.9).toFixed(2)} ms`);
    o.row(
      `retained: server event-loop delay p99 (1 ms samples), 20 subscribes at once × ${rounds}`,
      `${delay.toFixed(2)} ms`,
      '≤ 10 ms',
      delay <= 10 ? 'PASS' : 'MISS',
    );
  } finally {
    await Promise.all([none.stop(), loaded.stop()]);
  }
}
