import { execFileSync } from 'node:child_process';
import { createECDH, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateVapidKeys } from '../../src/transports/webpush/vapid.js';
import { cpuSeconds, forkLoadGen, startServerProcess, type ServerProc } from '../lib/procs.js';
import { sleep } from '../lib/publish.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
/** Requests in flight per push-service origin, for us (config) and for the library's loop alike. */
const CONCURRENCY = 32;

export interface SenderFigures {
  sendsPerSec: number;
  p50ms: number;
  p99ms: number;
  /** CPU of the sending process per send, µs. */
  cpuUsPerSend: number;
  failed: number;
}

export interface WebPushResult {
  subscriptions: number;
  rounds: number;
  tls: boolean;
  /** 1-minute load average around the measured rounds (the machine may be shared). */
  loadAvg: number;
  ours: SenderFigures;
  lib: SenderFigures;
}

interface Sub {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

function stats(pushUrl: string, ca: string): Promise<{ arrivals: number[]; rejected: number }> {
  return new Promise((resolve, reject) => {
    get(`${pushUrl}/stats`, { ca }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve(JSON.parse(text) as { arrivals: number[]; rejected: number }));
    }).on('error', reject);
  });
}

/** Waits until the push service has seen `n` more requests; returns their arrival times. */
async function collect(pushUrl: string, ca: string, n: number, timeoutMs: number): Promise<{ arrivals: number[]; rejected: number }> {
  const arrivals: number[] = [];
  let rejected = 0;
  const deadline = Date.now() + timeoutMs;
  while (arrivals.length + rejected < n) {
    if (Date.now() > deadline) throw new Error(`push service saw ${arrivals.length + rejected} of ${n} requests`);
    await sleep(25);
    const s = await stats(pushUrl, ca);
    for (const a of s.arrivals) arrivals.push(a);
    rejected += s.rejected;
  }
  return { arrivals, rejected };
}

function figures(runs: Array<{ t0: number; arrivals: number[]; cpu: number; failed: number }>): SenderFigures {
  // sorted latencies rather than the shared histogram: the library's loop runs past its 10 s cap
  const lat: number[] = [];
  let sends = 0;
  let ms = 0;
  let cpu = 0;
  let failed = 0;
  for (const r of runs) {
    for (const a of r.arrivals) lat.push(a - r.t0);
    sends += r.arrivals.length;
    ms += Math.max(...r.arrivals) - r.t0;
    cpu += r.cpu;
    failed += r.failed;
  }
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(lat.length * p) - 1)];
  return { sendsPerSec: Math.round(sends / (ms / 1000)), p50ms: pct(0.5), p99ms: pct(0.99), cpuUsPerSend: Math.round((cpu / sends) * 1e6), failed };
}

/**
 * One message to `count` subscriptions of one push-service origin, `rounds` times: our server
 * (publish → fan-out → durable queue → encrypt → send) against the `web-push` library's
 * `sendNotification` loop over the same subscriptions. Time is from the publish (or the loop's
 * start) to each request's arrival at the push service.
 */
export async function webpushScenario(count: number, rounds: number): Promise<WebPushResult> {
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-bench-push-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const push = await startServerProcess(join(ROOT, 'dist/bench/peers/push-service.js'), [cert, key]);
  const ca = readFileSync(cert, 'utf8');
  let ours: ServerProc | undefined;
  try {
    const subs: Sub[] = Array.from({ length: count }, (_, i) => {
      const e = createECDH('prime256v1');
      e.generateKeys();
      return { endpoint: `${push.url}/push/${i}`, keys: { p256dh: e.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') } };
    });
    const payloadData = { title: 'Bench', body: 'x'.repeat(60) };

    ours = await startServerProcess(join(ROOT, 'bin/omnipush.js'), ['serve', '--port', '0', '--log-level', 'warn', '--store', 'memory'], {
      OMNIPUSH_WEBPUSH__SUBJECT: 'mailto:bench@example.com',
      OMNIPUSH_WEBPUSH__CA_FILES: JSON.stringify([cert]),
      OMNIPUSH_WEBPUSH__ENDPOINT_HOSTS: JSON.stringify(['127.0.0.1']),
      OMNIPUSH_WEBPUSH__CONCURRENCY_PER_ORIGIN: String(CONCURRENCY),
      OMNIPUSH_WEBPUSH__MAX_SUBSCRIPTIONS_PER_PRINCIPAL: String(count + 1),
    });
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < subs.length) {
          const s = subs[next++];
          const r = await fetch(`${ours!.url}/v1/webpush/subscriptions`, { method: 'POST', body: JSON.stringify({ subscription: s, topics: ['bench/push'] }) });
          if (r.status !== 201) throw new Error(`registration failed: ${r.status} ${await r.text()}`);
        }
      }),
    );

    const runOurs = async () => {
      const cpu0 = cpuSeconds(ours!.proc.pid!);
      const t0 = Date.now();
      const r = await fetch(`${ours!.url}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'bench/push', data: payloadData }) });
      if (r.status !== 200) throw new Error(`publish failed: ${r.status}`);
      const { arrivals, rejected } = await collect(push.url, ca, count, 120_000);
      return { t0, arrivals, cpu: cpuSeconds(ours!.proc.pid!) - cpu0, failed: rejected };
    };
    const lib = forkLoadGen(join(ROOT, 'dist/bench/peers/webpush-lib-sender.js'), []);
    // the same payload size our server sends (topic, cursor, time, data, notification fields)
    const payload = JSON.stringify({ topic: 'bench/push', cursor: 'xxxxxxxx_1', publishedAt: Date.now(), title: payloadData.title, body: payloadData.body, data: JSON.stringify(payloadData) });
    const vapid = { subject: 'mailto:bench@example.com', ...generateVapidKeys() };
    const runLib = async () => {
      const cpu0 = cpuSeconds(lib.proc.pid!);
      const t0 = Date.now();
      const done = lib.ask<{ failed: number }>({ subs, payload, vapid, concurrency: CONCURRENCY, ca });
      const { arrivals, rejected } = await collect(push.url, ca, count, 300_000);
      const { failed } = await done;
      return { t0, arrivals, cpu: cpuSeconds(lib.proc.pid!) - cpu0, failed: failed + rejected };
    };
    // warm-up (connections, JIT), then rounds taken in turn, so that load from other processes on
    // the machine falls on both sides alike
    await runOurs();
    await runLib();
    const oursRuns = [];
    const libRuns = [];
    const load0 = loadavg()[0];
    for (let i = 0; i < rounds; i++) {
      oursRuns.push(await runOurs());
      libRuns.push(await runLib());
    }
    lib.stop();
    return { subscriptions: count, rounds, tls: true, loadAvg: Math.round(((load0 + loadavg()[0]) / 2) * 10) / 10, ours: figures(oursRuns), lib: figures(libRuns) };
  } finally {
    await ours?.stop();
    await push.stop();
  }
}
