/** Aedes, the MQTT broker many Node users would pick, in its default setup (memory persistence, plain TCP). */
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

// Aedes queues messages past `concurrency` (default 100) in mqemitter, which releases the queue by
// synchronous recursion: with the ~10k QoS 1 messages the point-to-point scenario keeps in flight it
// overflows the stack and the process dies (Aedes 1.2.0). Enough slots for every message in flight
// measure Aedes instead of crashing it.
const aedes = await Aedes.createBroker({ concurrency: 20_000 });
const server = createServer(aedes.handle);
// a client that vanishes mid-packet is normal under load; Aedes reports it, we do not want the noise
aedes.on('clientError', () => undefined);
aedes.on('connectionError', () => undefined);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', mqtt: `mqtt://127.0.0.1:${port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
