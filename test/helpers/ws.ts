import { WebSocket } from 'ws';
import { waitFor } from './server.js';

export type Frame = Record<string, unknown> & { type: string };

/** A `ws` client speaking our protocol, recording every frame it receives. */
export interface WsClient {
  ws: WebSocket;
  frames: Frame[];
  closed: Promise<{ code: number; reason: string }>;
  send(msg: Record<string, unknown>): void;
  /** Sends a request with a fresh id and waits for the reply carrying it. */
  request(msg: Record<string, unknown>): Promise<Frame>;
  messages(): Frame[];
  close(): void;
}

let nextId = 1;

export async function openWs(url: string, opts: { headers?: Record<string, string>; query?: string } = {}): Promise<WsClient> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws${opts.query ? `?${opts.query}` : ''}`, { headers: opts.headers });
  const frames: Frame[] = [];
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as Frame));
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const client: WsClient = {
    ws,
    frames,
    closed,
    send: (msg) => ws.send(JSON.stringify(msg)),
    async request(msg) {
      const id = nextId++;
      client.send({ ...msg, id });
      return waitFor(() => frames.find((f) => f.id === id), `reply to ${String(msg.type)} #${id}`);
    },
    messages: () => frames.filter((f) => f.type === 'message'),
    close: () => ws.close(),
  };
  return client;
}
