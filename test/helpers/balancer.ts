import { createServer, connect, type Server, type Socket } from 'node:net';

/** A round-robin TCP balancer over several servers, skipping ones that refuse connections. */
export interface Balancer {
  url: string;
  /** Live proxied connections per target index. */
  connectionsTo(i: number): number;
  close(): Promise<void>;
}

export async function startBalancer(targetUrls: string[]): Promise<Balancer> {
  const targets = targetUrls.map((u) => new URL(u));
  const live = targets.map(() => new Set<Socket>());
  let next = 0;
  const server: Server = createServer((client) => {
    client.pause();
    client.on('error', () => client.destroy());
    attempt(client, 0);
  });
  /** Tries targets in turn from the next one; a dead target costs one refused connect. */
  function attempt(client: Socket, tries: number): void {
    if (tries >= targets.length || client.destroyed) return void client.destroy();
    const i = next++ % targets.length;
    const upstream = connect(Number(targets[i].port), targets[i].hostname);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      live[i].add(upstream);
      upstream.pipe(client);
      client.pipe(upstream);
      client.resume();
    });
    upstream.on('error', () => {
      if (!connected) return attempt(client, tries + 1);
      client.destroy();
    });
    upstream.on('close', () => {
      live[i].delete(upstream);
      if (connected) client.destroy();
    });
    client.on('close', () => upstream.destroy());
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    connectionsTo: (i) => live[i].size,
    close() {
      for (const set of live) for (const s of set) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
