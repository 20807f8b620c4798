/** Aedes, the MQTT broker many Node users would pick, in its default setup (memory persistence, plain TCP). */
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const aedes = await Aedes.createBroker();
const server = createServer(aedes.handle);
// a client that vanishes mid-packet is normal under load; Aedes reports it, we do not want the noise
aedes.on('clientError', () => undefined);
aedes.on('connectionError', () => undefined);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', mqtt: `mqtt://127.0.0.1:${port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
