import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertDoorsThrough, proxyMissing, runProxy, startProxiedServer, type ProxiedServer, type ProxyProcess } from './helpers/proxied-doors.js';
import { freePort } from './helpers/ports.js';
import { REPO_ROOT, tempDir } from './helpers/server.js';
import { opensslMissing, type SelfSigned } from './helpers/tls-cert.js';

const CADDY = '/usr/bin/caddy';
const caddyMissing = proxyMissing(CADDY, 'Caddy', 'caddy');

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
  let proxied: ProxiedServer | undefined;
  let caddy: ProxyProcess | undefined;

  before(async () => {
    proxied = await startProxiedServer(dir.path);
    const { base, cert, httpsPort, upstream } = proxied;
    const site = adapt(readFileSync(join(REPO_ROOT, 'docs/deploy/Caddyfile'), 'utf8'), { upstream, https: httpsPort, cert });
    // global options of the test run only: no admin endpoint, no port-80 redirect listener
    const global = `{\n\tadmin off\n\tauto_https disable_redirects\n\thttp_port ${await freePort()}\n\tstorage file_system ${join(dir.path, 'data')}\n}\n\n`;
    writeFileSync(join(dir.path, 'Caddyfile'), global + site);
    caddy = await runProxy({
      name: 'caddy',
      command: CADDY,
      args: ['run', '--config', join(dir.path, 'Caddyfile'), '--adapter', 'caddyfile'],
      env: { ...process.env, HOME: dir.path, XDG_DATA_HOME: join(dir.path, 'data'), XDG_CONFIG_HOME: join(dir.path, 'config') },
      base,
      startMs: 20_000,
    });
  });

  after(async () => {
    await caddy?.stop('SIGKILL');
    await proxied?.server.close();
    dir.remove();
  });

  it('passes SSE unbuffered, WebSocket, a held long-poll and MQTT over WebSocket, over TLS', async () => {
    await assertDoorsThrough(proxied!);
  });
});
