/**
 * What the quotas cost on the hot paths: WebSocket and MQTT QoS 0 fan-out, and MQTT QoS 1
 * point-to-point, with every quota on (limits far above what the run reaches, so nothing is
 * refused and only the checks cost) ÷ every quota off, in the same run. Off and on alternate
 * (off, on, on, off) so that a machine whose load drifts during the run favours neither.
 */
import type { ServerProc } from '../lib/procs.js';
import { hasMqttDoor, startOmnipush } from '../lib/servers.js';
import type { AdversarialOptions } from './adversarial.js';
import { fanout, wsClients } from './fanout.js';
import { mqttScenario } from './mqtt.js';

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
  mqttQos1: number;
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
  return { wsFanout: ws.maxRate.deliveriesPerSec, mqttQos0Fanout: m?.fanout.deliveriesPerSec ?? 0, mqttQos1: m?.qos1.messagesPerSec ?? 0 };
}

const mean = (a: Figures, b: Figures): Figures => ({
  wsFanout: (a.wsFanout + b.wsFanout) / 2,
  mqttQos0Fanout: (a.mqttQos0Fanout + b.mqttQos0Fanout) / 2,
  mqttQos1: (a.mqttQos1 + b.mqttQos1) / 2,
});

export async function quotaCost(o: AdversarialOptions): Promise<void> {
  const clients = o.quick ? 1000 : 10_000;
  const pairs = o.quick ? 100 : 1000;
  const seconds = o.quick ? 3 : 10;
  const mqtt = hasMqttDoor();
  const off1 = await measure(OFF, clients, pairs, seconds, mqtt);
  const on1 = await measure(ON, clients, pairs, seconds, mqtt);
  const on2 = await measure(ON, clients, pairs, seconds, mqtt);
  const off2 = await measure(OFF, clients, pairs, seconds, mqtt);
  const off = mean(off1, off2);
  const onAvg = mean(on1, on2);
  o.results.quotas = { clients, pairs, seconds, off: [off1, off2], on: [on1, on2] };
  const k = (n: number) => `${(n / 1000).toFixed(1)}k/s`;
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  for (const [what, key] of [
    [`ws fan-out, ${clients} subs`, 'wsFanout'],
    [`mqtt qos0 fan-out, ${clients} subs`, 'mqttQos0Fanout'],
    [`mqtt qos1 p2p, ${pairs} pairs`, 'mqttQos1'],
  ] as const) {
    if (key !== 'wsFanout' && !mqtt) continue;
    const r = ratio(onAvg[key], off[key]);
    o.row(`adversarial: quotas on ÷ off, ${what}`, `${k(onAvg[key])} / ${k(off[key])} = ${r.toFixed(3)}`, '≥ 0.97', r >= 0.97 ? 'PASS' : 'MISS');
  }
}
