import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { REPO_ROOT, startTestServer, waitFor, within } from './helpers/server.js';

const BIN = join(REPO_ROOT, 'bin/omnipush.js');

interface Served {
  stdout: string[];
  stderr: () => string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

function serve(args: string[], env: NodeJS.ProcessEnv = {}): Served {
  const proc = spawn(process.execPath, [BIN, 'serve', '--store', 'memory', ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  let err = '';
  createInterface({ input: proc.stdout! }).on('line', (l) => stdout.push(l));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  return { stdout, stderr: () => err, exited, kill: (s) => proc.kill(s) };
}

function listening(s: Served): Promise<{ http: string; mqtt: string }> {
  return waitFor(() => {
    for (const l of s.stdout) {
      if (l.startsWith('{')) return JSON.parse(l) as { http: string; mqtt: string };
    }
    return undefined;
  }, 'the listening line', 20_000);
}

describe('omnipush serve output', () => {
  it('starts with a plain banner of door URLs, logs JSON off a terminal, and logs what the shutdown drained', async () => {
    const s = serve(['--port', '0', '--mqtt-port', '0']);
    const { http, mqtt } = await listening(s);
    const ws = http.replace('http', 'ws');
    // the banner comes before anything else, in plain text
    assert.match(s.stdout[0], /^omnipush \S+ listening; store memory, bus local$/);
    const banner = s.stdout.slice(1, s.stdout.findIndex((l) => l.startsWith('{')));
    assert.deepEqual(
      banner.map((l) => l.trim().split(/\s+/).slice(0, 2)),
      [
        ['HTTP', http],
        ['SSE', `${http}/v1/sse?topic=<filter>`],
        ['WebSocket', `${ws}/v1/ws`],
        ['Long-poll', `${http}/v1/poll?topic=<filter>`],
        ['MQTT', mqtt],
        ['MQTT/WS', `${ws}/mqtt`],
        ['Metrics', `${http}/metrics`],
      ],
    );
    // stderr is a pipe here: JSON lines
    await waitFor(() => s.stderr().includes('\n'), 'a log line');
    const first = JSON.parse(s.stderr().split('\n')[0]) as { msg: string; http: string };
    assert.equal(first.msg, 'omnipush listening');
    assert.equal(first.http, http);
    // one open stream for the shutdown to drain
    const ctl = new AbortController();
    const stream = await fetch(`${http}/v1/sse?topic=a`, { signal: ctl.signal });
    assert.equal(stream.status, 200);
    await waitFor(async () => /omnipush_connections\{transport="sse"\} 1\b/.test(await (await fetch(`${http}/metrics`)).text()), 'stream counted');
    s.kill('SIGTERM');
    assert.equal(await within(s.exited, 20_000, 'exit after SIGTERM'), 0);
    ctl.abort();
    const stopped = s
      .stderr()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; drained?: { connections: Record<string, number>; publishesInFlight: number } })
      .find((l) => l.msg === 'omnipush stopped');
    assert.ok(stopped, 'a stop line');
    assert.deepEqual(stopped.drained?.connections, { sse: 1 });
    assert.equal(stopped.drained?.publishesInFlight, 0);
  });

  it('writes readable log lines with log.format pretty', async () => {
    const s = serve(['--port', '0', '--mqtt-port', '0'], { OMNIPUSH_LOG__FORMAT: 'pretty' });
    await listening(s);
    await waitFor(() => s.stderr().includes('omnipush listening'), 'the listening log line');
    const line = s.stderr().split('\n').find((l) => l.includes('omnipush listening'))!;
    assert.throws(() => JSON.parse(line) as unknown, 'not JSON');
    assert.match(line, /INFO/);
    s.kill('SIGTERM');
    assert.equal(await within(s.exited, 20_000, 'exit'), 0);
  });

  it('on a terminal: readable logs by default, and the banner without the JSON line', async (t) => {
    // a pseudo-terminal from Python's pty module stands in for a person's terminal
    if (spawnSync('python3', ['-c', 'import pty']).status !== 0) {
      if (process.env.OMNIPUSH_REQUIRE_ALL === '1') assert.fail('python3 with the pty module is required');
      t.skip('SKIPPED: python3 (pty module) not found; logs on a terminal are not tested');
      return;
    }
    const script = `
import os, pty, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b''
end = time.time() + 20
# the banner's last line comes once the server is up and SIGTERM drains it
while not (b'omnipush listening' in out and b'/metrics' in out) and time.time() < end:
    try:
        out += os.read(fd, 4096)
    except OSError:
        break
os.kill(pid, signal.SIGTERM)
try:
    while True:
        chunk = os.read(fd, 4096)
        if not chunk: break
        out += chunk
except OSError:
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;
    const r = await within(
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn('python3', ['-c', script, process.execPath, BIN, 'serve', '--store', 'memory', '--port', '0', '--mqtt-port', '0'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.on('exit', (code) => resolve({ code, out }));
      }),
      40_000,
      'serve on a pty',
    );
    assert.equal(r.code, 0, r.out);
    // eslint-disable-next-line no-control-regex
    const text = r.out.replace(/\x1b\[[0-9;]*m/g, '');
    assert.match(text, /^omnipush \S+ listening; store memory/m);
    assert.match(text, /^ {2}SSE +http:\/\/127\.0\.0\.1:\d+\/v1\/sse/m);
    assert.match(text, /INFO.*omnipush listening/);
    assert.doesNotMatch(text, /"level":/, 'no JSON log lines');
    assert.doesNotMatch(text, /"event":"listening"/, 'no JSON listening line');
  });

  it('names the door, the port and the flag that moves it when a port is taken', async () => {
    const holder = await startTestServer();
    try {
      const mqttPort = new URL(holder.mqtt!).port;
      const httpPort = new URL(holder.http).port;
      const m = serve(['--port', '0', '--mqtt-port', mqttPort]);
      assert.equal(await within(m.exited, 20_000, 'exit on the MQTT clash'), 1);
      assert.equal(
        m.stderr().trim(),
        `omnipush: cannot start: MQTT port ${mqttPort} is in use on 127.0.0.1; move it with --mqtt-port or mqtt.port (0 picks a free port), or turn MQTT off with mqtt.enabled: false`,
      );
      const h = serve(['--port', httpPort, '--mqtt-port', '0']);
      assert.equal(await within(h.exited, 20_000, 'exit on the HTTP clash'), 1);
      assert.equal(h.stderr().trim(), `omnipush: cannot start: HTTP port ${httpPort} is in use on 127.0.0.1; move it with --port or http.port (0 picks a free port)`);
    } finally {
      await holder.close();
    }
  });
});
