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

export async function startProxy(targetUrl: string): Promise<CutProxy> {
  const target = new URL(targetUrl);
  const pairs = new Set<[Socket, Socket]>();
  let blocked = false;
  const server: Server = createServer((client) => {
    if (blocked) return void client.destroy();
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
    client.pipe(upstream);
    upstream.pipe(client);
  });
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
