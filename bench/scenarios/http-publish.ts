/**
 * Single-message HTTP publish against its floor, side by side in one run: a bare node:http server
 * that reads the body and answers a small JSON, then ours with the memory store and with the sqlite
 * store (and ours with an `Idempotency-Key` on every request), each driven by wrk over 32 keep-alive
 * connections.
 */
import { cpuSeconds, type ServerProc } from '../lib/procs.js';
import { stampedPayload } from '../lib/publish.js';
import { runWrk, type WrkResult } from '../lib/wrk.js';

export const HTTP_PUBLISH_CONNECTIONS = 32;

export interface HttpPublishRun extends WrkResult {
  serverCpuPct: number;
}

/** wrk against `server`'s `POST /v1/publish` with one 100-byte message per request. */
export async function httpPublish(server: ServerProc, seconds: number, idempotencyKey = false): Promise<HttpPublishRun> {
  const pid = server.proc.pid!;
  const body = JSON.stringify({ topic: 'bench/publish', data: stampedPayload() });
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const r = await runWrk({ url: `${server.url}/v1/publish`, body, connections: HTTP_PUBLISH_CONNECTIONS, seconds, idempotencyKey });
  const elapsed = (performance.now() - t0) / 1000;
  return { ...r, serverCpuPct: Math.round(((cpuSeconds(pid) - cpu0) / elapsed) * 100) };
}
