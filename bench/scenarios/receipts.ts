/**
 * Scenario `receipts`: one message to each of N principals (each its own topic `user/<sub>/inbox`,
 * each a WebSocket client with a token of its own), published over one WebSocket, in rounds with
 * and without a receipt request, alternating in one run. With receipts every client acknowledges
 * each message (an `ack` frame; the round ends when every ack is answered, so the server's ack
 * work is inside the measured CPU). Then memory per pending receipt: N messages nobody
 * acknowledges, with and without a receipt, and the difference in the server's RSS.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { mintToken } from '../../src/auth/token.js';
import { cpuSeconds, rssBytes, startServerProcess } from '../lib/procs.js';
import type { Row } from './adversarial.js';

export interface ReceiptsOptions {
  quick: boolean;
  row: Row;
  results: Record<string, unknown>;
}

const ROOT = new URL('../../../', import.meta.url).pathname;
const SECRET = 'bench-receipts-secret-0123456789';
const MARKER = 'omnipush-receipt';
/** Publish frames in flight on the publisher's socket. */
const WINDOW = 256;

interface RoundResult {
  deliveriesPerSec: number;
  /** Server CPU per message (µs), acks included when asked. */
  cpuUsPerMessage: number;
}

interface Recipient {
  ws: WebSocket;
  sub: string;
}

/** Counts what the recipients get and answer in one round. */
class Tally {
  delivered = 0;
  acked = 0;
  ackAll = false;
  private waiters: Array<() => void> = [];
  bump(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  until(check: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`receipts bench: timed out waiting for ${what}`)), ms);
      const look = () => {
        if (check()) {
          clearTimeout(t);
          resolve();
        } else this.waiters.push(look);
      };
      look();
    });
  }
}

function open(url: string, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`, { headers: { authorization: `Bearer ${token}` } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function recipients(url: string, n: number, tally: Tally): Promise<Recipient[]> {
  const out: Recipient[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(200, n - i) }, async (_, j) => {
        const sub = `p${i + j}`;
        const token = await mintToken({ secret: SECRET, sub, grants: { publish: [], subscribe: [`user/${sub}/#`], deny: { publish: [], subscribe: [] } }, expiresIn: '2h' });
        const ws = await open(url, token);
        let nextId = 1;
        ws.on('message', (d: Buffer) => {
          const f = JSON.parse(d.toString()) as { type: string; cursor?: string; properties?: Array<[string, string]> };
          if (f.type === 'message') {
            tally.delivered++;
            if (tally.ackAll && f.properties?.some((p) => p[0] === MARKER)) ws.send(JSON.stringify({ type: 'ack', id: nextId++, cursors: [f.cursor] }));
            tally.bump();
          } else if (f.type === 'acked') {
            tally.acked++;
            tally.bump();
          }
        });
        ws.send(JSON.stringify({ type: 'subscribe', topics: [`user/${sub}/inbox`], since: 'now' }));
        return { ws, sub };
      }),
    );
    out.push(...batch);
  }
  return out;
}

/** Publishes one message to each recipient over `pub`, WINDOW in flight; resolves when all are answered. */
function publishAll(pub: WebSocket, subs: string[], receipt: Record<string, unknown> | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = 0;
    const onMsg = (d: Buffer) => {
      const f = JSON.parse(d.toString()) as { type: string; message?: string };
      if (f.type === 'error') {
        pub.off('message', onMsg);
        reject(new Error(`publish refused: ${f.message}`));
        return;
      }
      if (f.type !== 'ack') return;
      answered++;
      if (answered === subs.length) {
        pub.off('message', onMsg);
        resolve();
      } else if (sent < subs.length) send();
    };
    const send = () => {
      const sub = subs[sent++];
      pub.send(JSON.stringify({ type: 'publish', id: sent, topic: `user/${sub}/inbox`, data: `hello ${sub}`, ...(receipt ? { receipt } : {}) }));
    };
    pub.on('message', onMsg);
    while (sent < Math.min(WINDOW, subs.length)) send();
  });
}

async function round(pid: number, pub: WebSocket, subs: string[], tally: Tally, withReceipts: boolean): Promise<RoundResult> {
  tally.delivered = 0;
  tally.acked = 0;
  tally.ackAll = withReceipts;
  const n = subs.length;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const published = publishAll(pub, subs, withReceipts ? { within: '1h', fallback: 'none' } : undefined);
  await tally.until(() => tally.delivered >= n, 120_000, 'deliveries');
  const t1 = performance.now();
  await published;
  if (withReceipts) await tally.until(() => tally.acked >= n, 120_000, 'acks answered');
  // the server's own share of the round: its CPU until every answer came back
  const cpu = cpuSeconds(pid) - cpu0;
  return { deliveriesPerSec: Math.round(n / ((t1 - t0) / 1000)), cpuUsPerMessage: Math.round(((cpu * 1e6) / n) * 10) / 10 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function settledRss(pid: number): Promise<number> {
  // RSS after the server went quiet for a moment (its write batches and GC settle)
  await new Promise((r) => setTimeout(r, 1500));
  return rssBytes(pid);
}

export async function receiptsScenario(o: ReceiptsOptions): Promise<void> {
  const n = o.quick ? 1000 : 10_000;
  const rounds = o.quick ? 2 : 3;
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-receipts-'));
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      auth: { jwt: { secret: SECRET } },
      receipts: { rules: [{ filter: 'user/{sub}/#' }], maxPending: 10 * n, maxPendingPerPrincipal: 10 * n },
      limits: { maxConnections: 19_000, preAuth: { max: 19_000, perAddress: 19_000 } },
      quotas: { connectionsPerAddress: 19_000 },
    }),
  );
  const server = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--log-level', 'warn', '--store', 'memory', '--config', config]);
  const pid = server.proc.pid!;
  const tally = new Tally();
  let clients: Recipient[] = [];
  let pub: WebSocket | undefined;
  try {
    clients = await recipients(server.url, n, tally);
    const pubToken = await mintToken({ secret: SECRET, sub: 'bench-publisher', grants: { publish: ['user/#'], subscribe: [], deny: { publish: [], subscribe: [] } }, expiresIn: '2h' });
    pub = await open(server.url, pubToken);
    const subs = clients.map((c) => c.sub);
    // warm-up, then alternate so both sides see the same machine
    await round(pid, pub, subs, tally, false);
    const plain: RoundResult[] = [];
    const asked: RoundResult[] = [];
    for (let i = 0; i < rounds; i++) {
      plain.push(await round(pid, pub, subs, tally, false));
      asked.push(await round(pid, pub, subs, tally, true));
    }
    const p = { deliveriesPerSec: median(plain.map((r) => r.deliveriesPerSec)), cpuUsPerMessage: median(plain.map((r) => r.cpuUsPerMessage)) };
    const a = { deliveriesPerSec: median(asked.map((r) => r.deliveriesPerSec)), cpuUsPerMessage: median(asked.map((r) => r.cpuUsPerMessage)) };

    // memory: N unacknowledged messages without, then with, a pending receipt each
    tally.ackAll = false;
    tally.delivered = 0;
    const base = await settledRss(pid);
    await publishAll(pub, subs, undefined);
    const afterPlain = await settledRss(pid);
    await publishAll(pub, subs, { within: '1h', fallback: 'none' });
    const afterPending = await settledRss(pid);
    const perMessage = (afterPlain - base) / n;
    const perPending = (afterPending - afterPlain) / n;

    o.results.receipts = { principals: n, rounds, plain, asked, medians: { plain: p, asked: a }, rss: { base, afterPlain, afterPending, perMessage, perPending } };
    const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
    o.row(
      `receipts: 1 message to each of ${k(n)} principals over WS, deliveries/s (with receipts + acks / without)`,
      `${k(a.deliveriesPerSec)}/s / ${k(p.deliveriesPerSec)}/s = ${(a.deliveriesPerSec / p.deliveriesPerSec).toFixed(2)}×`,
    );
    o.row('  server CPU per message, acks included (with / without)', `${a.cpuUsPerMessage} µs / ${p.cpuUsPerMessage} µs = ${(a.cpuUsPerMessage / p.cpuUsPerMessage).toFixed(2)}×`);
    o.row('  memory per pending receipt (RSS slope, beyond the message itself)', `${Math.round(perPending)} B (a message without one: ${Math.round(perMessage)} B)`);
  } finally {
    for (const c of clients) c.ws.terminate();
    pub?.terminate();
    await server.stop();
  }
}
