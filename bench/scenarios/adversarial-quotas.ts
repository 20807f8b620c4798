/**
 * What the quotas cost on the hot paths: WebSocket and MQTT QoS 0 fan-out, and MQTT QoS 1
 * point-to-point, with every quota on (limits far above what the run reaches, so nothing is
 * refused and only the checks cost) ÷ every quota off, in the same run. Off and on alternate
 * (off, on, on, off, off, on, ...) so that a machine whose load drifts during the run favours
 * neither, and the medians are compared. The servers run on one core, this process and the load
 * generators on the other, so that neither side takes the other's core in the middle of a round.
 *
 * Fan-out is judged two ways, each with its verdict: by max rate, and by the server's capacity, its
 * CPU time per delivery at a fixed rate below saturation ({@link cpuPerDelivery}). On two cores the
 * max rate of one build moves by ±30% between rounds (the server at 100% of its core, its cost per
 * delivery following how many messages share a socket write, which follows how far the clients
 * lag); the capacity rounds spread by ±5-10% (bimodal at times). Neither resolves 3% on this machine
 * by itself; both are printed with their rounds.
 *
 * QoS 1 runs in phases of its own, on a broker with no other clients, in more rounds; its rate and
 * the broker's CPU time per message (the scheduler's count, in ns) are both compared.
 */
import { join } from 'node:path';
import { cpuPerDelivery } from '../lib/capacity.js';
import { MqttConn } from '../lib/mqtt-wire.js';
import { ALL_CPUS, cpuSeconds, DRIVER_CPU, forkLoadGen, pin, SERVER_CPU, type LoadGen, type ServerProc } from '../lib/procs.js';
import { publishBatch, stampedPayload } from '../lib/publish.js';
import { hasMqttDoor, LOADGEN_DIR, startOmnipush } from '../lib/servers.js';
import type { AdversarialOptions } from './adversarial.js';
import { maxRatePhase } from './fanout.js';
import { call, mqttMaxRate, mqttQos1, type Qos1Result } from './mqtt.js';

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
  /** server CPU ns per delivery at a fixed rate below saturation, one message per publish ({@link cpuPerDelivery}) */
  wsCapacityNs: number;
  mqttQos0CapacityNs: number;
}

/** Publishes per second in the capacity phases: 40 × 10k subscribers = 400k deliveries/s, about half of one core. */
const CAPACITY_RATE = 40;
const CAPACITY_SECONDS = 5;
const TOPIC = 'bench/fanout';

async function on<T>(env: Record<string, string>, mqtt: boolean, run: (s: ServerProc) => Promise<T>): Promise<T> {
  const server = await startOmnipush('memory', { mqtt, env });
  pin(server.proc.pid!, SERVER_CPU);
  try {
    return await run(server);
  } finally {
    await server.stop();
  }
}

async function withGens<T>(loadgen: string, connect: (g: LoadGen, count: number) => Promise<unknown>, clients: number, run: (gens: LoadGen[]) => Promise<T>): Promise<T> {
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, loadgen), []));
  try {
    const half = Math.ceil(clients / 2);
    await connect(gens[0], half);
    await connect(gens[1], clients - half);
    return await run(gens);
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}

const ns = (cpuPct: number, perSec: number) => (perSec > 0 ? (cpuPct / 100 / perSec) * 1e9 : 0);

/** WebSocket fan-out: max rate (publishes of 20 over HTTP), then the capacity phase (one per HTTP publish). */
function wsSide(env: Record<string, string>, clients: number, seconds: number) {
  return on(env, false, (s) =>
    withGens('ws-clients.js', (g, count) => g.ask({ cmd: 'connect', url: s.url, mode: 'omnipush', topic: TOPIC, count }), clients, async (gens) => {
      const pid = s.proc.pid!;
      const max = await maxRatePhase(gens, s.url, TOPIC, clients, seconds, { batch: 20, inFlight: 2, cpu: () => cpuSeconds(pid) });
      const capacity = await cpuPerDelivery(gens, pid, clients, CAPACITY_RATE, CAPACITY_SECONDS, () => {
        publishBatch(s.url, TOPIC, 1).catch((e: unknown) => console.error('capacity phase: publish failed:', e));
      });
      return { rate: max.deliveriesPerSec, cpuNs: ns(max.serverCpuPct, max.deliveriesPerSec), capacity };
    }),
  );
}

/** MQTT QoS 0 fan-out from an MQTT publisher: max rate, then the capacity phase. */
function mqttSide(env: Record<string, string>, clients: number, seconds: number) {
  return on(env, true, (s) =>
    withGens('mqtt-clients.js', (g, count) => call(g, { cmd: 'connect', ...s.mqtt!, topic: TOPIC, count }), clients, async (gens) => {
      const pid = s.proc.pid!;
      const pub = await MqttConn.open(s.mqtt!, 'bench-publisher');
      try {
        const max = await mqttMaxRate(gens, pub, pid, clients, seconds);
        const capacity = await cpuPerDelivery(gens, pid, clients, CAPACITY_RATE, CAPACITY_SECONDS, () => pub.publish(TOPIC, stampedPayload(), 0));
        return { rate: max.deliveriesPerSec, cpuNs: ns(max.serverCpuPct, max.deliveriesPerSec), capacity };
      } finally {
        pub.destroy();
      }
    }),
  );
}

async function measure(env: Record<string, string>, clients: number, seconds: number, mqtt: boolean): Promise<Figures> {
  const ws = await wsSide(env, clients, seconds);
  const m = mqtt ? await mqttSide(env, clients, seconds) : undefined;
  return {
    wsFanout: ws.rate,
    mqttQos0Fanout: m?.rate ?? 0,
    wsCpuNs: ws.cpuNs,
    mqttQos0CpuNs: m?.cpuNs ?? 0,
    wsCapacityNs: ws.capacity,
    mqttQos0CapacityNs: m?.capacity ?? 0,
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
async function fanoutRounds(rounds: number, clients: number, seconds: number, mqtt: boolean): Promise<{ off: Figures[]; on: Figures[] }> {
  const off: Figures[] = [];
  const onR: Figures[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['on', 'off'] : ['off', 'on']) {
      (which === 'on' ? onR : off).push(await measure(which === 'on' ? ON : OFF, clients, seconds, mqtt));
    }
  }
  return { off, on: onR };
}

export async function quotaCost(o: AdversarialOptions): Promise<void> {
  const clients = o.quick ? 1000 : 10_000;
  const pairs = o.quick ? 100 : 1000;
  const seconds = o.quick ? 3 : 10;
  const mqtt = hasMqttDoor();
  // this process and the load generators it forks on one core, the servers on the other
  const pinned = pin(process.pid, DRIVER_CPU);
  try {
    const fo = await fanoutRounds(o.quick ? 1 : 5, clients, seconds, mqtt);
    const q1 = mqtt ? await qos1Rounds(o.quick ? 2 : 4, pairs, seconds) : { off: [], on: [] };
    o.results.quotas = { clients, pairs, seconds, pinned, capacityRate: CAPACITY_RATE * clients, off: fo.off, on: fo.on, qos1: q1 };
    report(o, fo, q1, clients, pairs, mqtt, pinned);
  } finally {
    if (pinned) pin(process.pid, ALL_CPUS);
  }
}

const k = (n: number) => `${(n / 1000).toFixed(1)}k/s`;
const verdict = (r: number) => (r >= 0.97 ? 'PASS' : 'MISS');

function report(o: AdversarialOptions, fo: { off: Figures[]; on: Figures[] }, q1: { off: Qos1Result[]; on: Qos1Result[] }, clients: number, pairs: number, mqtt: boolean, pinned: boolean): void {
  o.row('adversarial: quota cost', pinned ? `servers on cpu ${SERVER_CPU}, load generators and this process on cpu ${DRIVER_CPU}` : 'not pinned (no taskset)');
  for (const [what, key, cpuKey, capKey] of [
    [`ws fan-out, ${clients} subs`, 'wsFanout', 'wsCpuNs', 'wsCapacityNs'],
    [`mqtt qos0 fan-out, ${clients} subs`, 'mqttQos0Fanout', 'mqttQos0CpuNs', 'mqttQos0CapacityNs'],
  ] as const) {
    if (key !== 'wsFanout' && !mqtt) continue;
    const med = (fs: Figures[], f: keyof Figures) => median(fs.map((x) => x[f]));
    const cap = med(fo.off, capKey) > 0 ? med(fo.off, capKey) / med(fo.on, capKey) : 0;
    o.row(
      `adversarial: quotas on ÷ off, ${what}: server capacity (CPU per delivery at ${k(CAPACITY_RATE * clients)}, off ÷ on, median of ${fo.on.length})`,
      `${med(fo.off, capKey).toFixed(0)} / ${med(fo.on, capKey).toFixed(0)} ns = ${cap.toFixed(3)}`,
      '≥ 0.97',
      verdict(cap),
    );
    o.row('  capacity rounds on | off', `${fo.on.map((f) => f[capKey].toFixed(0)).join(' ')} | ${fo.off.map((f) => f[capKey].toFixed(0)).join(' ')} ns`);
    const r = med(fo.off, key) > 0 ? med(fo.on, key) / med(fo.off, key) : 0;
    o.row(`  max rate on ÷ off (medians; one round moves by ±30% on two cores)`, `${k(med(fo.on, key))} / ${k(med(fo.off, key))} = ${r.toFixed(3)}`, '≥ 0.97', verdict(r));
    o.row('  max rate rounds on | off', `${fo.on.map((f) => k(f[key])).join(' ')} | ${fo.off.map((f) => k(f[key])).join(' ')}`);
    o.row('  server CPU per delivery at max rate, on / off', `${med(fo.on, cpuKey).toFixed(0)} / ${med(fo.off, cpuKey).toFixed(0)} ns`);
  }
  if (mqtt) {
    const rate = (rs: Qos1Result[]) => median(rs.map((q) => q.messagesPerSec));
    const cpu = (rs: Qos1Result[]) => median(rs.map((q) => q.serverCpuUsPerMsg));
    const r = rate(q1.off) > 0 ? rate(q1.on) / rate(q1.off) : 0;
    const cap = cpu(q1.on) > 0 ? cpu(q1.off) / cpu(q1.on) : 0;
    const spread = (rs: Qos1Result[]) => rs.map((q) => k(q.messagesPerSec)).join(' ');
    o.row(`adversarial: quotas on ÷ off, mqtt qos1 p2p, ${pairs} pairs (median of ${q1.on.length})`, `${k(rate(q1.on))} / ${k(rate(q1.off))} = ${r.toFixed(3)}`, '≥ 0.97', verdict(r));
    o.row('  rounds on | off', `${spread(q1.on)} | ${spread(q1.off)}`);
    o.row('  broker capacity (CPU per qos1 message, off ÷ on)', `${cpu(q1.off).toFixed(2)} / ${cpu(q1.on).toFixed(2)} µs = ${cap.toFixed(3)}`, '≥ 0.97', verdict(cap));
  }
}
