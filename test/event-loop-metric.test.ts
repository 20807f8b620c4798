import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { spawnServer, startTestServer, waitFor, within } from './helpers/server.js';

/** The server's event-loop delay gauges, in ms, since the previous scrape (which this one ends). */
async function scrape(base: string): Promise<{ p99: number; max: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const read = (name: string): number => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    assert.ok(m, `${name} on /metrics`);
    return Number(m[1]) * 1000;
  };
  return { p99: read('omnipush_event_loop_delay_p99_seconds'), max: read('omnipush_event_loop_delay_max_seconds') };
}

describe('event-loop delay gauges', () => {
  it('an idle loop reads near 0, not the sampling interval', async () => {
    // a 100 ms interval: the raw histogram would read 100 ms for an idle loop
    const s = await startTestServer({ metrics: { loopDelayResolution: 100 } });
    try {
      await scrape(s.http);
      await new Promise((r) => setTimeout(r, 1000)); // an idle window of about ten samples
      const d = await scrape(s.http);
      assert.ok(d.p99 < 50, `idle p99 ${d.p99} ms`);
      assert.ok(d.max < 50, `idle max ${d.max} ms`);
    } finally {
      await s.close();
    }
  });

  it('a 80 ms stall while the server has work reads as about 80 ms with a 1 ms resolution, on ours and the standard gauges', async () => {
    const s = await startTestServer({ metrics: { loopDelayResolution: 1 } });
    try {
      await scrape(s.http);
      s.metrics.loopDelay.wake(); // what a request, a connection or a publish does
      const until = performance.now() + 80;
      while (performance.now() < until); // the stall: this process is the server's
      await new Promise((r) => setTimeout(r, 20));
      const text = await (await fetch(`${s.http}/metrics`)).text();
      const read = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]) * 1000;
      const ours = read('omnipush_event_loop_delay_max_seconds');
      assert.ok(ours >= 75, `max ${ours} ms after an 80 ms stall`);
      assert.ok(ours < 400, `max ${ours} ms`);
      // one sampler, one window: the standard gauge reads the same stall, not a 10 ms histogram of prom-client's
      assert.equal(read('nodejs_eventloop_lag_max_seconds'), ours);
      assert.ok(read('nodejs_eventloop_lag_min_seconds') < 5, 'the standard gauges report the delay, not the interval');
    } finally {
      await s.close();
    }
  });

  it('samples at the resolution while the loop works and once a second while it idles', async () => {
    const s = await startTestServer({ metrics: { loopDelayResolution: 10 } });
    const sampler = s.metrics.loopDelay;
    try {
      // work that keeps the loop half busy for 400 ms: 5 ms of code, 5 ms of rest
      sampler.take();
      sampler.wake();
      const end = performance.now() + 400;
      while (performance.now() < end) {
        const until = performance.now() + 5;
        while (performance.now() < until);
        await new Promise((r) => setTimeout(r, 5));
      }
      const busy = sampler.take().count;
      // ~25 on a quiet machine; one sample and back to idle would be a sampler that ignores the work
      assert.ok(busy >= 5, `${busy} samples in 400 ms of work at a 10 ms resolution`);
      await waitFor(() => !sampler.sampling, 'the sampler to see the loop idle', 2000);
      sampler.take();
      await new Promise((r) => setTimeout(r, 1500));
      const idle = sampler.take().count;
      assert.ok(idle <= 3, `${idle} samples in 1.5 idle seconds (at 10 ms it would be ~150)`);
      // a request is work: the sampler samples at the resolution again at once, not at its next idle sample
      await waitFor(() => !sampler.sampling, 'the sampler idle', 2000);
      sampler.take();
      const res = await fetch(`${s.http}/health`);
      await res.arrayBuffer();
      await waitFor(() => sampler.take().count > 0 || undefined, 'a sample after a request', 500);
    } finally {
      await s.close();
    }
  });

  it('an idle server does not wake its event loop a hundred times a second, before its doors were used or after', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
    // pings every second: while a WebSocket is open the ping sweep runs every 1000/128 ms
    const child = await spawnServer(['--store', 'memory', '--log-level', 'warn'], { OMNIPUSH_WEBSOCKET__PING_INTERVAL: '1', OMNIPUSH_SSE__HEARTBEAT: '1' });
    try {
      const pid = child.proc.pid!;
      const switches = (): number => Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1]);
      const idleWakes = async (): Promise<number> => {
        await new Promise((r) => setTimeout(r, 1500)); // past start-up, or the last request
        const a = switches();
        await new Promise((r) => setTimeout(r, 3000));
        return switches() - a;
      };
      // the MQTT sweep (4 a second) and the delay sampler's idle sample wake it 5 to 9 times a second. A free-running
      // 10 ms sampler (two, with prom-client's) woke it ~110 times more, and the ping sweep, running with no sockets
      // at this ping interval, ~128 times more
      const fresh = await idleWakes();
      assert.ok(fresh < 90, `the main thread woke ${fresh} times in 3 idle seconds`);

      // a WebSocket and an SSE stream start their doors' sweeps: a ping and a heartbeat arrive
      const ws = new WebSocket(`${child.http.replace('http', 'ws')}/v1/ws`);
      const pinged = new Promise<void>((r) => ws.once('ping', () => r()));
      await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const sse = new AbortController();
      const res = await fetch(`${child.http}/v1/sse?topic=idle`, { signal: sse.signal });
      const reader = res.body!.getReader();
      let seen = '';
      await waitFor(async () => {
        seen += new TextDecoder().decode((await reader.read()).value);
        return seen.includes(':\n\n');
      }, 'an SSE heartbeat');
      await within(pinged, 10_000, 'a WebSocket ping');
      ws.close();
      sse.abort();
      await waitFor(async () => {
        const m = await (await fetch(`${child.http}/metrics`)).text();
        return /^omnipush_connections\{transport="websocket"\} 0$/m.test(m) && /^omnipush_connections\{transport="sse"\} 0$/m.test(m);
      }, 'both connections gone');
      // with them gone the sweeps stop again
      const after = await idleWakes();
      console.error(`idle wakes in 3 s: ${fresh} before any client, ${after} after two left`);
      assert.ok(after < 90, `the main thread woke ${after} times in 3 idle seconds after its clients left`);
      // and start again with the next socket
      const again = new WebSocket(`${child.http.replace('http', 'ws')}/v1/ws`);
      await within(new Promise<void>((r) => again.once('ping', () => r())), 10_000, 'a ping on a socket opened after the sweep stopped');
      again.close();
    } finally {
      await child.stop();
    }
  });
});
