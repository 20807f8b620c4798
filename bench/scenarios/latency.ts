/**
 * Scenario `p99`: publish→deliver p99 at 50k deliveries/s, 10k subscribers, for our WebSocket, SSE
 * and MQTT QoS 0 doors beside the raw `ws` ceiling (plain, and batched per tick as ours is), in
 * rounds with the order turned each round, so that a machine whose load drifts favours no one.
 * Every door is published to over HTTP, one message per request, as the ceiling is. On two cores
 * one 10-second run's p99 moves by up to ±15% from run to run (where the scheduler puts the server
 * beside its load generators), the ceiling's too; the medians of five rounds are compared.
 */
import { join } from 'node:path';
import { cpuSeconds, forkLoadGen, type ServerProc } from '../lib/procs.js';
import { sleep } from '../lib/publish.js';
import { LOADGEN_DIR, hasMqttDoor, startOmnipush, startPeer } from '../lib/servers.js';
import { fixedRatePhase, MQTT_CLIENTS, SSE_CLIENTS, wsClients, type FanoutClients, type FanoutResult } from './fanout.js';

type Door = 'ceiling' | 'batched ceiling' | 'ws' | 'sse' | 'mqtt';

export interface LatencyResult {
  clients: number;
  rounds: Record<Door, Array<FanoutResult['fixedRate']>>;
}

const DOORS: Array<[Door, () => Promise<ServerProc>, FanoutClients]> = [
  ['ceiling', () => startPeer('ws-ceiling'), wsClients('ws')],
  ['batched ceiling', () => startPeer('ws-ceiling', ['--batched']), wsClients('ws')],
  ['ws', () => startOmnipush(), wsClients('omnipush')],
  ['sse', () => startOmnipush(), SSE_CLIENTS],
  ['mqtt', () => startOmnipush('memory', { mqtt: true }), MQTT_CLIENTS],
];

async function once(start: () => Promise<ServerProc>, kind: FanoutClients, clients: number, seconds: number): Promise<FanoutResult['fixedRate']> {
  const server = await start();
  const topic = 'bench/fanout';
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, kind.loadgen), []));
  try {
    const half = Math.ceil(clients / 2);
    await gens[0].ask({ cmd: 'connect', ...kind.connect(server, topic), count: half });
    await gens[1].ask({ cmd: 'connect', ...kind.connect(server, topic), count: clients - half });
    await sleep(500);
    return await fixedRatePhase(gens, server.url, topic, clients, seconds, () => cpuSeconds(server.proc.pid!));
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'close' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
    await server.stop();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export async function latency(o: { quick: boolean; clients: number; rounds?: number; row: (what: string, value: string, target?: string, verdict?: string) => void; results: Record<string, unknown> }): Promise<void> {
  const rounds = o.rounds ?? (o.quick ? 1 : 5);
  const seconds = o.quick ? 3 : 10;
  const doors = DOORS.filter(([d]) => d !== 'mqtt' || hasMqttDoor());
  const res: LatencyResult = { clients: o.clients, rounds: { ceiling: [], 'batched ceiling': [], ws: [], sse: [], mqtt: [] } };
  for (let r = 0; r < rounds; r++) {
    // turned by one each round: each door runs early in one round and late in another
    const order = doors.map((_, i) => doors[(i + r) % doors.length]);
    for (const [door, start, kind] of order) res.rounds[door].push(await once(start, kind, o.clients, seconds));
  }
  o.results.latency = res;
  const p99 = (d: Door) => median(res.rounds[d].map((f) => f.p99ms));
  const each = (d: Door) => res.rounds[d].map((f) => f.p99ms).join(' ');
  const ceiling = p99('ceiling');
  o.row(`p99: raw ws ceiling at 50k/s, ${o.clients} subs (median of ${rounds}; rounds)`, `${ceiling} ms (${each('ceiling')})`);
  // the two ceilings are the same raw server (one writes as it is told, one per tick): how far apart
  // their medians land in one run is how finely this run can tell two servers apart
  o.row('  batched per tick (median; rounds)', `${p99('batched ceiling')} ms (${each('batched ceiling')})`);
  o.row('  resolution: batched ÷ plain ceiling, the same raw server twice', `${(p99('batched ceiling') / ceiling).toFixed(2)}×`);
  for (const d of ['ws', 'sse', 'mqtt'] as const) {
    if (!res.rounds[d].length) continue;
    const ratio = p99(d) / ceiling;
    o.row(`p99: ${d} publish→deliver at 50k/s ÷ raw ws ceiling (medians; rounds)`, `${p99(d)} / ${ceiling} ms = ${ratio.toFixed(2)}× (${each(d)})`, '≤ 1.0×', ratio <= 1 ? 'PASS' : 'MISS');
  }
}
