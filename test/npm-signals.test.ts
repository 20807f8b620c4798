import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accepting, killGroup, startUnderNpm, type NpmServer } from './helpers/npm-run.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { REPO_ROOT } from './helpers/server.js';

const SERVE = ['--port', '0', '--mqtt-port', '0', '--store', 'memory'];

/** Sends `signal` (to the npm process, or to its whole group like a terminal's Ctrl-C) and checks the server stopped gracefully. */
async function stopsGracefully(s: NpmServer, signal: NodeJS.Signals, target: 'npm' | 'group'): Promise<string> {
  try {
    assert.equal(await accepting(s.http), true);
    if (target === 'npm') s.npm.kill(signal);
    else process.kill(-s.npm.pid!, signal);
    const stderr = await s.gone(15_000);
    assert.match(stderr, /"msg":"omnipush stopped"/, 'the server logged its graceful stop');
    assert.equal(await accepting(s.http), false, 'nothing listens on the port any more');
    return stderr;
  } finally {
    killGroup(s.npm);
  }
}

describe('signals through npm', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`a ${signal} sent to \`npm start\` stops the server gracefully`, async () => {
      const s = await startUnderNpm('npm', ['start', '--', ...SERVE], REPO_ROOT);
      await stopsGracefully(s, signal, 'npm');
    });
  }

  // `npx omnipush serve` has npm's shell between npm and the server, as `npm exec` here does
  it('a SIGTERM sent to npm whose shell runs the server (npx, npm exec) stops the server gracefully', async () => {
    const s = await startUnderNpm('npm', ['exec', '--', 'node', 'bin/omnipush.js', 'serve', ...SERVE], REPO_ROOT);
    const stderr = await stopsGracefully(s, 'SIGTERM', 'npm');
    assert.match(stderr, /the npm process that started the server is gone/);
  });

  it('a SIGTERM sent to npm whose shell runs `serve --workers 2` drains every worker', { skip: redisMissing || false }, async () => {
    const redis = await startRedis();
    try {
      const env = { OMNIPUSH_STORE__KIND: 'redis', OMNIPUSH_STORE__REDIS__URL: redis.url, OMNIPUSH_BUS__KIND: 'redis' };
      const s = await startUnderNpm('npm', ['exec', '--', 'node', 'bin/omnipush.js', 'serve', '--workers', '2', '--port', '0', '--mqtt-port', '0'], REPO_ROOT, env);
      const stderr = await stopsGracefully(s, 'SIGTERM', 'npm');
      assert.equal(stderr.match(/"msg":"omnipush stopped"/g)?.length, 2, 'both workers drained');
    } finally {
      await redis.remove();
    }
  });

  it("a Ctrl-C (SIGINT to npm's process group) stops a server under npm exec gracefully", async () => {
    const s = await startUnderNpm('npm', ['exec', '--', 'node', 'bin/omnipush.js', 'serve', ...SERVE], REPO_ROOT);
    await stopsGracefully(s, 'SIGINT', 'group');
  });
});
