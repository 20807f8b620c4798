import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The publish endpoint every benchmark peer shares with us (`POST /v1/publish` with `{topic, data}`
 * or `{messages: [...]}`), so one publisher drives them all. Calls `broadcast` once per message.
 */
export function handlePublish(req: IncomingMessage, res: ServerResponse, broadcast: (data: string) => void): boolean {
  if (req.method !== 'POST' || req.url !== '/v1/publish') return false;
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { data?: string; messages?: Array<{ data: string }> };
    for (const m of body.messages ?? [body as { data: string }]) broadcast(m.data);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"ok":true}');
  });
  return true;
}

/** Prints the listening line our harness waits for. */
export function announce(port: number): void {
  process.stdout.write(`${JSON.stringify({ event: 'listening', http: `http://127.0.0.1:${port}` })}\n`);
}
