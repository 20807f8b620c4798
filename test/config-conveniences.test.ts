import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { parseDuration } from '../src/config/duration.js';
import { configSchema, parseConfig } from '../src/config/schema.js';
import { KEY_DESCRIPTIONS } from '../src/config/descriptions.js';
import { unwrap } from '../src/config/schema-walk.js';
import { z } from 'zod';
import { REPO_ROOT, tempDir } from './helpers/server.js';

const dir = tempDir('omnipush-config-conv-');
after(() => dir.remove());
const BIN = join(REPO_ROOT, 'bin/omnipush.js');

/** A reader of the starter file who "uncomments everything": drops one leading `# ` per line. */
function uncommentAll(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/^# ?/, ''))
    .join('\n');
}

describe('configuration conveniences', () => {
  it('config init describes every key of the schema (grant lists aside, which are described as a whole)', () => {
    const missing: string[] = [];
    (function walk(shape: z.ZodRawShape, prefix: string) {
      for (const [key, field] of Object.entries(shape)) {
        const path = prefix + key;
        const inner = unwrap(field as z.ZodTypeAny);
        if (inner instanceof z.ZodObject) walk(inner.shape as z.ZodRawShape, `${path}.`);
        else if (!KEY_DESCRIPTIONS[path] && !path.startsWith('auth.anonymous.')) missing.push(path);
      }
    })(configSchema.shape, '');
    assert.deepEqual(missing, [], 'add a line to src/config/descriptions.ts for each');
  });

  it('takes duration strings wherever it takes seconds, and names a bad one', () => {
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('5m'), 300);
    assert.equal(parseDuration('2h'), 7200);
    assert.equal(parseDuration('1d'), 86400);
    assert.equal(parseDuration('500ms'), 0.5);
    assert.equal(parseDuration('12'), 12);
    assert.equal(parseDuration('1h30m'), undefined);
    assert.equal(parseDuration('soon'), undefined);
    const c = parseConfig({
      history: { maxAge: '1d', pruneInterval: '500ms', rules: [{ filter: 'a/#', maxAge: '2h' }] },
      sse: { heartbeat: '90s' },
      mqtt: { maxSessionExpiry: '7d', maxKeepAlive: '5m' },
      webpush: { defaultTtl: '1h' },
      cluster: { heartbeat: '1s', nodeTimeout: '5s' },
    });
    assert.equal(c.history.maxAge, 86400);
    assert.equal(c.history.pruneInterval, 0.5);
    assert.equal(c.history.rules[0].maxAge, 7200);
    assert.equal(c.sse.heartbeat, 90);
    assert.equal(c.mqtt.maxSessionExpiry, 604800);
    assert.equal(c.mqtt.maxKeepAlive, 300);
    assert.equal(c.webpush.defaultTtl, 3600);
    // numbers still work, and the bounds apply to the converted value
    assert.equal(parseConfig({ sse: { heartbeat: 7 } }).sse.heartbeat, 7);
    assert.throws(() => parseConfig({ sse: { heartbeat: 'soon' } }), /sse\.heartbeat: "soon" is not a duration/);
    assert.throws(() => parseConfig({ mqtt: { maxKeepAlive: '2d' } }), /mqtt\.maxKeepAlive/);
    assert.throws(() => parseConfig({ mqtt: { maxKeepAlive: '1500ms' } }), /mqtt\.maxKeepAlive: Expected integer/);
    // from the environment, as a string
    assert.equal(loadConfig({ env: { OMNIPUSH_LONGPOLL__DEFAULT_TIMEOUT: '30s' } }).longpoll.defaultTimeout, 30);
  });

  it('suggests the key a mistyped one most likely meant, at its own level', () => {
    assert.throws(() => parseConfig({ http: { prot: 1 } }), /unknown key: http\.prot \(did you mean http\.port\?\)/);
    assert.throws(() => parseConfig({ limits: { maxPayloadByte: 1 } }), /limits\.maxPayloadByte \(did you mean limits\.maxPayloadBytes\?\)/);
    assert.throws(() => parseConfig({ histroy: {} }), /unknown key: histroy \(did you mean history\?\)/);
    assert.throws(() => parseConfig({ store: { redis: { prefx: 'x' } } }), /store\.redis\.prefx \(did you mean store\.redis\.prefix\?\)/);
    assert.throws(() => parseConfig({ history: { rules: [{ filter: 'a', maxcount: 1 }] } }), /history\.rules\.0\.maxcount \(did you mean history\.rules\.0\.maxCount\?\)/);
    // nothing close: no guess
    const e = (() => {
      try {
        parseConfig({ http: { zebra: 1 } });
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })();
    assert.match(e, /unknown key: http\.zebra/);
    assert.doesNotMatch(e, /did you mean/);
  });

  it('config init writes a starter file that changes nothing as written and gives the defaults once uncommented', () => {
    const r = spawnSync(process.execPath, [BIN, 'config', 'init'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    const text = r.stdout;
    const defaults = parseConfig({});
    // as written: every line a comment, so the file parses to nothing and loads as the defaults
    assert.equal(parseYaml(text), null);
    // every key of the defaults appears, with a description for the known ones
    assert.match(text, /# listen port; 0 picks a free one\n# {3}port: 8080\n/);
    assert.match(text, /# {3}maxAge: 86400\n/);
    assert.match(text, /# {3}# tls:\n/);
    const uncommented = parseYaml(uncommentAll(text)) as Record<string, unknown>;
    assert.deepEqual(parseConfig(uncommented), defaults);
    for (const section of Object.keys(defaults)) assert.ok(section in uncommented, `section ${section} in the starter file`);
    // written to a file, it loads; it refuses to overwrite without --force
    const file = join(dir.path, 'omnipush.yaml');
    const w = spawnSync(process.execPath, [BIN, 'config', 'init', file], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 });
    assert.equal(w.status, 0, w.stderr);
    assert.equal(readFileSync(file, 'utf8'), text);
    assert.deepEqual(loadConfig({ file, env: {} }), defaults);
    const again = spawnSync(process.execPath, [BIN, 'config', 'init', file], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /exists; use --force/);
    assert.equal(spawnSync(process.execPath, [BIN, 'config', 'init', file, '--force'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 }).status, 0);
  });
});
