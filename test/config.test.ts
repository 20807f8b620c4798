import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { parseConfig } from '../src/config/schema.js';
import { tempDir } from './helpers/server.js';

const dir = tempDir('omnipush-config-');
after(() => dir.remove());

describe('configuration', () => {
  it('has working defaults', () => {
    const c = parseConfig({});
    assert.equal(c.http.host, '127.0.0.1');
    assert.equal(c.http.port, 8080);
    assert.equal(c.store.kind, 'sqlite');
    assert.equal(c.store.dir, './data');
  });

  it('reads YAML and JSON files; env beats file; flags beat env', () => {
    const yaml = join(dir.path, 'c.yaml');
    writeFileSync(yaml, 'http:\n  port: 9001\n  corsOrigins: ["https://a.example"]\nlimits:\n  maxQueueBytes: 1000\n');
    const json = join(dir.path, 'c.json');
    writeFileSync(json, JSON.stringify({ http: { port: 9002 } }));
    assert.equal(loadConfig({ file: yaml, env: {} }).http.port, 9001);
    assert.deepEqual(loadConfig({ file: yaml, env: {} }).http.corsOrigins, ['https://a.example']);
    assert.equal(loadConfig({ file: json, env: {} }).http.port, 9002);
    const env = { OMNIPUSH_HTTP__PORT: '9003', OMNIPUSH_LIMITS__MAX_QUEUE_BYTES: '2048', OMNIPUSH_AUTH__JWT__SECRET: 'a-secret-of-16-chars', OMNIPUSH_HTTP__CORS_ORIGINS: '[]' };
    const c = loadConfig({ file: yaml, env });
    assert.equal(c.http.port, 9003);
    assert.equal(c.limits.maxQueueBytes, 2048);
    assert.equal(c.auth.jwt?.secret, 'a-secret-of-16-chars');
    assert.deepEqual(c.http.corsOrigins, []);
    assert.equal(loadConfig({ file: yaml, env, flags: { http: { port: 0 } } }).http.port, 0);
    assert.equal(loadConfig({ env: { OMNIPUSH_CONFIG: json } }).http.port, 9002);
  });

  it('fails at start naming unknown keys, unknown variables and bad values', () => {
    const bad = join(dir.path, 'bad.yaml');
    writeFileSync(bad, 'http:\n  prot: 1\n');
    assert.throws(() => loadConfig({ file: bad, env: {} }), /unknown key: http\.prot/);
    assert.throws(() => loadConfig({ env: { OMNIPUSH_HTTP__PORTT: '1' } }), /http\.portt.*OMNIPUSH_HTTP__PORTT/s);
    assert.throws(() => loadConfig({ env: { OMNIPUSH_HTTP__PORT: 'eighty' } }), /http\.port/);
    assert.throws(() => parseConfig({ http: { port: 70000 } }), /http\.port/);
    assert.throws(() => parseConfig({ store: { kind: 'postgres' } }), /store\.kind/);
    assert.throws(() => parseConfig({ auth: { jwt: { secret: 'short' } } }), /auth\.jwt\.secret/);
    assert.throws(() => loadConfig({ file: join(dir.path, 'missing.yaml'), env: {} }), /cannot read config file/);
  });
});
