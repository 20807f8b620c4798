/**
 * Load generator: N long-poll loops, each always repolling from the cursor it was given.
 * Counts distinct messages per client (a loss shows as a client short of the published count).
 * IPC: {cmd:'start', url, topic, count, since} · {cmd:'stats', reset} · {cmd:'stop'}.
 */
import { Agent, request } from 'node:http';
import { Histogram } from '../lib/histogram.js';

let running = false;
let delivered = 0;
let errors = 0;
let hist = new Histogram();
let perClient: number[] = [];
let active = 0;

function pollOnce(agent: Agent, url: URL, topic: string, since: string): Promise<{ cursor: string; datas: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, agent, path: `/v1/poll?topic=${encodeURIComponent(topic)}&since=${since}&timeout=20&limit=100` },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const j = JSON.parse(Buffer.concat(chunks).toString()) as { cursor: string; messages: Array<{ data: string }> };
            resolve({ cursor: j.cursor, datas: j.messages.map((m) => m.data) });
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function loop(agent: Agent, url: URL, topic: string, since: string, idx: number): Promise<void> {
  let cursor = since;
  active++;
  while (running) {
    try {
      const r = await pollOnce(agent, url, topic, cursor);
      const now = Date.now();
      for (const d of r.datas) {
        delivered++;
        perClient[idx]++;
        const ts = Number(d.slice(0, d.indexOf('|')));
        if (ts > 0) hist.add(now - ts);
      }
      cursor = r.cursor;
    } catch {
      errors++;
      if (!running) break;
    }
  }
  active--;
}

process.on('message', async (m: { id: number; cmd: string; url?: string; topic?: string; count?: number; since?: string; reset?: boolean }) => {
  let result: unknown = null;
  if (m.cmd === 'start') {
    running = true;
    const agent = new Agent({ keepAlive: true, maxSockets: m.count! + 10 });
    perClient = new Array<number>(m.count!).fill(0);
    const url = new URL(m.url!);
    for (let i = 0; i < m.count!; i++) void loop(agent, url, m.topic!, m.since!, i);
    result = { started: m.count };
  } else if (m.cmd === 'stats') {
    result = { delivered, hist: hist.counts, errors, active, perClient };
    if (m.reset) {
      delivered = 0;
      hist = new Histogram();
    }
  } else if (m.cmd === 'stop') {
    running = false;
    result = { ok: true };
  }
  process.send!({ id: m.id, result });
});
