/**
 * The floor of the HTTP publish path: what a minimal real server does with a publish, and nothing
 * more. A bare node:http server reads the request body whole, parses it as JSON and answers a small
 * JSON (`{cursor, topic}`) with one writeHead and one end, with no validation, storing or fan-out.
 * It answers the same headers and as many bytes as ours (docs/http-api.md), so both put the same
 * bytes on the wire and the comparison is about the work between them.
 */
import { createServer } from 'node:http';
import { announce } from '../peers/publish-endpoint.js';

const HEADERS = {
  Link: '</.well-known/omnipush>; rel="omnipush"',
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Link',
  'Content-Type': 'application/json; charset=utf-8',
  'Content-Length': 0,
  'Cache-Control': 'no-store',
};
let n = 0;

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let topic: unknown;
    try {
      topic = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { topic?: unknown }).topic;
    } catch {
      topic = undefined;
    }
    const ok = typeof topic === 'string';
    // a cursor shaped as ours: epoch_seq
    const answer = JSON.stringify(ok ? { cursor: `g4bpjf03_${(++n).toString(36)}`, topic } : { error: 'bad request' });
    HEADERS['Content-Length'] = Buffer.byteLength(answer);
    res.writeHead(ok ? 200 : 400, HEADERS);
    res.end(answer);
  });
});
server.listen(0, '127.0.0.1', () => announce((server.address() as { port: number }).port));
process.on('SIGTERM', () => process.exit(0));
