import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { IPubackPacket, IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { checkBindSafety } from '../src/auth/authenticator.js';
import { hashPassword, verifyPassword } from '../src/auth/users.js';
import { parseConfig } from '../src/config/schema.js';
import { mintToken } from '../src/auth/token.js';
import type { RunningServer } from '../src/server.js';
import { RawClient } from './helpers/mqtt.js';
import { REPO_ROOT, startTestServer, waitFor, within } from './helpers/server.js';

const SECRET = 'mqtt-test-secret-0123456789';

describe('MQTT authentication and grants', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({
      auth: {
        allowAnonymous: false,
        jwt: { secret: SECRET },
        users: [
          {
            username: 'alice',
            passwordHash: await hashPassword('wonderland'),
            grants: { publish: ['a/#'], subscribe: ['a/#'], deny: { publish: ['a/secret'], subscribe: ['a/private/#'] } },
          },
        ],
      },
    });
  });
  after(() => server.close());

  async function login(version: 4 | 5, username?: string, password?: string) {
    const c = await RawClient.open(server, version);
    const ack = await c.connect({ clientId: `c-${Math.random().toString(36).slice(2)}`, username, password: password === undefined ? undefined : Buffer.from(password) });
    return { c, ack };
  }

  it('accepts a static user with the right password; refuses a wrong one (0x86 / 4) and none (0x87 / 5)', async () => {
    for (const v of [4, 5] as const) {
      const ok = await login(v, 'alice', 'wonderland');
      assert.equal(v === 5 ? ok.ack.reasonCode : ok.ack.returnCode, 0);
      ok.c.close();
      const bad = await login(v, 'alice', 'looking-glass');
      assert.equal(v === 5 ? bad.ack.reasonCode : bad.ack.returnCode, v === 5 ? 0x86 : 4);
      await bad.c.waitClosed();
      const none = await login(v);
      assert.equal(v === 5 ? none.ack.reasonCode : none.ack.returnCode, v === 5 ? 0x87 : 5);
      await none.c.waitClosed();
    }
  });

  it('takes a JWT as the password, with the same grants as the HTTP door', async () => {
    const token = await mintToken({ secret: SECRET, sub: 'device-1', grants: { publish: ['tok/#'], subscribe: ['tok/#'], deny: { publish: [], subscribe: [] } } });
    const { c, ack } = await login(5, 'ignored', token);
    assert.equal(ack.reasonCode, 0);
    c.send({ cmd: 'publish', topic: 'tok/ok', payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false });
    assert.equal(((await c.next('puback')) as IPubackPacket).reasonCode ?? 0, 0);
    c.send({ cmd: 'publish', topic: 'other/t', payload: Buffer.from('x'), qos: 1, messageId: 2, dup: false, retain: false });
    assert.equal(((await c.next('puback')) as IPubackPacket).reasonCode, 0x87);
    const http = await fetch(`${server.http}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ topic: 'other/t', data: 'x' }) });
    assert.equal(http.status, 403, 'the HTTP door says no to the same publish');
    c.close();
    const bad = await login(5, 'x', `${token}x`);
    assert.equal(bad.ack.reasonCode, 0x86);
  });

  it('denies publishes: 0x87 in v5, acknowledged and dropped in 3.1.1; nothing is delivered', async () => {
    const sub = await login(5, 'alice', 'wonderland');
    sub.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }] });
    await sub.c.next('suback');
    const v5 = await login(5, 'alice', 'wonderland');
    v5.c.send({ cmd: 'publish', topic: 'a/secret', payload: Buffer.from('no'), qos: 1, messageId: 1, dup: false, retain: false });
    assert.equal(((await v5.c.next('puback')) as IPubackPacket).reasonCode, 0x87);
    v5.c.send({ cmd: 'publish', topic: 'b/t', payload: Buffer.from('no'), qos: 0, dup: false, retain: false });
    const v4 = await login(4, 'alice', 'wonderland');
    v4.c.send({ cmd: 'publish', topic: 'a/secret', payload: Buffer.from('no'), qos: 1, messageId: 1, dup: false, retain: false });
    await v4.c.next('puback');
    v4.c.send({ cmd: 'publish', topic: 'a/open', payload: Buffer.from('yes'), qos: 1, messageId: 2, dup: false, retain: false });
    await v4.c.next('puback');
    const got = (await sub.c.next('publish')) as IPublishPacket;
    assert.equal(got.payload.toString(), 'yes', 'only the allowed publish arrives');
    for (const x of [sub, v5, v4]) x.c.close();
  });

  it('denies subscriptions: 0x87 in v5, 0x80 in 3.1.1, per filter', async () => {
    for (const v of [4, 5] as const) {
      const { c } = await login(v, 'alice', 'wonderland');
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/x', qos: 1 }, { topic: 'b/x', qos: 1 }, { topic: 'a/private/y', qos: 0 }, { topic: '$share/g/a/s', qos: 2 }] });
      const ack = (await c.next('suback')) as ISubackPacket;
      const no = v === 5 ? 0x87 : 0x80;
      assert.deepEqual(ack.granted, [1, no, no, 2]);
      c.close();
    }
  });

  it('omnipush passwd prints an scrypt hash of the password on stdin', async () => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'bin/omnipush.js'), 'passwd'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stdin.end('s3cret\n');
    const code = await within(new Promise((r) => p.once('exit', r)), 20_000, 'omnipush passwd');
    assert.equal(code, 0);
    const hash = out.trim();
    assert.match(hash, /^scrypt\$\d+\$\d+\$\d+\$/);
    assert.equal(await verifyPassword(Buffer.from('s3cret'), hash), true);
    assert.equal(await verifyPassword(Buffer.from('s3cret\n'), hash), false);
  });
});

describe('MQTT grants without configuration', () => {
  it('lets anonymous clients use every topic but $SYS, which needs its own grant', async () => {
    const server = await startTestServer({});
    try {
      const c = await RawClient.open(server, 5);
      await c.connect({ clientId: 'anon' });
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }, { topic: '$SYS/#', qos: 0 }] });
      assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [0, 0x87]);
      c.send({ cmd: 'publish', topic: '$SYS/fake', payload: Buffer.from('x'), qos: 1, messageId: 3, dup: false, retain: false });
      assert.equal(((await c.next('puback')) as IPubackPacket).reasonCode, 0x87);
      await waitFor(() => !c.closed, 'still connected');
      c.close();
    } finally {
      await server.close();
    }
  });
});

describe('MQTT static users alone', () => {
  it('make anonymous access opt-in, and count as credentials for binding beyond loopback', async () => {
    const users = [{ username: 'bob', passwordHash: await hashPassword('builder'), grants: { publish: ['b/#'], subscribe: ['b/#'] } }];
    const server = await startTestServer({ auth: { users } });
    try {
      const anon = await RawClient.open(server, 5);
      assert.equal((await anon.connect({ clientId: 'anon' })).reasonCode, 0x87);
      const bob = await RawClient.open(server, 5);
      assert.equal((await bob.connect({ clientId: 'bob', username: 'bob', password: Buffer.from('builder') })).reasonCode, 0);
      bob.close();
    } finally {
      await server.close();
    }
    assert.throws(() => checkBindSafety(parseConfig({ mqtt: { host: '0.0.0.0' } })), /refusing to listen on 0\.0\.0\.0/);
    assert.doesNotThrow(() => checkBindSafety(parseConfig({ mqtt: { host: '0.0.0.0' }, auth: { users } })));
  });
});
