import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { httpPublish } from './helpers/cluster.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { spawnServer, waitFor, type ChildServer } from './helpers/server.js';
import { openWs } from './helpers/ws.js';

function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The pid among `pids` holding the server side of the TCP connection whose client end is local port `clientPort`. */
function serverPidOf(clientPort: number, pids: number[]): number | undefined {
  const hex = clientPort.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // remote address is column 2 ("ADDR:PORT"); the server's socket has the client's port there
      if (cols.length > 9 && cols[2].endsWith(`:${hex}`)) inodes.add(cols[9]);
    }
  }
  for (const pid of pids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1])) return pid;
      } catch {
        /* fd closed meanwhile */
      }
    }
  }
  return undefined;
}

describe('serve --workers', { skip: redisMissing || false }, () => {
  it('refuses without the Redis store and bus, clearly', async () => {
    await assert.rejects(spawnServer(['--workers', '2', '--store', 'memory']), /--workers needs store\.kind "redis" and bus\.kind "redis"/);
  });

  it('runs two workers on shared HTTP and MQTT ports; messages reach subscribers on both; a killed worker is replaced; SIGTERM drains and exits 0', async () => {
    const redis = await startRedis();
    const env = { OMNIPUSH_STORE__KIND: 'redis', OMNIPUSH_STORE__REDIS__URL: redis.url, OMNIPUSH_BUS__KIND: 'redis' };
    let server: ChildServer | undefined;
    try {
      server = await spawnServer(['--workers', '2', '--log-level', 'warn'], env);
      const primary = server.proc.pid!;
      const workers = childPids(primary);
      assert.equal(workers.length, 2, 'two worker processes');
      const subs = await Promise.all(Array.from({ length: 6 }, () => openWs(server!.http)));
      for (const s of subs) await s.request({ type: 'subscribe', topics: ['wk/#'], since: 'now' });
      const servedBy = subs.map((s) => serverPidOf((s.ws as unknown as { _socket: { localPort: number } })._socket.localPort, workers));
      assert.deepEqual([...new Set(servedBy)].sort(), [...workers].sort(), 'the WebSocket subscribers are spread over both workers');
      const mqs = await Promise.all(Array.from({ length: 4 }, () => mqtt.connectAsync(server!.mqtt!, { reconnectPeriod: 0 })));
      const mqGot: string[][] = mqs.map(() => []);
      for (const [i, c] of mqs.entries()) {
        c.on('message', (_t, p) => mqGot[i].push(p.toString()));
        await c.subscribeAsync('wk/#');
      }
      const cursor = await httpPublish(server.http, 'wk/a', 'hello');
      await waitFor(() => subs.every((s) => s.messages().length === 1) && mqGot.every((g) => g.length === 1), 'the message on every subscriber');
      for (const s of subs) assert.equal(s.messages()[0].cursor, cursor);
      assert.deepEqual(mqGot, mqs.map(() => ['hello']));
      for (const c of mqs) await c.endAsync();

      // a worker killed hard is replaced; the service keeps answering meanwhile
      process.kill(workers[0], 'SIGKILL');
      await waitFor(() => /worker \d \(pid \d+\) died \(SIGKILL\); restarting/.test(server!.stderr()), 'the primary to notice');
      const replacement = await waitFor(() => childPids(primary).find((p) => !workers.includes(p)), 'a replacement worker', 15_000);
      await waitFor(async () => (await fetch(`${server!.http}/readyz`)).status === 200, 'ready');
      assert.ok(replacement > 0);

      const survivors = subs.filter((_, i) => servedBy[i] === workers[1]);
      const code = await server.stop();
      assert.equal(code, 0, server.stderr());
      const ends = await Promise.all(survivors.map((s) => s.closed));
      assert.ok(ends.every((e) => e.code === 1001), `the surviving worker's subscribers were closed as going away: ${JSON.stringify(ends)}`);
      server = undefined;
    } finally {
      if (server) await server.kill();
      await redis.remove();
    }
  });
});
