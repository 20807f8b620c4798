/**
 * A webhook receiver run as its own process: it verifies every request with the off-the-shelf
 * `standardwebhooks` verifier and prints one JSON line per request to stdout. `POST /control`
 * sets the status it answers with (and an optional Retry-After, and a delay before answering).
 *   node webhook-receiver.js <port|0> <secret>
 */
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const port = Number(process.argv[2] ?? 0);
const verifier = new Webhook(process.argv[3] ?? '');
let answer = { status: 200, retryAfter: undefined as string | undefined, delayMs: 0 };

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.url === '/control') {
      answer = JSON.parse(body) as typeof answer;
      res.end('{}');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    let verified = false;
    let error: string | undefined;
    try {
      verifier.verify(body, headers);
      verified = true;
    } catch (e) {
      error = (e as Error).message;
    }
    const status = verified ? answer.status : 401;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = null;
    }
    // printed when answered: a line means the server got (or was being sent) this answer
    const line = `${JSON.stringify({ webhookId: headers['webhook-id'], signature: headers['webhook-signature'], verified, error, status, path: req.url, body: parsed })}\n`;
    res.once('finish', () => process.stdout.write(line));
    if (answer.retryAfter && status >= 300) res.setHeader('retry-after', answer.retryAfter);
    res.statusCode = status;
    if (answer.delayMs) setTimeout(() => res.end(), answer.delayMs);
    else res.end();
  });
});
server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ ready: typeof a === 'object' && a ? a.port : 0 })}\n`);
});
