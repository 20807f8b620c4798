import { createServer, connect, type Server, type Socket } from 'node:net';

/** A TCP proxy in front of a server, so a test can cut connections as a network would. */
export interface CutProxy {
  url: string;
  /** Destroys every proxied connection (both sides). */
  cutAll(): void;
  /** While blocked, new connections are refused (closed at once). */
  block(on: boolean): void;
  connections(): number;
  close(): Promise<void>;
}

/**
 * `refuse`: looks at the start of every chunk a client sends and drops the connection when it
 * returns true — e.g. a proxy that does not pass WebSocket upgrades.
 */
export async function startProxy(targetUrl: string, refuse?: (requestHead: string) => boolean): Promise<CutProxy> {
  const target = new URL(targetUrl);
  const pairs = new Set<[Socket, Socket]>();
  let blocked = false;
  const server: Server = createServer((client) => {
    if (blocked) return void client.destroy();
    pipeTo(client);
  });
  function pipeTo(client: Socket): void {
    const upstream = connect(Number(target.port), target.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    // every chunk from the client is looked at, so a refused request is caught on a kept-alive connection too
    client.on('data', (chunk: Buffer) => {
      if (refuse?.(chunk.toString('latin1', 0, 200))) return drop();
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.pipe(client);
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  const cutAll = (): void => {
    for (const [a, b] of [...pairs]) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    cutAll,
    block(on) {
      blocked = on;
    },
    connections: () => pairs.size,
    close() {
      cutAll();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
