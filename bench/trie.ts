/**
 * Unit benchmark of the subscription index: 100k filters, time per topic match.
 * Run: `npm run build && node dist/bench/trie.js`
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { SubscriptionTrie } from '../src/core/trie.js';

export interface TrieResult {
  filters: number;
  matchesPerBatch: number;
  medianNsPerMatch: number;
  p99NsPerMatch: number;
  avgHits: number;
}

export function runTrieBench(nFilters = 100_000): TrieResult {
  const trie = new SubscriptionTrie<number>();
  // a realistic mix: per-device topics, per-user subtrees, a few broad wildcards
  for (let i = 0; i < nFilters; i++) {
    const k = i % 10;
    let f: string;
    if (k < 5) f = `devices/${i}/events`;
    else if (k < 7) f = `users/${i}/#`;
    else if (k < 9) f = `devices/+/status/${i % 1000}`;
    else f = `region/${i % 50}/+/alerts/#`;
    trie.add(f, i);
  }
  trie.add('#', -1);
  trie.add('devices/+/events', -2);
  const topics: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const k = i % 4;
    if (k === 0) topics.push(`devices/${i * 37}/events`);
    else if (k === 1) topics.push(`users/${i * 53}/inbox/new`);
    else if (k === 2) topics.push(`devices/${i}/status/${i % 1000}`);
    else topics.push(`region/${i % 50}/eu/alerts/fire`);
  }
  let hits = 0;
  const count = () => {
    hits++;
  };
  for (let w = 0; w < 20; w++) for (const t of topics) trie.match(t, count);
  hits = 0;
  const samples: number[] = [];
  for (let b = 0; b < 200; b++) {
    const t0 = process.hrtime.bigint();
    for (const t of topics) trie.match(t, count);
    samples.push(Number(process.hrtime.bigint() - t0) / topics.length);
  }
  samples.sort((a, b) => a - b);
  return {
    filters: trie.size,
    matchesPerBatch: topics.length,
    medianNsPerMatch: Math.round(samples[samples.length >> 1]),
    p99NsPerMatch: Math.round(samples[Math.floor(samples.length * 0.99)]),
    avgHits: hits / (200 * topics.length),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = runTrieBench();
  console.log(`trie: ${r.filters} filters, match median ${(r.medianNsPerMatch / 1000).toFixed(2)} µs, p99 ${(r.p99NsPerMatch / 1000).toFixed(2)} µs, ${r.avgHits.toFixed(2)} hits/match`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/trie-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, JSON.stringify(r, null, 2));
}
