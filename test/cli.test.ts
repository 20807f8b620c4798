import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { REPO_ROOT, spawnServer, tempDir, waitFor } from './helpers/server.js';

const BIN = join(REPO_ROOT, 'bin/omnipush.js');
const dir = tempDir('omnipush-cli-');
after(() => dir.remove());

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 });
}

describe('omnipush CLI', () => {
  it('serve prints its listening line; pub and sub talk to it; SIGTERM exits 0', async () => {
    const server = await spawnServer(['--store', 'memory']);
    assert.match(server.http, /^http:\/\/127\.0\.0\.1:\d+$/);
    const sub = spawn(process.execPath, [BIN, 'sub', 'cli/#', '--url', server.http, '--json'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const got: Array<{ topic: string; cursor: string; data: string; event: string }> = [];
    createInterface({ input: sub.stdout! }).on('line', (l) => got.push(JSON.parse(l) as { topic: string; cursor: string; data: string; event: string }));
    try {
      // the subscriber is connected once the server counts it
      await waitFor(async () => /omnipush_connections\{transport="sse"\} 1\b/.test(await (await fetch(`${server.http}/metrics`)).text()), 'cli subscriber connected');
      const pub = cli(['pub', 'cli/x', 'hello from the cli', '--url', server.http, '--event', 'greeting']);
      assert.equal(pub.status, 0, pub.stderr);
      const ack = JSON.parse(pub.stdout) as { cursor: string; topic: string };
      assert.equal(ack.topic, 'cli/x');
      await waitFor(() => got.length >= 1, 'sub printed the message');
      assert.equal(got[0].topic, 'cli/x');
      assert.equal(got[0].cursor, ack.cursor);
      assert.equal(got[0].event, 'greeting');
      assert.equal(got[0].data, 'hello from the cli');
      const bad = cli(['pub', 'cli/+', 'x', '--url', server.http]);
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /400: topic name must not contain the wildcards/);
    } finally {
      sub.kill('SIGTERM');
    }
    assert.equal(await server.stop(), 0);
  });

  it('sub resumes after the server restarts, without losing or repeating messages', async () => {
    const data = join(dir.path, 'resume');
    const first = await spawnServer(['--store', 'sqlite', '--data', data]);
    const port = new URL(first.http).port;
    const sub = spawn(process.execPath, [BIN, 'sub', 'r', '--url', first.http, '--since', 'all', '--json'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const got: string[] = [];
    createInterface({ input: sub.stdout! }).on('line', (l) => got.push((JSON.parse(l) as { data: string }).data));
    try {
      for (let i = 0; i < 3; i++) assert.equal(cli(['pub', 'r', `m${i}`, '--url', first.http]).status, 0);
      await waitFor(() => got.length === 3, 'first three');
      assert.equal(await first.stop(), 0);
      const second = await spawnServer(['--store', 'sqlite', '--data', data, '--port', port]);
      try {
        for (let i = 3; i < 6; i++) assert.equal(cli(['pub', 'r', `m${i}`, '--url', second.http]).status, 0);
        await waitFor(() => got.length >= 6, 'all six after the restart', 20_000);
        assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
      } finally {
        await second.stop();
      }
    } finally {
      sub.kill('SIGTERM');
    }
  });

  it('token mints a JWT the server accepts with the given grants', async () => {
    const secret = 'cli-test-secret-0123456789';
    const r = cli(['token', '--secret', secret, '--sub', 'bob', '--publish', 'b/#', '--subscribe', 'b/#', '--expires', '10m']);
    assert.equal(r.status, 0, r.stderr);
    const token = r.stdout.trim();
    const { payload } = await jwtVerify(token, new TextEncoder().encode(secret));
    assert.equal(payload.sub, 'bob');
    assert.deepEqual((payload.omnipush as { publish: string[] }).publish, ['b/#']);
    const server = await spawnServer(['--store', 'memory'], { OMNIPUSH_AUTH__JWT__SECRET: secret });
    try {
      assert.equal(cli(['pub', 'b/1', 'ok', '--url', server.http, '--token', token]).status, 0);
      const denied = cli(['pub', 'c/1', 'no', '--url', server.http, '--token', token]);
      assert.equal(denied.status, 1);
      assert.match(denied.stderr, /403/);
      const anonymous = cli(['pub', 'b/1', 'no', '--url', server.http]);
      assert.match(anonymous.stderr, /401/);
      // --admin adds the admin grant: the server API answers that token, not bob's
      const admin = cli(['token', '--secret', secret, '--sub', 'ops', '--admin']);
      assert.equal(admin.status, 0, admin.stderr);
      const asAdmin = await fetch(`${server.http}/v1/admin/session`, { headers: { authorization: `Bearer ${admin.stdout.trim()}` } });
      assert.equal(asAdmin.status, 200);
      assert.equal(((await asAdmin.json()) as { who: string }).who, 'ops');
      assert.equal((await fetch(`${server.http}/v1/admin/session`, { headers: { authorization: `Bearer ${token}` } })).status, 403);
    } finally {
      await server.stop();
    }
  });

  it('serve refuses bad configuration with a message naming the key, and unsafe binds', () => {
    const file = join(dir.path, 'bad.yaml');
    writeFileSync(file, 'limits:\n  maxQueueBytes: -1\n');
    const bad = cli(['serve', '--config', file, '--port', '0']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /limits\.maxQueueBytes/);
    const unsafe = cli(['serve', '--host', '0.0.0.0', '--port', '0', '--store', 'memory']);
    assert.equal(unsafe.status, 1);
    assert.match(unsafe.stderr, /no authentication configured/);
  });
});
