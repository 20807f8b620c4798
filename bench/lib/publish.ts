import { Agent, fetch } from 'undici';

/**
 * Idle keep-alive connections are dropped well before node's server-side 5 s timeout: otherwise the
 * server may close one just as a request goes out on it, and the publish fails with ECONNRESET.
 */
const publisher = new Agent({ keepAliveTimeout: 1000, connections: 64 });

/** A 100-byte payload that starts with the send time in ms: `<ms>|xxxx...`. */
export function stampedPayload(size = 100): string {
  const head = `${Date.now()}|`;
  return head + 'x'.repeat(Math.max(0, size - head.length));
}

export async function publishBatch(url: string, topic: string, n: number): Promise<void> {
  const messages = Array.from({ length: n }, () => ({ topic, data: stampedPayload() }));
  const r = await fetch(`${url}/v1/publish`, { dispatcher: publisher, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(n === 1 ? messages[0] : { messages }) });
  if (r.status !== 200) throw new Error(`publish failed: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `send` `perSec` times a second for `seconds`, on a schedule kept from the start (a late
 * call is followed by the next at once, not a full interval later); returns how many were sent.
 */
export async function paced(perSec: number, seconds: number, send: () => void): Promise<number> {
  const t0 = performance.now();
  let sent = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const wait = t0 + (sent * 1000) / perSec - performance.now();
    if (wait > 0) await sleep(wait);
    send();
    sent++;
  }
  return sent;
}
