/**
 * The floor of the HTTP publish path: a bare node:http server that reads the request body whole and
 * answers a small JSON, with no parsing, storing or fan-out.
 */
import { createServer } from 'node:http';
import { announce } from '../peers/publish-endpoint.js';

const ANSWER = '{"id":"0","cursor":"0"}';
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(Buffer.concat(chunks).length > 0 ? 200 : 400, { 'Content-Type': 'application/json', 'Content-Length': ANSWER.length });
    res.end(ANSWER);
  });
});
server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
