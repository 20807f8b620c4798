/**
 * The floor of a held long-poll: a bare node:http server that holds every request open and answers
 * none, keeping only what any server that can answer later must keep (the response, and a way to
 * forget it when the client goes away). Same server options as ours, so node's own per-request
 * objects are the same ones.
 */
import { createServer, type ServerResponse } from 'node:http';
import { announce } from '../peers/publish-endpoint.js';

const held = new Set<ServerResponse>();
function gone(this: ServerResponse): void {
  held.delete(this);
}
const server = createServer({ requestTimeout: 30_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 }, (_req, res) => {
  held.add(res);
  res.on('close', gone);
});
server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
