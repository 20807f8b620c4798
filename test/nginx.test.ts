import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { exerciseDoors } from './helpers/doors.js';
import { accepting } from './helpers/npm-run.js';
import { freePort } from './helpers/ports.js';
import { REPO_ROOT, startTestServer, tempDir, waitFor } from './helpers/server.js';
import { opensslMissing, selfSignedCert, type SelfSigned } from './helpers/tls-cert.js';

const NGINX = '/usr/sbin/nginx';
const nginxMissing = ((): string => {
  if (existsSync(NGINX)) return '';
  const why = `nginx is not installed at ${NGINX} (Debian package "nginx")`;
  if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
  console.error(`\n*** SKIPPING nginx tests: ${why} ***\n`);
  return 'nginx missing';
})();

/** The site configuration of docs/deploy/nginx.conf with only its `# adapt` lines changed: ports and certificate paths. */
function adapt(conf: string, to: { upstream: number; http: number; https: number; cert: SelfSigned }): string {
  const changed = new Map<string, number>();
  const out = conf.split('\n').map((line) => {
    if (!line.includes('# adapt') || line.trimStart().startsWith('#')) return line;
    const rules: Array<[string, RegExp, string]> = [
      ['upstream', /^(\s*)server 127\.0\.0\.1:8080;/, `$1server 127.0.0.1:${to.upstream};`],
      ['http', /^(\s*)listen 80;/, `$1listen 127.0.0.1:${to.http};`],
      ['https', /^(\s*)listen 443 ssl;/, `$1listen 127.0.0.1:${to.https} ssl;`],
      ['cert', /^(\s*)ssl_certificate\s+\S+;/, `$1ssl_certificate ${to.cert.certFile};`],
      ['key', /^(\s*)ssl_certificate_key\s+\S+;/, `$1ssl_certificate_key ${to.cert.keyFile};`],
      ['name', /^(\s*)server_name push\.example\.com;/, '$&'],
    ];
    for (const [what, re, by] of rules) {
      if (!re.test(line)) continue;
      changed.set(what, (changed.get(what) ?? 0) + 1);
      return line.replace(re, by);
    }
    throw new Error(`docs/deploy/nginx.conf: an "# adapt" line this test does not know: ${line.trim()}`);
  });
  // the file's shape is part of what is tested: one upstream, one listener of each kind
  assert.deepEqual(Object.fromEntries([...changed].filter(([k]) => k !== 'name')), { upstream: 1, http: 1, https: 1, cert: 1, key: 1 });
  return out.join('\n');
}

describe('Omnipush behind nginx with docs/deploy/nginx.conf', { skip: nginxMissing || opensslMissing || undefined }, () => {
  const dir = tempDir('omnipush-nginx-');
  let cert: SelfSigned;
  let server: RunningServer;
  let nginx: ChildProcess | undefined;
  let base = '';
  let plainPort = 0;
  let nginxOutput = '';

  before(async () => {
    cert = selfSignedCert(dir.path);
    const httpsPort = await freePort();
    plainPort = await freePort();
    base = `https://127.0.0.1:${httpsPort}`;
    // a heartbeat far beyond the SSE deadline: a buffering proxy cannot pass by luck
    server = await startTestServer({ http: { publicUrl: base }, sse: { heartbeat: 60 } });
    const site = adapt(readFileSync(join(REPO_ROOT, 'docs/deploy/nginx.conf'), 'utf8'), { upstream: Number(new URL(server.http).port), http: plainPort, https: httpsPort, cert });
    writeFileSync(join(dir.path, 'omnipush.conf'), site);
    // the rest of what Debian's /etc/nginx/nginx.conf would say, pointed at the temp dir
    const temp = (name: string) => `${name}_temp_path ${join(dir.path, name)};`;
    writeFileSync(
      join(dir.path, 'nginx.conf'),
      [
        process.getuid?.() === 0 ? 'user root root;' : '',
        'worker_processes 1;',
        `error_log ${join(dir.path, 'error.log')} info;`,
        'events { worker_connections 256; }',
        'http {',
        `  access_log ${join(dir.path, 'access.log')};`,
        `  ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}`,
        `  include ${join(dir.path, 'omnipush.conf')};`,
        '}',
      ].join('\n'),
    );
    nginx = spawn(NGINX, ['-p', dir.path, '-e', join(dir.path, 'error.log'), '-c', join(dir.path, 'nginx.conf'), '-g', `daemon off; pid ${join(dir.path, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginx.stdout!.on('data', (d: Buffer) => (nginxOutput += d.toString()));
    nginx.stderr!.on('data', (d: Buffer) => (nginxOutput += d.toString()));
    const proc = nginx;
    // whatever way this file's process ends, the proxy must not outlive it
    process.once('exit', () => proc.kill('SIGKILL'));
    let exited = false;
    nginx.once('exit', () => (exited = true));
    await waitFor(async () => {
      if (exited) throw new Error(`nginx exited: ${nginxOutput} ${readLog(dir.path)}`);
      return accepting(base);
    }, 'nginx listening');
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      const gone = new Promise((r) => nginx!.once('exit', r));
      // SIGTERM, the fast stop: a graceful one (SIGQUIT) would wait for open streams
      nginx.kill('SIGTERM');
      await gone;
    }
    await server?.close();
    dir.remove();
  });

  it('passes SSE unbuffered, WebSocket, a held long-poll and MQTT over WebSocket, over TLS', async () => {
    const report = await exerciseDoors({ base, ca: cert.cert });
    assert.ok(report.sseLatencyMs < 5000);
    // the requests went through nginx, not around it
    assert.match(readFileSync(join(dir.path, 'access.log'), 'utf8'), /"GET \/v1\/sse\?topic=doors\/sse[^"]*" 200 /);
    assert.match(readFileSync(join(dir.path, 'access.log'), 'utf8'), /"GET \/mqtt HTTP\/1\.1" 101 /);
  });

  it('sends plain HTTP to https', async () => {
    const res = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port: plainPort, path: '/v1/sse?topic=x' }, (r) => {
        r.resume();
        resolve({ status: r.statusCode ?? 0, location: r.headers.location });
      })
        .on('error', reject)
        .end();
    });
    assert.equal(res.status, 301);
    assert.equal(res.location, 'https://127.0.0.1/v1/sse?topic=x');
  });
});

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8');
  } catch {
    return '';
  }
}
