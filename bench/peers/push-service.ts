/**
 * A minimal push service for the Web Push benchmark: accepts `POST /push/<n>` over HTTPS (the
 * certificate and key are given as file arguments), checks the headers every push service
 * requires, answers 201 and notes the arrival time. `GET /stats` returns and clears the arrivals.
 * Bodies are not decrypted here (the tests do that): this process must not be the bottleneck.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

const [certFile, keyFile] = process.argv.slice(2);
let arrivals: number[] = [];
let rejected = 0;

const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({ arrivals, rejected });
    arrivals = [];
    rejected = 0;
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    return;
  }
  let size = 0;
  req.on('data', (c: Buffer) => (size += c.length));
  req.on('end', () => {
    const ok =
      req.method === 'POST' &&
      req.url?.startsWith('/push/') &&
      typeof req.headers.ttl === 'string' &&
      req.headers.authorization?.startsWith('vapid t=') &&
      req.headers['content-encoding'] === 'aes128gcm' &&
      size > 86 &&
      size <= 4096;
    if (!ok) {
      rejected++;
      res.writeHead(400).end();
      return;
    }
    arrivals.push(Date.now());
    res.writeHead(201).end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', http: `https://127.0.0.1:${a.port}` })}\n`);
});
