/**
 * Load generator: MQTT 3.1.1 clients on raw sockets (bench/lib/mqtt-wire.ts), the same for every
 * broker. Holds fan-out subscribers and runs QoS 1 publisher/subscriber pairs. Payloads start with
 * `<ms>|`; latency is measured from it.
 * IPC: {cmd:'connect', host, port, topic, count} (QoS 0 subscribers) · {cmd:'stats', reset, hist}
 *      · {cmd:'pairs', host, port, count} · {cmd:'run-pairs', seconds, window} · {cmd:'close'}.
 */
import { Histogram, stampOf } from '../lib/histogram.js';
import { statsReply, tally } from '../lib/tally.js';
import { MqttConn, type MqttAddress } from '../lib/mqtt-wire.js';
import { stampedPayload } from '../lib/publish.js';

const conns: MqttConn[] = [];
let serial = 0;
const clientId = () => `bench-${process.pid}-${serial++}`;

/** One connect per broker round trip is slow; a few hundred at once overflow small accept backlogs (Mosquitto listens with 100). */
const CONNECT_BATCH = 100;

async function inBatches(count: number, open: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < count; i += CONNECT_BATCH) {
    await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, count - i) }, (_, j) => open(i + j)));
  }
}

function onClose(): void {
  tally.closed++;
}

async function connectSubscribers(addr: MqttAddress, topic: string, count: number): Promise<void> {
  await inBatches(count, async () => {
    const c = await MqttConn.open(addr, clientId(), {
      publish(buf, start, end) {
        tally.delivered++;
        if (!tally.timing) return;
        const ts = stampOf(buf, start, end);
        if (ts > 0) tally.hist.add(Date.now() - ts);
      },
      close: onClose,
    });
    conns.push(c);
    await c.subscribe(topic, 0);
  });
}

/**
 * A QoS 1 publisher and its own subscriber on a topic of their own. A message counts once the
 * broker acknowledged it to the publisher and the subscriber received it; at most `window` are
 * short of that at any time, so no broker is measured by how much it can buffer.
 */
class Pair {
  sent = 0;
  acked = 0;
  received = 0;
  running = false;
  window = 1;
  pub!: MqttConn;
  sub!: MqttConn;
  constructor(readonly topic: string) {}

  get done(): number {
    return Math.min(this.acked, this.received);
  }

  pump(): void {
    if (!this.running || !this.pub.isOpen) return;
    if (this.sent - this.done >= this.window) return;
    this.pub.sock.cork();
    while (this.sent - this.done < this.window) {
      this.pub.publish(this.topic, stampedPayload(), 1);
      this.sent++;
    }
    this.pub.sock.uncork();
  }
}

const pairs: Pair[] = [];

async function openPairs(addr: MqttAddress, count: number): Promise<void> {
  await inBatches(count, async () => {
    const pair = new Pair(`bench/p2p/${process.pid}/${pairs.length}`);
    pairs.push(pair);
    pair.sub = await MqttConn.open(addr, clientId(), {
      publish(buf, start, end) {
        pair.received++;
        const ts = stampOf(buf, start, end);
        if (ts > 0) tally.hist.add(Date.now() - ts);
        pair.pump();
      },
      close: onClose,
    });
    conns.push(pair.sub);
    const granted = await pair.sub.subscribe(pair.topic, 1);
    if (granted !== 1) throw new Error(`QoS 1 subscription granted QoS ${granted}`);
    pair.pub = await MqttConn.open(addr, clientId(), {
      puback() {
        pair.acked++;
        pair.pump();
      },
      close: onClose,
    });
    conns.push(pair.pub);
  });
}

/** Runs every pair for `seconds`, then lets what is in flight complete (bounded), and reports. */
async function runPairs(seconds: number, window: number): Promise<{ completed: number; elapsedSec: number; inFlightLeft: number; hist: number[] }> {
  tally.hist = new Histogram();
  const base = pairs.map((p) => p.done);
  const t0 = performance.now();
  for (const p of pairs) {
    p.window = window;
    p.running = true;
    p.pump();
  }
  await until(() => performance.now() - t0 >= seconds * 1000, seconds * 1000 + 1000);
  for (const p of pairs) p.running = false;
  await until(() => pairs.every((p) => p.done >= p.sent), 5000);
  const elapsedSec = (performance.now() - t0) / 1000;
  const completed = pairs.reduce((n, p, i) => n + p.done - base[i], 0);
  return { completed, elapsedSec, inFlightLeft: pairs.reduce((n, p) => n + p.sent - p.done, 0), hist: tally.hist.counts };
}

/** Resolves when `check()` holds or after `ms`, looking every 10 ms (the sockets do the work meanwhile). */
async function until(check: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

interface Command {
  id: number;
  cmd: string;
  host?: string;
  port?: number;
  localAddress?: string;
  topic?: string;
  count?: number;
  reset?: boolean;
  hist?: boolean;
  timing?: boolean;
  seconds?: number;
  window?: number;
}

process.on('message', async (m: Command) => {
  let result: unknown = null;
  try {
    if (m.cmd === 'connect') {
      await connectSubscribers({ host: m.host!, port: m.port!, localAddress: m.localAddress }, m.topic!, m.count!);
      result = { connected: conns.length };
    } else if (m.cmd === 'pairs') {
      await openPairs({ host: m.host!, port: m.port! }, m.count!);
      result = { pairs: pairs.length };
    } else if (m.cmd === 'run-pairs') {
      result = await runPairs(m.seconds!, m.window!);
    } else if (m.cmd === 'stats') {
      result = statsReply(m);
    } else if (m.cmd === 'close') {
      for (const c of conns) c.destroy();
      conns.length = 0;
      pairs.length = 0;
      result = { ok: true };
    }
  } catch (e) {
    result = { error: (e as Error).message };
  }
  process.send!({ id: m.id, result });
});
