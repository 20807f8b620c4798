import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { spawnServer, startTestServer, waitFor } from './helpers/server.js';

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

  it('an idle server does not wake its event loop a hundred times a second', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
    const child = await spawnServer(['--store', 'memory', '--log-level', 'warn']);
    try {
      const pid = child.proc.pid!;
      const switches = (): number => Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1]);
      await new Promise((r) => setTimeout(r, 1500)); // past start-up
      const a = switches();
      await new Promise((r) => setTimeout(r, 3000));
      const woke = switches() - a;
      // the doors' sweeps (WebSocket pings, SSE heartbeats, long-poll expiry, MQTT keep-alive) wake it ~15 times a second;
      // a free-running 10 ms sampler (two, with prom-client's) woke it ~110 times more
      assert.ok(woke < 120, `the main thread woke ${woke} times in 3 idle seconds`);
    } finally {
      await child.stop();
    }
  });
});
