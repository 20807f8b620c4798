import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { exerciseDoors } from './helpers/doors.js';
import { accepting } from './helpers/npm-run.js';
import { freePort } from './helpers/ports.js';
import { REPO_ROOT, startTestServer, tempDir, waitFor } from './helpers/server.js';
import { opensslMissing, selfSignedCert, type SelfSigned } from './helpers/tls-cert.js';

const CADDY = '/usr/bin/caddy';
const caddyMissing = ((): string => {
  if (existsSync(CADDY)) return '';
  const why = `Caddy is not installed at ${CADDY} (Debian package "caddy")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING Caddy tests: ${why} ***\n`);
  return 'caddy missing';
})();

/**
 * docs/deploy/Caddyfile with only the lines under its `# adapt` comments changed: the site address
 * (here with the test's own certificate, where a real site gets one over ACME) and the upstream.
 */
function adapt(caddyfile: string, to: { upstream: number; https: number; cert: SelfSigned }): string {
  const lines = caddyfile.split('\n');
  let changed = 0;
  for (let i = 0; i < lines.length - 1; i++) {
    if (!lines[i].trimStart().startsWith('# adapt')) continue;
    const next = lines[i + 1];
    if (/^push\.example\.com \{$/.test(next)) lines[i + 1] = `https://127.0.0.1:${to.https} {\n\ttls ${to.cert.certFile} ${to.cert.keyFile}`;
    else if (/^\s*reverse_proxy 127\.0\.0\.1:8080 \{$/.test(next)) lines[i + 1] = next.replace('127.0.0.1:8080', `127.0.0.1:${to.upstream}`);
    else throw new Error(`docs/deploy/Caddyfile: a line under "# adapt" this test does not know: ${next.trim()}`);
    changed++;
  }
  assert.equal(changed, 2, 'the site address and the upstream');
  return lines.join('\n');
}

describe('Omnipush behind Caddy with docs/deploy/Caddyfile', { skip: caddyMissing || opensslMissing || undefined }, () => {
  const dir = tempDir('omnipush-caddy-');
  let cert: SelfSigned;
  let server: RunningServer;
  let caddy: ChildProcess | undefined;
  let base = '';
  let output = '';

  before(async () => {
    cert = selfSignedCert(dir.path);
    const httpsPort = await freePort();
    base = `https://127.0.0.1:${httpsPort}`;
    server = await startTestServer({ http: { publicUrl: base }, sse: { heartbeat: 60 } });
    const site = adapt(readFileSync(join(REPO_ROOT, 'docs/deploy/Caddyfile'), 'utf8'), { upstream: Number(new URL(server.http).port), https: httpsPort, cert });
    // global options of the test run only: no admin endpoint, no port-80 redirect listener
    const global = `{\n\tadmin off\n\tauto_https disable_redirects\n\thttp_port ${await freePort()}\n\tstorage file_system ${join(dir.path, 'data')}\n}\n\n`;
    writeFileSync(join(dir.path, 'Caddyfile'), global + site);
    caddy = spawn(CADDY, ['run', '--config', join(dir.path, 'Caddyfile'), '--adapter', 'caddyfile'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOME: dir.path, XDG_DATA_HOME: join(dir.path, 'data'), XDG_CONFIG_HOME: join(dir.path, 'config') },
    });
    caddy.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    caddy.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const proc = caddy;
    // whatever way this file's process ends, the proxy must not outlive it
    process.once('exit', () => proc.kill('SIGKILL'));
    let exited = false;
    caddy.once('exit', () => (exited = true));
    await waitFor(async () => {
      if (exited) throw new Error(`caddy exited: ${output}`);
      return accepting(base);
    }, 'caddy listening', 20_000);
  });

  after(async () => {
    if (caddy && caddy.exitCode === null) {
      const gone = new Promise((r) => caddy!.once('exit', r));
      caddy.kill('SIGKILL');
      await gone;
    }
    await server?.close();
    dir.remove();
  });

  it('passes SSE unbuffered, WebSocket, a held long-poll and MQTT over WebSocket, over TLS', async () => {
    const report = await exerciseDoors({ base, ca: cert.cert });
    assert.ok(report.sseLatencyMs < 5000);
  });
});
