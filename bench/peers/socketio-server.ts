/** Socket.IO 4 broadcast (WebSocket transport), the peer many users would pick. */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { announce, handlePublish } from './publish-endpoint.js';

const server = createServer((req, res) => {
  if (handlePublish(req, res, (data) => io.emit('m', data))) return;
  // socket.io answers its own paths; anything else is ours to refuse
  if (!req.url?.startsWith('/socket.io/')) res.writeHead(404).end();
});
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
