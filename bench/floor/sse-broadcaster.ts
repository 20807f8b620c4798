/**
 * The floor to beat: the SSE broadcaster a user would write with node:http in ten minutes —
 * a list of ServerResponse objects and `res.write` per message per client.
 */
import { createServer, type ServerResponse } from 'node:http';
import { announce, handlePublish } from '../peers/publish-endpoint.js';

const clients = new Set<ServerResponse>();
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url?.startsWith('/v1/sse')) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write(': ok\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (handlePublish(req, res, (data) => {
    for (const c of clients) c.write(`data: ${data}\n\n`);
  })) return;
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
