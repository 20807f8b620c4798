/**
 * `npm run bench [-- <scenario-filter>] [--quick] [--clients N] [--pairs N] [--rounds N]`: runs the
 * scenarios side by side with peers in one run, prints a table with ratios and targets, writes JSON
 * to bench/results/. `--pairs`: MQTT QoS 1 publisher/subscriber pairs. `--rounds`: rounds of `p99`
 * (5 by default; one round of a door moves ±15% on two cores, so more rounds narrow its medians).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { runTrieBench } from './trie.js';
import { killAll, trackChild } from './lib/procs.js';
import { hasMqttDoor, startFloor, startMosquitto, startOmnipush, startPeer, startPollFloor, startPublishFloor } from './lib/servers.js';
import { hasWrk } from './lib/wrk.js';
import { httpPublish, HTTP_PUBLISH_CONNECTIONS, type HttpPublishRun } from './scenarios/http-publish.js';
import { mqttScenario, type MqttResult } from './scenarios/mqtt.js';
import { longpollFanout } from './scenarios/longpoll-fanout.js';
import { headCursor, heldPollCost } from './scenarios/longpoll-held.js';
import { sqlitePublish } from './scenarios/sqlite-publish.js';
import { webpushScenario } from './scenarios/webpush.js';
import { adversarial } from './scenarios/adversarial.js';
import { latency } from './scenarios/latency.js';
import { hooks } from './scenarios/hooks.js';
import { receiptsScenario } from './scenarios/receipts.js';
import { clusterJoinLatency, presenceScenario } from './scenarios/presence.js';
import { clusterFanout, clusterHold, type ClusterRun } from './scenarios/cluster.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { fanout, SSE_CLIENTS, wsClients, type FanoutClients, type FanoutResult } from './scenarios/fanout.js';
import type { ServerProc } from './lib/procs.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const valued = ['--clients', '--pairs', '--rounds'];
const filters = args.filter((a, i) => !a.startsWith('--') && !valued.includes(args[i - 1]));
/** The positive whole number after `flag`, or undefined when the flag is absent; anything else stops the run. */
function count(flag: string): number | undefined {
  const i = args.indexOf(flag);
  if (i < 0) return undefined;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`${flag} takes a positive whole number, not ${args[i + 1] ?? 'nothing'}`);
    process.exit(2);
  }
  return n;
}
const want = (name: string) => filters.length === 0 || filters.some((f) => name.includes(f));
const sseClients = count('--clients') ?? (quick ? 1000 : 10_000);
const pollClients = quick ? 500 : 2000;
// held polls cost ~10 KB each: a slope over fewer than a few thousand is lost in the heap's own steps
const heldPolls = quick ? 2000 : 10_000;
const mqttPairs = count('--pairs') ?? (quick ? 100 : 1000);
const seconds = quick ? 3 : 10;

const results: Record<string, unknown> = { date: new Date().toISOString(), quick, node: process.version };
const rows: Array<[string, string, string, string]> = [];
const row = (what: string, value: string, target = '', verdict = '') => rows.push([what, value, target, verdict]);
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
const kb = (b: number) => `${(b / 1024).toFixed(2)} KB`;
const k = (n: number) => `${(n / 1000).toFixed(1)}k`;

/** Starts a server, runs one fan-out against it, stops it. */
async function fanoutOn(start: () => Promise<ServerProc>, kind: FanoutClients): Promise<FanoutResult> {
  const server = await start();
  try {
    return await fanout(server, kind, sseClients, seconds);
  } finally {
    await server.stop();
  }
}

/** Starts a broker, runs the MQTT scenarios against it, stops it. */
async function mqttOn(start: () => Promise<ServerProc>): Promise<MqttResult> {
  const server = await start();
  try {
    return await mqttScenario(server, { clients: sseClients, pairs: mqttPairs, seconds });
  } finally {
    await server.stop();
  }
}

async function hasWebSocketDoor(): Promise<boolean> {
  const s = await startOmnipush();
  try {
    const d = (await (await fetch(`${s.url}/.well-known/omnipush`)).json()) as { transports?: Record<string, unknown> };
    return !!d.transports?.websocket;
  } finally {
    await s.stop();
  }
}

async function main(): Promise<void> {
  if (want('trie')) {
    const t = runTrieBench();
    results.trie = t;
    row('trie: match among 100k filters (median / p99)', `${(t.medianNsPerMatch / 1000).toFixed(2)} / ${(t.p99NsPerMatch / 1000).toFixed(2)} µs`, 'microseconds', verdict(t.p99NsPerMatch < 10_000));
  }
  const r = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  let sse: FanoutResult | undefined;
  /** The raw ws ceiling's p99 at 50k deliveries/s in this run, the bar for every door's p99. */
  let ceilingP99: number | undefined;
  if (want('sse')) {
    const o = await fanoutOn(() => startOmnipush(), SSE_CLIENTS);
    const f = await fanoutOn(startFloor, SSE_CLIENTS);
    sse = o;
    results.sseFanout = { omnipush: o, floor: f };
    row(`sse fan-out max rate, ${sseClients} subs (ours / floor)`, `${k(o.maxRate.deliveriesPerSec)}/s / ${k(f.maxRate.deliveriesPerSec)}/s = ${r(o.maxRate.deliveriesPerSec, f.maxRate.deliveriesPerSec)}`, '≥ 100k/s', verdict(o.maxRate.deliveriesPerSec >= 100_000));
    row('  server CPU during max rate (ours / floor)', `${o.maxRate.serverCpuPct}% / ${f.maxRate.serverCpuPct}%`);
    row(`sse p50/p99 at ${k(o.fixedRate.targetDeliveriesPerSec)}/s (ours)`, `${o.fixedRate.p50ms} / ${o.fixedRate.p99ms} ms (delivered ${k(o.fixedRate.deliveriesPerSec)}/s)`, 'p99 ≤ 100 ms', verdict(o.fixedRate.p99ms <= 100));
    row(`sse p50/p99 at ${k(f.fixedRate.targetDeliveriesPerSec)}/s (floor)`, `${f.fixedRate.p50ms} / ${f.fixedRate.p99ms} ms (delivered ${k(f.fixedRate.deliveriesPerSec)}/s)`);
    row('sse RSS per idle connection, marginal, after a full GC (ours / floor)', `${kb(o.rssMarginalPerConnBytes)} / ${kb(f.rssMarginalPerConnBytes)}`, '≤ 8 KB', verdict(o.rssMarginalPerConnBytes <= 8192));
    row('  average incl. one-time growth (ours / floor)', `${kb(o.rssPerIdleConnBytes)} / ${kb(f.rssPerIdleConnBytes)}`);
  }
  if (want('ws')) {
    const ceiling = await fanoutOn(() => startPeer('ws-ceiling'), wsClients('ws'));
    const batchedCeiling = await fanoutOn(() => startPeer('ws-ceiling', ['--batched']), wsClients('ws'));
    const sio = await fanoutOn(() => startPeer('socketio-server'), wsClients('socketio'));
    const ours = (await hasWebSocketDoor()) ? await fanoutOn(() => startOmnipush(), wsClients('omnipush')) : undefined;
    results.wsFanout = { omnipush: ours ?? null, ceiling, batchedCeiling, socketio: sio };
    if (ours) {
      row(`ws fan-out max rate, ${sseClients} subs (ours / raw ws ceiling)`, `${k(ours.maxRate.deliveriesPerSec)}/s / ${k(ceiling.maxRate.deliveriesPerSec)}/s = ${r(ours.maxRate.deliveriesPerSec, ceiling.maxRate.deliveriesPerSec)}`, '≥ 0.9× ceiling', verdict(ours.maxRate.deliveriesPerSec >= 0.9 * ceiling.maxRate.deliveriesPerSec));
      row('ws fan-out (ours / raw ws ceiling batched per tick)', `${k(ours.maxRate.deliveriesPerSec)}/s / ${k(batchedCeiling.maxRate.deliveriesPerSec)}/s = ${r(ours.maxRate.deliveriesPerSec, batchedCeiling.maxRate.deliveriesPerSec)}`);
      row('ws fan-out (ours / Socket.IO 4)', `${k(ours.maxRate.deliveriesPerSec)}/s / ${k(sio.maxRate.deliveriesPerSec)}/s = ${r(ours.maxRate.deliveriesPerSec, sio.maxRate.deliveriesPerSec)}`, '≥ 3×', verdict(ours.maxRate.deliveriesPerSec >= 3 * sio.maxRate.deliveriesPerSec));
      row('ws hot topic (batches of 20 per publish)', `${k(ours.maxRate.deliveriesPerSec)}/s`, '≥ 500k/s', verdict(ours.maxRate.deliveriesPerSec >= 500_000));
      row(`ws p50/p99 at ${k(ours.fixedRate.targetDeliveriesPerSec)}/s (ours)`, `${ours.fixedRate.p50ms} / ${ours.fixedRate.p99ms} ms`, 'p99 ≤ 100 ms', verdict(ours.fixedRate.p99ms <= 100));
      row('ws RSS per idle connection, marginal, after a full GC (ours / ceiling / Socket.IO)', `${kb(ours.rssMarginalPerConnBytes)} / ${kb(ceiling.rssMarginalPerConnBytes)} / ${kb(sio.rssMarginalPerConnBytes)}`, '≤ 6 KB', verdict(ours.rssMarginalPerConnBytes <= 6144));
      row('  ws idle connection (ours / raw ws ceiling)', r(ours.rssMarginalPerConnBytes, ceiling.rssMarginalPerConnBytes), '≤ 1.1×', verdict(ours.rssMarginalPerConnBytes <= 1.1 * ceiling.rssMarginalPerConnBytes));
      row('  average incl. one-time growth (ours / ceiling / Socket.IO)', `${kb(ours.rssPerIdleConnBytes)} / ${kb(ceiling.rssPerIdleConnBytes)} / ${kb(sio.rssPerIdleConnBytes)}`);
      if (sse) row('sse vs ws fan-out (ours)', r(sse.maxRate.deliveriesPerSec, ours.maxRate.deliveriesPerSec), '≥ 0.9×', verdict(sse.maxRate.deliveriesPerSec >= 0.9 * ours.maxRate.deliveriesPerSec));
    } else row('ws fan-out (ours)', 'no WebSocket door in this build');
    row('ws fan-out max rate (raw ws ceiling / Socket.IO 4)', `${k(ceiling.maxRate.deliveriesPerSec)}/s / ${k(sio.maxRate.deliveriesPerSec)}/s`);
    row('ws p99 at 50k/s (ceiling / Socket.IO 4)', `${ceiling.fixedRate.p99ms} / ${sio.fixedRate.p99ms} ms`);
    ceilingP99 = ceiling.fixedRate.p99ms;
    const vsCeiling = (door: string, p99: number) =>
      row(`${door} p99 publish→deliver at 50k/s (ours / raw ws ceiling, same run)`, `${p99} / ${ceilingP99} ms = ${r(p99, ceilingP99!)}`, '≤ 1.0×', verdict(p99 <= ceilingP99!));
    if (ours) vsCeiling('ws', ours.fixedRate.p99ms);
    if (sse) vsCeiling('sse', sse.fixedRate.p99ms);
  }
  if (want('mqtt')) {
    const mosq = await mqttOn(startMosquitto);
    const aedes = await mqttOn(() => startPeer('aedes-server'));
    const ours = hasMqttDoor() ? await mqttOn(() => startOmnipush('memory', { mqtt: true })) : undefined;
    results.mqtt = { omnipush: ours ?? null, mosquitto: mosq, aedes };
    const q0 = (x: MqttResult) => x.fanout.deliveriesPerSec;
    const q1 = (x: MqttResult) => x.qos1.messagesPerSec;
    if (ours) {
      row(`mqtt qos0 fan-out max rate, ${sseClients} subs (ours / Mosquitto)`, `${k(q0(ours))}/s / ${k(q0(mosq))}/s = ${r(q0(ours), q0(mosq))}`, '≥ 3×', verdict(q0(ours) >= 3 * q0(mosq)));
      row('mqtt qos0 fan-out (ours / Aedes)', `${k(q0(ours))}/s / ${k(q0(aedes))}/s = ${r(q0(ours), q0(aedes))}`, '≥ 2×', verdict(q0(ours) >= 2 * q0(aedes)));
      row('  server CPU during max rate (ours / Mosquitto / Aedes)', `${ours.fanout.serverCpuPct}% / ${mosq.fanout.serverCpuPct}% / ${aedes.fanout.serverCpuPct}%`);
      row('  qos0 lost at max rate, undelivered 5 s after the 50k/s run, subscribers closed (ours)', `${ours.fanout.lost}, ${ours.fixedRate.undelivered}, ${ours.fanout.closed}`, '0, 0, 0', verdict(ours.fanout.lost + ours.fixedRate.undelivered + ours.fanout.closed === 0));
      row(`mqtt qos0 p50/p99 at ${k(ours.fixedRate.targetDeliveriesPerSec)}/s (ours)`, `${ours.fixedRate.p50ms} / ${ours.fixedRate.p99ms} ms (delivered ${k(ours.fixedRate.deliveriesPerSec)}/s)`, 'p99 ≤ 100 ms', verdict(ours.fixedRate.p99ms <= 100));
      if (ceilingP99 !== undefined) row('mqtt qos0 p99 at 50k/s (ours / raw ws ceiling, same run)', `${ours.fixedRate.p99ms} / ${ceilingP99} ms = ${r(ours.fixedRate.p99ms, ceilingP99)}`, '≤ 1.0×', verdict(ours.fixedRate.p99ms <= ceilingP99));
      row(`mqtt qos1 p2p, ${mqttPairs} pairs (ours / Aedes)`, `${k(q1(ours))}/s / ${k(q1(aedes))}/s = ${r(q1(ours), q1(aedes))}`, '≥ 1.5×', verdict(q1(ours) >= 1.5 * q1(aedes)));
      row('mqtt qos1 p2p (ours / Mosquitto)', `${k(q1(ours))}/s / ${k(q1(mosq))}/s = ${r(q1(ours), q1(mosq))}`);
      row('  qos1 p50/p99 publish→deliver (ours)', `${ours.qos1.p50ms} / ${ours.qos1.p99ms} ms, CPU ${ours.qos1.serverCpuPct}%`);
      row('mqtt RSS per idle connection, marginal, after a full GC (ours / Mosquitto / Aedes)', `${kb(ours.rssMarginalPerConnBytes)} / ${kb(mosq.rssMarginalPerConnBytes)} / ${kb(aedes.rssMarginalPerConnBytes)}`, '≤ 4 KB', verdict(ours.rssMarginalPerConnBytes <= 4096));
      row('  average incl. one-time growth (ours / Mosquitto / Aedes)', `${kb(ours.rssPerIdleConnBytes)} / ${kb(mosq.rssPerIdleConnBytes)} / ${kb(aedes.rssPerIdleConnBytes)}`);
    } else row('mqtt (ours)', 'no MQTT door in this build');
    row(`mqtt qos0 fan-out max rate, ${sseClients} subs (Mosquitto / Aedes)`, `${k(q0(mosq))}/s / ${k(q0(aedes))}/s, CPU ${mosq.fanout.serverCpuPct}% / ${aedes.fanout.serverCpuPct}%`);
    row('  qos0 lost at max rate, undelivered 5 s after the 50k/s run (Mosquitto · Aedes)', `${mosq.fanout.lost}, ${mosq.fixedRate.undelivered} · ${aedes.fanout.lost}, ${aedes.fixedRate.undelivered}`);
    row(`mqtt qos0 p50/p99 at ${k(mosq.fixedRate.targetDeliveriesPerSec)}/s (Mosquitto / Aedes)`, `${mosq.fixedRate.p50ms} / ${mosq.fixedRate.p99ms} ms · ${aedes.fixedRate.p50ms} / ${aedes.fixedRate.p99ms} ms`);
    row(`mqtt qos1 p2p, ${mqttPairs} pairs (Mosquitto / Aedes)`, `${k(q1(mosq))}/s / ${k(q1(aedes))}/s`);
    row('  qos1 p50/p99 (Mosquitto / Aedes)', `${mosq.qos1.p50ms} / ${mosq.qos1.p99ms} ms · ${aedes.qos1.p50ms} / ${aedes.qos1.p99ms} ms`);
    if (!ours) row('mqtt RSS per idle connection (Mosquitto / Aedes)', `${kb(mosq.rssPerIdleConnBytes)} / ${kb(aedes.rssPerIdleConnBytes)}`);
  }
  if (want('longpoll')) {
    const ours = await startOmnipush();
    try {
      // the floor's clients poll from our cursor: the same URL, headers and count reach both servers
      const since = await headCursor(ours);
      const floorServer = await startPollFloor();
      let floor;
      try {
        floor = await heldPollCost(floorServer, heldPolls, since);
      } finally {
        await floorServer.stop();
      }
      const held = await heldPollCost(ours, heldPolls, since);
      const l = await longpollFanout(ours, pollClients, seconds);
      results.longpollFanout = l;
      results.longpollHeld = { ours: held, floor };
      row(`long-poll fan-out, ${pollClients} clients, ${l.published} msgs`, `${k(l.deliveriesPerSec)}/s, p50/p99 ${l.p50ms}/${l.p99ms} ms, CPU ${l.serverCpuPct}%`);
      row('  long-poll messages lost', String(l.lost), '0', verdict(l.lost === 0));
      const [o, f] = [held.rssMarginalPerHeldPollBytes, floor.rssMarginalPerHeldPollBytes];
      row(`long-poll RSS per held poll, marginal, after a full GC (half → all of ${heldPolls})`, kb(o), '≤ 6 KB', verdict(o <= 6144));
      row('  bare node:http holding the same requests (floor); ours / floor', `${kb(f)}; ${r(o, f)}, ours − floor ${kb(o - f)}`);
      row('  average incl. one-time growth (ours / floor)', `${kb(held.rssPerHeldPollBytes)} / ${kb(floor.rssPerHeldPollBytes)}`);
    } finally {
      await ours.stop();
    }
  }
  if (want('sqlite')) {
    const ours = await startOmnipush('sqlite');
    try {
      const p = await sqlitePublish(ours, seconds);
      results.sqlitePublish = p;
      row('sqlite publish, HTTP batches of 100 (8 in flight)', `${k(p.batched.messagesPerSec)} msg/s, CPU ${p.batched.serverCpuPct}%`, '≥ 20k msg/s', verdict(p.batched.messagesPerSec >= 20_000));
      row('sqlite publish, single messages (32 in flight)', `${k(p.single.messagesPerSec)} msg/s, p50/p99 ${p.single.p50ms}/${p.single.p99ms} ms`);
    } finally {
      await ours.stop();
    }
  }
  if (want('httppub')) {
    if (!hasWrk()) {
      console.error('httppub: SKIPPED — wrk is not installed (Debian package wrk); the HTTP publish floor was not measured');
      row('http publish vs floor', 'skipped: wrk not installed');
    } else {
      const on = async (start: () => Promise<ServerProc>, idem = false): Promise<HttpPublishRun> => {
        const s = await start();
        try {
          return await httpPublish(s, seconds, idem);
        } finally {
          await s.stop();
        }
      };
      const floor = await on(startPublishFloor);
      const mem = await on(() => startOmnipush('memory'));
      const sql = await on(() => startOmnipush('sqlite'));
      const memIdem = await on(() => startOmnipush('memory'), true);
      results.httpPublish = { floor, memory: mem, sqlite: sql, memoryIdempotencyKey: memIdem };
      const f = floor.requestsPerSec;
      const line = (x: HttpPublishRun) => `${k(x.requestsPerSec)}/s / ${k(f)}/s = ${r(x.requestsPerSec, f)}`;
      row(`http publish, 1 msg/request, ${HTTP_PUBLISH_CONNECTIONS} keep-alive conns (ours memory / bare node:http)`, line(mem), '≥ 0.7× floor', verdict(mem.requestsPerSec >= 0.7 * f));
      row('http publish (ours sqlite / bare node:http)', line(sql), '≥ 0.7× floor', verdict(sql.requestsPerSec >= 0.7 * f));
      row('http publish with Idempotency-Key (ours memory / bare node:http)', line(memIdem));
      row('  p50/p99 ms (floor · memory · sqlite · memory+key)', [floor, mem, sql, memIdem].map((x) => `${x.p50ms}/${x.p99ms}`).join(' · '));
      row('  server CPU (floor · memory · sqlite · memory+key)', [floor, mem, sql, memIdem].map((x) => `${x.serverCpuPct}%`).join(' · '));
      // CPU per request holds still on a busy machine, where the rates follow the load generator
      row('  server CPU µs per request (floor · memory · sqlite · memory+key)', [floor, mem, sql, memIdem].map((x) => ((x.serverCpuPct / 100) * 1e6 / x.requestsPerSec).toFixed(1)).join(' · '));
      const errors = floor.errors + mem.errors + sql.errors + memIdem.errors;
      row('  failed requests (non-2xx, socket errors)', String(errors), '0', verdict(errors === 0));
    }
  }
  if (want('webpush')) {
    const n = quick ? 2000 : 10_000;
    const p = await webpushScenario(n, quick ? 2 : 3);
    results.webpush = p;
    const us = (x: number) => `${x} µs`;
    row(`webpush: ${k(n)} subs, encrypted sends/s (ours / web-push lib)`, `${k(p.ours.sendsPerSec)}/s / ${k(p.lib.sendsPerSec)}/s = ${r(p.ours.sendsPerSec, p.lib.sendsPerSec)}`, '≥ 3×', verdict(p.ours.sendsPerSec >= 3 * p.lib.sendsPerSec));
    row('  p50/p99 time to push service (ours / lib)', `${p.ours.p50ms}/${p.ours.p99ms} ms / ${p.lib.p50ms}/${p.lib.p99ms} ms`);
    row('  CPU per send (ours / lib)', `${us(p.ours.cpuUsPerSend)} / ${us(p.lib.cpuUsPerSend)}`);
    row('  load average during the rounds (1 min)', String(p.loadAvg));
    row('  failed sends (ours / lib)', `${p.ours.failed} / ${p.lib.failed}`, '0', verdict(p.ours.failed === 0 && p.lib.failed === 0));
  }

  if (want('cluster')) {
    const redis = await startRedis({ onSpawn: trackChild });
    try {
      const n = quick ? 2000 : 10_000;
      const runs: Record<string, { one: ClusterRun; two: ClusterRun }> = {};
      for (const door of ['ws', 'mqtt'] as const) {
        const one = await clusterFanout(redis.url, door, 1, n, seconds);
        const two = await clusterFanout(redis.url, door, 2, n, seconds);
        runs[door] = { one, two };
        const ratio = two.maxRate.deliveriesPerSec / one.maxRate.deliveriesPerSec;
        row(`cluster ${door} fan-out, ${k(n)} subs, store+bus on Redis (1 worker / 2 workers)`, `${k(one.maxRate.deliveriesPerSec)}/s / ${k(two.maxRate.deliveriesPerSec)}/s = ${r(two.maxRate.deliveriesPerSec, one.maxRate.deliveriesPerSec)}`, '≥ 1.7×', verdict(ratio >= 1.7));
        row('  server CPU, primary + workers (1 / 2 workers)', `${one.maxRate.serverCpuPct}% / ${two.maxRate.serverCpuPct}%`);
        row('  load generators + bench process CPU at max rate (1 / 2 workers)', `${one.maxRate.loadGenCpuPct}% + ${one.maxRate.benchCpuPct}% / ${two.maxRate.loadGenCpuPct}% + ${two.maxRate.benchCpuPct}%`);
        const perDelivery = (pct: number, run: ClusterRun) => ((pct / 100) * 1e6) / run.maxRate.deliveriesPerSec;
        row(
          '  CPU µs per delivery, server / load generators (1 / 2 workers)',
          `${perDelivery(one.maxRate.serverCpuPct, one).toFixed(2)} / ${perDelivery(one.maxRate.loadGenCpuPct, one).toFixed(2)} · ${perDelivery(two.maxRate.serverCpuPct, two).toFixed(2)} / ${perDelivery(two.maxRate.loadGenCpuPct, two).toFixed(2)}`,
        );
        row('  connections closed during the runs', `${one.maxRate.closed} / ${two.maxRate.closed}`, '0', verdict(one.maxRate.closed + two.maxRate.closed === 0));
        row(`  publish→deliver p50/p99 at ${k(two.fixedRate.targetDeliveriesPerSec)}/s via the bus (1 worker / 2 workers, publishes to both)`, `${one.fixedRate.p50ms}/${one.fixedRate.p99ms} ms / ${two.fixedRate.p50ms}/${two.fixedRate.p99ms} ms`);
      }
      const held = quick ? 4000 : 38_000;
      const h = await clusterHold(redis.url, 2, held);
      row(`cluster: ${k(held)} WS subscribers held by 2 workers; one message reaches`, `${k(h.connected)} connected, ${k(h.delivered)} delivered in ${h.deliverMs} ms; RSS ${h.rssPerWorkerMB.join(' + ')} MB`, `all ${k(held)}`, verdict(h.connected === held && h.delivered === held));
      results.cluster = { ...runs, hold: h };
    } finally {
      await redis.remove();
    }
  }

  if (want('presence')) {
    const n = quick ? 2000 : 10_000;
    const p = await presenceScenario(n, seconds);
    results.presence = p;
    row(`presence join storm, ${k(n)} WS subscribers (presence topic / plain topic)`, `${p.ruled.ms} ms / ${p.plain.ms} ms`);
    row('  server CPU per join (presence / plain)', `${p.ruled.serverCpuUsPerJoin} µs / ${p.plain.serverCpuUsPerJoin} µs`);
    row('  join events at the watcher', `${p.watcherEvents}`, `${n + 1}`, verdict(p.watcherEvents === n + 1));
    row('  heap per present member beyond the connection (registry slope half→all)', `${p.heapPerMemberBytes} B`, '≤ 300 B', verdict(p.heapPerMemberBytes <= 300));
    row(`  snapshot of ${k(p.snapshot.members)} members, GET /v1/presence p50/p99`, `${p.snapshot.p50ms} / ${p.snapshot.p99ms} ms`, 'p99 ≤ 50 ms', verdict(p.snapshot.p99ms <= 50));
    row('  fan-out, presence topic with join/leave ÷ plain topic', `${k(p.fanout.ruledPerSec)}/s / ${k(p.fanout.plainPerSec)}/s = ${r(p.fanout.ruledPerSec, p.fanout.plainPerSec)}`, '≥ 0.95×', verdict(p.fanout.ruledPerSec >= 0.95 * p.fanout.plainPerSec));
    const redis = await startRedis({ onSpawn: trackChild });
    try {
      const c = await clusterJoinLatency(redis.url, quick ? 200 : 1000);
      results.presenceCluster = c;
      row(`  cluster (2 nodes, Redis): join on one → event on the other, ${c.joins} joins p50/p99`, `${c.p50ms} / ${c.p99ms} ms`, 'reported', c.missed ? `${c.missed} MISSED` : '');
    } finally {
      await redis.remove();
    }
  }
  if (want('p99')) await latency({ quick, clients: sseClients, rounds: count('--rounds'), row, results });
  if (['adversarial-retained', 'adversarial-quotas', 'adversarial-unauth'].some(want)) await adversarial({ quick, row, results, want });
  if (want('hooks')) await hooks({ quick, row, results });
  if (want('receipts')) await receiptsScenario({ quick, row, results });

  const w = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), ['scenario', 'result', 'target', ''][i].length));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join('  ');
  console.log(line(['scenario', 'result', 'target', '']));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(line(r));
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ ...results, table: rows }, null, 2));
  console.log(`\nresults: ${file}`);
}

main()
  .catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => killAll());
