import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { mqttClient } from './helpers/mqtt.js';
import { REPO_ROOT, startTestServer, waitFor } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

/** Sample values of one metric, keyed by its label text (`door="http"`, or '' when it has none). */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

/** Names a scrape declares (`# TYPE name kind`). */
function declared(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) names.add(m[1]);
  return names;
}

describe('metrics', () => {
  let server: RunningServer;
  let scrape: () => Promise<string>;
  before(async () => {
    // Web Push on, so that its queue gauge is in the scrape too
    server = await startTestServer({ webpush: { subject: 'mailto:ops@example.com' } });
    scrape = async () => (await fetch(`${server.http}/metrics`)).text();
  });
  after(() => server.close());

  it('uses the standard process_ and nodejs_ names and reports the build', async () => {
    const text = await scrape();
    assert.doesNotMatch(text, /omnipush_process_/);
    const names = declared(text);
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      assert.ok(names.has(n), `${n} is in /metrics`);
    }
    const build = samples(text, 'omnipush_build_info');
    assert.equal(build.size, 1);
    const [labels, value] = [...build][0];
    assert.equal(value, 1);
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(labels, `version="${version}",node="${process.versions.node}"`);
  });

  it('counts publishes and payload bytes per door, MQTT sessions and queue depths', async () => {
    const before = await scrape();
    const count = (text: string, door: string) => samples(text, 'omnipush_published_messages_total').get(`door="${door}"`) ?? NaN;
    const bytes = (text: string, door: string) => samples(text, 'omnipush_published_bytes_total').get(`door="${door}"`) ?? NaN;
    for (const door of ['http', 'websocket', 'mqtt', 'embedded']) assert.equal(count(before, door), 0, `${door} starts at 0`);

    const r = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'm/http', data: 'abcde' }) });
    assert.equal(r.status, 200);
    const ws = await openWs(server.http);
    try {
      assert.equal((await ws.request({ type: 'publish', topic: 'm/ws', data: '123' })).type, 'ack');
    } finally {
      ws.close();
    }
    const m = await mqttClient(server, { clientId: 'metrics-test', clean: false });
    try {
      await m.publishAsync('m/mqtt', 'four', { qos: 1 });
      const text = await scrape();
      assert.equal(count(text, 'http'), 1);
      assert.equal(bytes(text, 'http'), 5);
      assert.equal(count(text, 'websocket'), 1);
      assert.equal(bytes(text, 'websocket'), 3);
      assert.equal(count(text, 'mqtt'), 1);
      assert.equal(bytes(text, 'mqtt'), 4);
      assert.equal(samples(text, 'omnipush_mqtt_sessions').get('state="connected"'), 1);
      assert.equal(samples(text, 'omnipush_hub_pending_publishes').get(''), 0);
      assert.equal(samples(text, 'omnipush_webpush_queue_entries').get(''), 0);
    } finally {
      await m.endAsync();
    }
    // the persistent session outlives its connection
    await waitFor(async () => samples(await scrape(), 'omnipush_mqtt_sessions').get('state="offline"') === 1, 'an offline MQTT session');
    assert.equal(samples(await scrape(), 'omnipush_mqtt_sessions').get('state="connected"'), 0);
  });

  it('has every metric the shipped Grafana dashboard queries', async () => {
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    assert.ok(exprs.length >= 10, 'the dashboard has queries');
    const names = declared(await scrape());
    const PROMQL_WORDS = new Set(['sum', 'by', 'rate', 'histogram_quantile', 'time', 'le', 'instance', 'door', 'transport', 'state', 'status', 'op', 'version', 'node']);
    let checked = 0;
    for (const { panel, expr } of exprs) {
      // identifiers outside label matchers and strings are metric names or PromQL words
      const bare = expr.replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]').replace(/"[^"]*"/g, '""');
      for (const [id] of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
        if (PROMQL_WORDS.has(id)) continue;
        const base = id.replace(/_(bucket|sum|count)$/, '');
        assert.ok(names.has(id) || names.has(base), `panel "${panel}": ${id} is not in /metrics`);
        checked++;
      }
    }
    assert.ok(checked >= exprs.length, 'every query names a metric');
  });
});
