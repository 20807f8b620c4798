import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestServer } from './helpers/server.js';

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

  it('a 80 ms stall reads as about 80 ms with a 1 ms resolution', async () => {
    const s = await startTestServer({ metrics: { loopDelayResolution: 1 } });
    try {
      await scrape(s.http);
      await new Promise((r) => setTimeout(r, 20));
      const until = performance.now() + 80;
      while (performance.now() < until); // the stall: this process is the server's
      await new Promise((r) => setTimeout(r, 20));
      const d = await scrape(s.http);
      assert.ok(d.max >= 75, `max ${d.max} ms after an 80 ms stall`);
      assert.ok(d.max < 400, `max ${d.max} ms`);
    } finally {
      await s.close();
    }
  });

  it('the standard nodejs_eventloop_lag gauges sample at the same interval, not at a 10 ms one of their own', async () => {
    const s = await startTestServer({ metrics: { loopDelayResolution: 100 } });
    try {
      await new Promise((r) => setTimeout(r, 500)); // a few samples
      const text = await (await fetch(`${s.http}/metrics`)).text();
      const m = /^nodejs_eventloop_lag_min_seconds (\S+)$/m.exec(text);
      assert.ok(m, 'nodejs_eventloop_lag_min_seconds on /metrics');
      // the raw histogram counts the interval itself: its shortest sample is the interval
      assert.ok(Number(m[1]) >= 0.095, `shortest sample ${Number(m[1]) * 1000} ms at a 100 ms interval`);
    } finally {
      await s.close();
    }
  });
});
