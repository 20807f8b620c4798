/**
 * Unit benchmark of the subscription index: 100k filters in a realistic mix, time per
 * `SubscriptionTrie.match()` over many topics (median and p99 over batches).
 * Run: `npx tsc -p . && node dist/bench/trie.js` — prints a line and the JSON result, and writes
 * `bench/results/trie-<timestamp>.json`. `bench/run.ts` also calls {@link runTrieBench}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SubscriptionTrie } from '../src/core/trie.js';
import { prng } from '../test/helpers/prng.js';

export interface TrieResult {
  filters: number;
  /** Distinct topics matched, cycled through batch after batch. */
  topics: number;
  matchesPerBatch: number;
  batches: number;
  medianNsPerMatch: number;
  p99NsPerMatch: number;
  meanNsPerMatch: number;
  /** Values visited per match (subscribers a message on that topic reaches). */
  avgHits: number;
  /** Share of topics that match at least one filter. */
  hitRate: number;
  buildMs: number;
  heapUsedMB: number;
  node: string;
}

/**
 * The filter mix (shares of `nFilters`): what an IoT/chat deployment looks like — mostly one
 * exact topic per device, per-user subtrees, per-fleet wildcards, a few broad `#` watchers.
 */
function filterFor(i: number, n: number, rnd: () => number): string {
  const r = i / n;
  const id = Math.floor(rnd() * 50_000);
  if (r < 0.5) return `devices/${id}/events`; // 50% exact per-device
  if (r < 0.6) return `devices/${id}/+`; // 10% every stream of one device
  if (r < 0.8) return `users/${Math.floor(rnd() * 20_000)}/#`; // 20% a user's subtree
  if (r < 0.9) return `fleets/${Math.floor(rnd() * 1000)}/+/status`; // 10% fleet dashboards
  if (r < 0.9949) return `tenants/${Math.floor(rnd() * 5000)}/#`; // ~9.5% whole tenants
  if (r < 0.9979) return `+/+/alerts/#`; // 0.3% alert watchers (one filter, 300 subscribers)
  if (r < 0.9999) return `devices/+/status`; // 0.2% status dashboards (one filter, 200 subscribers)
  return '#'; // 0.01% firehose (10 subscribers)
}

function topicFor(rnd: () => number): string {
  const k = rnd();
  const id = Math.floor(rnd() * 50_000);
  if (k < 0.35) return `devices/${id}/events`;
  if (k < 0.5) return `devices/${id}/status`;
  if (k < 0.65) return `users/${Math.floor(rnd() * 20_000)}/inbox/${Math.floor(rnd() * 100)}`;
  if (k < 0.75) return `fleets/${Math.floor(rnd() * 1000)}/truck${id}/status`;
  if (k < 0.85) return `tenants/${Math.floor(rnd() * 5000)}/orders/${id}/paid`;
  if (k < 0.9) return `site/${id % 100}/alerts/fire/${id}`;
  if (k < 0.95) return `$SYS/broker/clients/${id}`;
  return `misc/unmatched/${id}/x/y`;
}

export function runTrieBench(nFilters = 100_000, opts: { batches?: number; batchSize?: number } = {}): TrieResult {
  const batches = opts.batches ?? 300;
  const batchSize = opts.batchSize ?? 1000;
  const rnd = prng(20261124);
  const trie = new SubscriptionTrie<number>();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < nFilters; i++) trie.add(filterFor(i, nFilters, rnd), i);
  const buildMs = Number(process.hrtime.bigint() - t0) / 1e6;

  const topics = Array.from({ length: 20_000 }, () => topicFor(rnd));
  let hits = 0;
  const visit = () => {
    hits++;
  };
  let hitTopics = 0;
  for (const t of topics) {
    const before = hits;
    trie.match(t, visit);
    if (hits > before) hitTopics++;
  }
  // warm-up, then measure
  for (let w = 0; w < 20; w++) for (let i = 0; i < batchSize; i++) trie.match(topics[(w * batchSize + i) % topics.length], visit);
  hits = 0;
  const samples: number[] = [];
  let next = 0;
  for (let b = 0; b < batches; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < batchSize; i++) {
      trie.match(topics[next], visit);
      if (++next === topics.length) next = 0;
    }
    samples.push(Number(process.hrtime.bigint() - start) / batchSize);
  }
  const mean = samples.reduce((a, x) => a + x, 0) / samples.length;
  samples.sort((a, b) => a - b);
  return {
    filters: trie.size,
    topics: topics.length,
    matchesPerBatch: batchSize,
    batches,
    medianNsPerMatch: Math.round(samples[samples.length >> 1]),
    p99NsPerMatch: Math.round(samples[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))]),
    meanNsPerMatch: Math.round(mean),
    avgHits: Math.round((hits / (batches * batchSize)) * 100) / 100,
    hitRate: Math.round((hitTopics / topics.length) * 1000) / 1000,
    buildMs: Math.round(buildMs),
    heapUsedMB: Math.round(process.memoryUsage().heapUsed / 1048576),
    node: process.version,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = runTrieBench();
  const us = (ns: number) => (ns / 1000).toFixed(2);
  console.log(
    `trie: ${r.filters} filters, ${r.batches}×${r.matchesPerBatch} matches: median ${us(r.medianNsPerMatch)} µs/match (${r.medianNsPerMatch} ns), ` +
      `p99 ${us(r.p99NsPerMatch)} µs/match (${r.p99NsPerMatch} ns), ${r.avgHits} subscribers reached per match, built in ${r.buildMs} ms`,
  );
  const result = { date: new Date().toISOString(), ...r };
  console.log(JSON.stringify(result, null, 2));
  // dist/bench/trie.js → <repo>/bench/results
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}trie-${result.date.replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`wrote ${file}`);
}
