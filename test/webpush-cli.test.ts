import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { checkVapidKeys } from '../src/transports/webpush/vapid.js';
import { REPO_ROOT, tempDir } from './helpers/server.js';

const run = promisify(execFile);
const omnipush = (...args: string[]) => run(process.execPath, [join(REPO_ROOT, 'bin/omnipush.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, OMNIPUSH_CONFIG: '' } });

describe('omnipush vapid', () => {
  it('--generate prints a fresh, valid key pair each time', async () => {
    const a = JSON.parse((await omnipush('vapid', '--generate')).stdout) as { publicKey: string; privateKey: string };
    const b = JSON.parse((await omnipush('vapid', '--generate')).stdout) as { publicKey: string; privateKey: string };
    checkVapidKeys(a);
    assert.notEqual(a.publicKey, b.publicKey);
  });

  it('creates the key pair in the store once and prints the same one afterwards', async () => {
    const dir = tempDir('omnipush-vapid-');
    try {
      const first = JSON.parse((await omnipush('vapid', '--data', dir.path)).stdout) as { publicKey: string; source: string };
      assert.equal(first.source, 'generated');
      const again = JSON.parse((await omnipush('vapid', '--data', dir.path)).stdout) as { publicKey: string; source: string };
      assert.equal(again.source, 'store');
      assert.equal(again.publicKey, first.publicKey);
      assert.equal((await omnipush('vapid', '--data', dir.path, '--public-only')).stdout.trim(), first.publicKey);
    } finally {
      dir.remove();
    }
  });
});
