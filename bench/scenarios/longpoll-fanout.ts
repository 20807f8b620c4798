import { join } from 'node:path';
import { Histogram } from '../lib/histogram.js';
import { cpuSeconds, forkLoadGen, type ServerProc } from '../lib/procs.js';
import { publishBatch, sleep } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';
import { headCursor, POLL_TOPIC } from './longpoll-held.js';

export interface LongPollResult {
  clients: number;
  published: number;
  deliveriesPerSec: number;
  p50ms: number;
  p99ms: number;
  lost: number;
  serverCpuPct: number;
}

interface Stats {
  delivered: number;
  hist: number[];
  errors: number;
  perClient: number[];
}

/** N long-poll clients repolling from their cursor; a fixed publish rate; every client must see every message. */
export async function longpollFanout(server: ServerProc, clients: number, seconds: number, perSec = 5): Promise<LongPollResult> {
  const pid = server.proc.pid!;
  const topic = POLL_TOPIC;
  const since = await headCursor(server);
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, 'poll-clients.js'), []));
  try {
    const half = Math.ceil(clients / 2);
    await gens[0].ask({ cmd: 'start', url: server.url, topic, count: half, since });
    await gens[1].ask({ cmd: 'start', url: server.url, topic, count: clients - half, since });
    await sleep(1500);
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    let sent = 0;
    while (performance.now() - t0 < seconds * 1000) {
      const wait = t0 + (sent * 1000) / perSec - performance.now();
      if (wait > 0) await sleep(wait);
      await publishBatch(server.url, topic, 1);
      sent++;
    }
    const until = performance.now() + 15_000;
    let all: Stats[] = [];
    for (;;) {
      all = await Promise.all(gens.map((g) => g.ask<Stats>({ cmd: 'stats' })));
      const min = Math.min(...all.flatMap((s) => s.perClient));
      if (min >= sent || performance.now() > until) break;
      await sleep(50);
    }
    const elapsed = (performance.now() - t0) / 1000;
    const hist = new Histogram();
    for (const s of all) hist.merge(s.hist);
    const lost = all.flatMap((s) => s.perClient).reduce((n, c) => n + Math.max(0, sent - c), 0);
    return {
      clients,
      published: sent,
      deliveriesPerSec: Math.round(all.reduce((n, s) => n + s.delivered, 0) / elapsed),
      p50ms: hist.percentile(0.5),
      p99ms: hist.percentile(0.99),
      lost,
      serverCpuPct: Math.round(((cpuSeconds(pid) - cpu0) / elapsed) * 100),
    };
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'stop' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}
