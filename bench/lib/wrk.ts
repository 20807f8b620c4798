import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const WRK = '/usr/bin/wrk';

export function hasWrk(): boolean {
  return existsSync(WRK);
}

export interface WrkResult {
  requestsPerSec: number;
  p50ms: number;
  p99ms: number;
  /** Answers other than 2xx/3xx, plus socket errors (connect, read, write, timeout). */
  errors: number;
}

export interface WrkOptions {
  url: string;
  body: string;
  connections: number;
  seconds: number;
  /** A fresh `Idempotency-Key` header on every request. */
  idempotencyKey?: boolean;
}

/** One wrk thread leaves the other core to the server on a 2-core machine. */
const THREADS = 1;

/** Runs wrk (POST `body` over keep-alive connections) and reads its summary. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'omnipush-wrk-'));
  const script = join(dir, 'post.lua');
  const lua = [
    'wrk.method = "POST"',
    `wrk.body = ${JSON.stringify(o.body)}`,
    'wrk.headers["Content-Type"] = "application/json"',
  ];
  if (o.idempotencyKey) {
    lua.push('local n = 0', `local prefix = "k${process.pid}-" .. tostring(os.time()) .. "-"`, 'request = function()', '  n = n + 1', '  wrk.headers["Idempotency-Key"] = prefix .. n', '  return wrk.format()', 'end');
  }
  writeFileSync(script, `${lua.join('\n')}\n`);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(WRK, ['-t', String(THREADS), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency', '-s', script, o.url], { timeout: (o.seconds + 30) * 1000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
    });
    return parseWrk(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rps) throw new Error(`wrk printed no rate:\n${out}`);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    return m ? Math.round(ms(m[1], m[2]) * 100) / 100 : NaN;
  };
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = (non2xx ? Number(non2xx[1]) : 0) + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
  return { requestsPerSec: Math.round(Number(rps[1])), p50ms: pct('50'), p99ms: pct('99'), errors };
}
