import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertDoorsThrough, proxyMissing, runProxy, startProxiedServer, type ProxiedServer, type ProxyProcess } from './helpers/proxied-doors.js';
import { freePort } from './helpers/ports.js';
import { REPO_ROOT, tempDir } from './helpers/server.js';
import { opensslMissing, type SelfSigned } from './helpers/tls-cert.js';

const NGINX = '/usr/sbin/nginx';
const nginxMissing = proxyMissing(NGINX, 'nginx', 'nginx');

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
  let proxied: ProxiedServer | undefined;
  let nginx: ProxyProcess | undefined;
  let plainPort = 0;

  before(async () => {
    plainPort = await freePort();
    proxied = await startProxiedServer(dir.path);
    const { base, cert, httpsPort, upstream } = proxied;
    const site = adapt(readFileSync(join(REPO_ROOT, 'docs/deploy/nginx.conf'), 'utf8'), { upstream, http: plainPort, https: httpsPort, cert });
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
    nginx = await runProxy({
      name: 'nginx',
      command: NGINX,
      args: ['-p', dir.path, '-e', join(dir.path, 'error.log'), '-c', join(dir.path, 'nginx.conf'), '-g', `daemon off; pid ${join(dir.path, 'nginx.pid')};`],
      base,
      more: () => readLog(dir.path),
    });
  });

  after(async () => {
    // SIGTERM, the fast stop: a graceful one (SIGQUIT) would wait for open streams
    await nginx?.stop('SIGTERM');
    await proxied?.server.close();
    dir.remove();
  });

  it('passes SSE unbuffered, WebSocket, a held long-poll and MQTT over WebSocket, over TLS', async () => {
    await assertDoorsThrough(proxied!);
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
