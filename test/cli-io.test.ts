import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { REPO_ROOT, startTestServer, tempDir, waitFor, within } from './helpers/server.js';

const BIN = join(REPO_ROOT, 'bin/omnipush.js');
const dir = tempDir('omnipush-cli-io-');
after(() => dir.remove());

function cli(args: string[], input?: string | Buffer, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000, input, env: { ...process.env, ...env } });
}

/** Like {@link cli}, without blocking this process (the server under test runs in it). */
function run(args: string[], input?: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return within(
    new Promise((resolve) => {
      const p = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (status) => resolve({ status, stdout, stderr }));
      p.stdin.end(input ?? '');
    }),
    20_000,
    `omnipush ${args.join(' ')}`,
  );
}

/** A running `omnipush sub` and the lines it printed. */
function sub(args: string[]): { proc: ChildProcess; lines: string[]; stderr: () => string } {
  const proc = spawn(process.execPath, [BIN, 'sub', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(l));
  return { proc, lines, stderr: () => err };
}

async function sseCount(server: RunningServer): Promise<number> {
  const m = /omnipush_connections\{transport="sse"\} (\d+)/.exec(await (await fetch(`${server.http}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

describe('omnipush CLI input and output', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('sub prints the topic with each message, or a --format template, or --json', async () => {
    const plain = sub(['fmt/#', '--url', server.http]);
    const templ = sub(['fmt/#', '--url', server.http, '--format', '{topic}|{event}|{cursor}|{data}']);
    const json = sub(['fmt/#', '--url', server.http, '--json']);
    try {
      await waitFor(async () => (await sseCount(server)) >= 3, 'three subscribers connected');
      const pub = await run(['pub', 'fmt/a/b', 'hello there', '--url', server.http, '--event', 'note']);
      assert.equal(pub.status, 0, pub.stderr);
      const { cursor } = JSON.parse(pub.stdout) as { cursor: string };
      await waitFor(() => plain.lines.length && templ.lines.length && json.lines.length, 'all three printed');
      assert.equal(plain.lines[0], 'fmt/a/b hello there');
      assert.equal(templ.lines[0], `fmt/a/b|note|${cursor}|hello there`);
      const j = JSON.parse(json.lines[0]) as { topic: string; cursor: string; data: string; event: string };
      assert.deepEqual([j.topic, j.cursor, j.data, j.event], ['fmt/a/b', cursor, 'hello there', 'note']);
    } finally {
      for (const s of [plain, templ, json]) s.proc.kill('SIGTERM');
    }
  });

  it('pub takes the payload from stdin (-), a file (-f) or one message per line (-l)', async () => {
    const history = async (topic: string) =>
      ((await (await fetch(`${server.http}/v1/history?topic=${encodeURIComponent(topic)}&since=all`)).json()) as { messages: Array<{ data?: string; data_base64?: string }> }).messages;
    const fromStdin = await run(['pub', 'in/stdin', '-', '--url', server.http], 'piped payload');
    assert.equal(fromStdin.status, 0, fromStdin.stderr);
    assert.deepEqual((await history('in/stdin')).map((m) => m.data), ['piped payload']);

    const file = join(dir.path, 'blob.bin');
    const bytes = Buffer.from([0xff, 0x00, 0x01, 0xfe]);
    writeFileSync(file, bytes);
    const fromFile = await run(['pub', 'in/file', '-f', file, '--url', server.http]);
    assert.equal(fromFile.status, 0, fromFile.stderr);
    assert.deepEqual((await history('in/file')).map((m) => m.data_base64), [bytes.toString('base64')]);

    const lines = await run(['pub', 'in/lines', '-l', '--url', server.http, '--ttl', '1h'], 'one\ntwo\r\nthree\n');
    assert.equal(lines.status, 0, lines.stderr);
    assert.equal(lines.stdout.trim().split('\n').length, 3, 'one acknowledgement per line');
    assert.deepEqual((await history('in/lines')).map((m) => m.data), ['one', 'two', 'three']);

    const twice = await run(['pub', 'in/x', 'arg', '-f', file, '--url', server.http]);
    assert.equal(twice.status, 1);
    assert.match(twice.stderr, /give the payload once/);
    const none = await run(['pub', 'in/x', '--url', server.http]);
    assert.equal(none.status, 1);
    const badTtl = await run(['pub', 'in/x', 'y', '--ttl', 'soon', '--url', server.http]);
    assert.equal(badTtl.status, 1);
    assert.match(badTtl.stderr, /--ttl.*duration/);
  });

  it('token refuses a secret the server would refuse', () => {
    const short = cli(['token', '--secret', 'too-short']);
    assert.equal(short.status, 1);
    assert.match(short.stderr, /the server refuses this secret.*auth\.jwt\.secret/);
    assert.equal(short.stdout, '');
    assert.equal(cli(['token', '--secret', 'long-enough-secret-1234']).status, 0);
  });

  it('never prints a token from the environment in --help', () => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.secret-looking-token.sig';
    for (const cmd of ['pub', 'sub']) {
      const help = cli([cmd, '--help'], undefined, { OMNIPUSH_TOKEN: token });
      assert.equal(help.status, 0);
      assert.match(help.stdout, /--token <jwt>.*\$OMNIPUSH_TOKEN/);
      assert.ok(!help.stdout.includes(token), `${cmd} --help shows no token`);
    }
  });

  it('passwd takes one line, or two that must match, when stdin is not a terminal', () => {
    const one = cli(['passwd'], 'correct horse\n');
    assert.equal(one.status, 0, one.stderr);
    assert.match(one.stdout, /^scrypt\$/);
    const two = cli(['passwd'], 'correct horse\ncorrect horse\n');
    assert.equal(two.status, 0, two.stderr);
    const differ = cli(['passwd'], 'correct horse\ncorrect hose\n');
    assert.equal(differ.status, 1);
    assert.match(differ.stderr, /do not match/);
    assert.equal(cli(['passwd'], '').status, 1);
  });

  it('passwd asks twice without echo on a terminal', async (t) => {
    // a pseudo-terminal from Python's pty module stands in for a person at a terminal
    if (spawnSync('python3', ['-c', 'import pty']).status !== 0) {
      if (process.env.OMNIPUSH_REQUIRE_ALL === '1') assert.fail('python3 with the pty module is required');
      t.skip('SKIPPED: python3 (pty module) not found; the terminal prompt is not tested');
      return;
    }
    const script = `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2], 'passwd'])
out = b''
def until(s, deadline=15):
    global out
    end = time.time() + deadline
    while s not in out and time.time() < end:
        try:
            out += os.read(fd, 1024)
        except OSError:
            break
until(b'Password: ')
os.write(fd, b'pty secret\\r')
until(b'Again: ')
os.write(fd, b'pty secret\\r')
until(b'scrypt$')
until(b'\\n', 5) if not out.rstrip().endswith(b'=') else None
try:
    while True:
        chunk = os.read(fd, 1024)
        if not chunk: break
        out += chunk
except OSError:
    pass
os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf8', 'replace'))
`;
    const r = await within(
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn('python3', ['-c', script, process.execPath, BIN], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.on('exit', (code) => resolve({ code, out }));
      }),
      30_000,
      'passwd on a pty',
    );
    assert.equal(r.code, 0);
    assert.match(r.out, /Password: /);
    assert.match(r.out, /Again: /);
    assert.match(r.out, /scrypt\$/);
    assert.ok(!r.out.includes('pty secret'), `the password is not echoed: ${JSON.stringify(r.out)}`);
  });

  it('sub says once per attempt that the server cannot be reached, backs off, and --retries gives up', async () => {
    // a port that was free a moment ago: nothing listens there
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const s = sub(['x', '--url', url, '--retries', '2']);
    const code = await within(new Promise<number | null>((r) => s.proc.once('exit', (c) => r(c))), 20_000, 'sub gives up');
    assert.equal(code, 1);
    const lines = s.stderr().trim().split('\n');
    assert.deepEqual(lines, [
      `omnipush: cannot reach ${url}: ECONNREFUSED; retrying in 1s`,
      `omnipush: cannot reach ${url}: ECONNREFUSED; retrying in 2s`,
      `omnipush: cannot reach ${url}: ECONNREFUSED; giving up after 3 attempts`,
    ]);
  });
});
