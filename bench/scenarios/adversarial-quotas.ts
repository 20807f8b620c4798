/**
 * What the quotas cost on the hot paths: WebSocket and MQTT QoS 0 fan-out, and MQTT QoS 1
 * point-to-point, with every quota on (limits far above what the run reaches, so nothing is
 * refused and only the checks cost) ÷ every quota off, in the same run. Off and on alternate
 * (off, on, on, off, off, on, ...) so that a machine whose load drifts during the run favours neither,
 * and the medians are compared: one round of 10k-client fan-out moves by ±20% on two cores.
 *
 * QoS 1 runs in phases of its own, on a broker with no other clients, in more rounds: on two cores
 * its rate is bounded by the load generators as much as by the broker, so one round of it moves by
 * ±15% from run to run (57.7k and 79.1k/s for the same build back to back) and a 3% cost hides in
 * that. The median of the rounds is compared, and the broker's CPU time per message beside it.
 */
import type { ServerProc } from '../lib/procs.js';
import { hasMqttDoor, startOmnipush } from '../lib/servers.js';
import type { AdversarialOptions } from './adversarial.js';
import { fanout, wsClients } from './fanout.js';
import { mqttQos1, mqttScenario, type Qos1Result } from './mqtt.js';

const OFF: Record<string, string> = {
  OMNIPUSH_QUOTAS__CONNECTIONS_PER_PRINCIPAL: '0',
  OMNIPUSH_QUOTAS__CONNECTIONS_PER_ADDRESS: '0',
  OMNIPUSH_QUOTAS__SUBSCRIPTIONS_PER_CONNECTION: '0',
  OMNIPUSH_QUOTAS__SUBSCRIPTIONS_PER_PRINCIPAL: '0',
};

/** Every quota on, none reached. The bench's clients are anonymous: the per-address rate is the bucket taken per publish. */
const ON: Record<string, string> = {
  OMNIPUSH_QUOTAS__CONNECTIONS_PER_PRINCIPAL: '100000',
  OMNIPUSH_QUOTAS__CONNECTIONS_PER_ADDRESS: '19000',
  OMNIPUSH_QUOTAS__SUBSCRIPTIONS_PER_CONNECTION: '1000',
  OMNIPUSH_QUOTAS__SUBSCRIPTIONS_PER_PRINCIPAL: '1000000',
  OMNIPUSH_QUOTAS__PUBLISH__PER_PRINCIPAL__MESSAGES_PER_SECOND: '1e9',
  OMNIPUSH_QUOTAS__PUBLISH__PER_PRINCIPAL__BYTES_PER_SECOND: '1e12',
  OMNIPUSH_QUOTAS__PUBLISH__PER_ADDRESS__MESSAGES_PER_SECOND: '1e9',
  OMNIPUSH_QUOTAS__PUBLISH__PER_ADDRESS__BYTES_PER_SECOND: '1e12',
};

interface Figures {
  wsFanout: number;
  mqttQos0Fanout: number;
  /** server CPU ns per delivery in those phases */
  wsCpuNs: number;
  mqttQos0CpuNs: number;
}

async function on<T>(env: Record<string, string>, mqtt: boolean, run: (s: ServerProc) => Promise<T>): Promise<T> {
  const server = await startOmnipush('memory', { mqtt, env });
  try {
    return await run(server);
  } finally {
    await server.stop();
  }
}

async function measure(env: Record<string, string>, clients: number, pairs: number, seconds: number, mqtt: boolean): Promise<Figures> {
  const ws = await on(env, false, (s) => fanout(s, wsClients('omnipush'), clients, seconds));
  const m = mqtt ? await on(env, true, (s) => mqttScenario(s, { clients, pairs, seconds })) : undefined;
  const ns = (cpuPct: number, perSec: number) => (perSec > 0 ? (cpuPct / 100 / perSec) * 1e9 : 0);
  return {
    wsFanout: ws.maxRate.deliveriesPerSec,
    mqttQos0Fanout: m?.fanout.deliveriesPerSec ?? 0,
    wsCpuNs: ns(ws.maxRate.serverCpuPct, ws.maxRate.deliveriesPerSec),
    mqttQos0CpuNs: m ? ns(m.fanout.serverCpuPct, m.fanout.deliveriesPerSec) : 0,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** QoS 1 alone, `rounds` times each way, alternating which goes first. */
async function qos1Rounds(rounds: number, pairs: number, seconds: number): Promise<{ off: Qos1Result[]; on: Qos1Result[] }> {
  const off: Qos1Result[] = [];
  const onR: Qos1Result[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['on', 'off'] : ['off', 'on']) {
      const q = await on(which === 'on' ? ON : OFF, true, (s) => mqttQos1(s, pairs, seconds));
      (which === 'on' ? onR : off).push(q);
    }
  }
  return { off, on: onR };
}

/** Fan-out `rounds` times each way, alternating which goes first. */
async function fanoutRounds(rounds: number, clients: number, pairs: number, seconds: number, mqtt: boolean): Promise<{ off: Figures[]; on: Figures[] }> {
  const off: Figures[] = [];
  const onR: Figures[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['on', 'off'] : ['off', 'on']) {
      (which === 'on' ? onR : off).push(await measure(which === 'on' ? ON : OFF, clients, pairs, seconds, mqtt));
    }
  }
  return { off, on: onR };
}

export async function quotaCost(o: AdversarialOptions): Promise<void> {
  const clients = o.quick ? 1000 : 10_000;
  const pairs = o.quick ? 100 : 1000;
  const seconds = o.quick ? 3 : 10;
  const mqtt = hasMqttDoor();
  const fo = await fanoutRounds(o.quick ? 1 : 5, clients, pairs, seconds, mqtt);
  const q1 = mqtt ? await qos1Rounds(o.quick ? 2 : 4, pairs, seconds) : { off: [], on: [] };
  o.results.quotas = { clients, pairs, seconds, off: fo.off, on: fo.on, qos1: q1 };
  const k = (n: number) => `${(n / 1000).toFixed(1)}k/s`;
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  for (const [what, key, cpuKey] of [
    [`ws fan-out, ${clients} subs`, 'wsFanout', 'wsCpuNs'],
    [`mqtt qos0 fan-out, ${clients} subs`, 'mqttQos0Fanout', 'mqttQos0CpuNs'],
  ] as const) {
    if (key !== 'wsFanout' && !mqtt) continue;
    const rate = (fs: Figures[]) => median(fs.map((f) => f[key]));
    const r = ratio(rate(fo.on), rate(fo.off));
    o.row(
      `adversarial: quotas on ÷ off, ${what} (median of ${fo.on.length})`,
      `${k(rate(fo.on))} / ${k(rate(fo.off))} = ${r.toFixed(3)}`,
      '≥ 0.97',
      r >= 0.97 ? 'PASS' : 'MISS',
    );
    o.row('  rounds on | off', `${fo.on.map((f) => k(f[key])).join(' ')} | ${fo.off.map((f) => k(f[key])).join(' ')}`);
    const cpu = (fs: Figures[]) => median(fs.map((f) => f[cpuKey])).toFixed(0);
    o.row('  server CPU per delivery, on / off', `${cpu(fo.on)} / ${cpu(fo.off)} ns`);
  }
  if (mqtt) {
    const rate = (rs: Qos1Result[]) => median(rs.map((q) => q.messagesPerSec));
    const cpu = (rs: Qos1Result[]) => median(rs.map((q) => q.serverCpuUsPerMsg)).toFixed(1);
    const r = ratio(rate(q1.on), rate(q1.off));
    const spread = (rs: Qos1Result[]) => rs.map((q) => k(q.messagesPerSec)).join(' ');
    o.row(
      `adversarial: quotas on ÷ off, mqtt qos1 p2p, ${pairs} pairs (median of ${q1.on.length})`,
      `${k(rate(q1.on))} / ${k(rate(q1.off))} = ${r.toFixed(3)}`,
      '≥ 0.97',
      r >= 0.97 ? 'PASS' : 'MISS',
    );
    o.row('  rounds on | off', `${spread(q1.on)} | ${spread(q1.off)}`);
    o.row('  broker CPU per qos1 message, on / off', `${cpu(q1.on)} / ${cpu(q1.off)} µs`);
  }
}
