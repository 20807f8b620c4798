/**
 * The floor to beat: the SSE broadcaster a user would write with node:http in ten minutes —
 * a list of ServerResponse objects and `res.write` per message per client.
 * Speaks enough of our API for the same load: GET /v1/sse, POST /v1/publish ({topic,data} or {messages}).
 */
import { createServer, type ServerResponse } from 'node:http';

const clients = new Set<ServerResponse>();
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url?.startsWith('/v1/sse')) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write(': ok\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (req.method === 'POST' && req.url === '/v1/publish') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { data?: string; messages?: Array<{ data: string }> };
      const msgs = body.messages ?? [body as { data: string }];
      for (const m of msgs) for (const c of clients) c.write(`data: ${m.data}\n\n`);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"ok":true}');
    });
    return;
  }
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', http: `http://127.0.0.1:${a.port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
