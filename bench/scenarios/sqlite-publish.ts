import { Histogram } from '../lib/histogram.js';
import { cpuSeconds, type ServerProc } from '../lib/procs.js';
import { publishBatch } from '../lib/publish.js';

export interface PublishResult {
  batched: { messagesPerSec: number; batchSize: number; concurrency: number; serverCpuPct: number };
  single: { messagesPerSec: number; concurrency: number; p50ms: number; p99ms: number };
}

async function run(seconds: number, concurrency: number, one: () => Promise<number>): Promise<{ count: number; elapsed: number; hist: Histogram }> {
  const hist = new Histogram();
  let count = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        // (not `count += await one()`: that reads `count` before the await and loses updates)
        const n = await one();
        count += n;
        hist.add(performance.now() - s);
      }
    }),
  );
  return { count, elapsed: (performance.now() - t0) / 1000, hist };
}

/** Sustained publish throughput into the sqlite store over HTTP (batches of 100, and single messages). */
export async function sqlitePublish(server: ServerProc, seconds: number): Promise<PublishResult> {
  const pid = server.proc.pid!;
  const cpu0 = cpuSeconds(pid);
  const b = await run(seconds, 8, async () => {
    await publishBatch(server.url, `bench/store/${Math.floor(Math.random() * 50)}`, 100);
    return 100;
  });
  const cpu = cpuSeconds(pid) - cpu0;
  const s = await run(seconds, 32, async () => {
    await publishBatch(server.url, `bench/single/${Math.floor(Math.random() * 50)}`, 1);
    return 1;
  });
  return {
    batched: { messagesPerSec: Math.round(b.count / b.elapsed), batchSize: 100, concurrency: 8, serverCpuPct: Math.round((cpu / b.elapsed) * 100) },
    single: { messagesPerSec: Math.round(s.count / s.elapsed), concurrency: 32, p50ms: s.hist.percentile(0.5), p99ms: s.hist.percentile(0.99) },
  };
}
