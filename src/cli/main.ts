import { Command, InvalidArgumentError } from 'commander';
import { checkBindSafety } from '../auth/authenticator.js';
import { mintToken } from '../auth/token.js';
import { loadConfig } from '../config/load.js';
import { VERSION } from '../version.js';
import { subscribeCommand } from './sub.js';

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function fail(message: string): never {
  process.stderr.write(`omnipush: ${message}\n`);
  process.exit(1);
}

const program = new Command();
program.name('omnipush').description('One push server, five doors.').version(VERSION);

program
  .command('serve')
  .description('start the server')
  .option('--host <host>', 'HTTP listen address (default 127.0.0.1)')
  .option('--port <port>', 'HTTP port; 0 picks a free one (default 8080)', int)
  .option('--mqtt-port <port>', 'MQTT TCP port; 0 picks a free one (default 1883)', int)
  .option('--data <dir>', 'store directory (default ./data)')
  .option('--store <kind>', 'sqlite, memory or redis')
  .option('--config <file>', 'YAML or JSON config file')
  .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
  .option('--workers <n>', 'run N processes sharing the ports; needs store and bus on Redis (docs/cluster.md)', int)
  .action(async (o: { host?: string; port?: number; mqttPort?: number; data?: string; store?: string; config?: string; logLevel?: string; workers?: number }) => {
    let config;
    try {
      config = loadConfig({
        file: o.config,
        flags: { http: { host: o.host, port: o.port }, mqtt: { port: o.mqttPort }, store: { dir: o.data, kind: o.store }, log: { level: o.logLevel } },
      });
      checkBindSafety(config);
    } catch (e) {
      fail((e as Error).message);
    }
    if (o.workers !== undefined) {
      const { isWorker, runPrimary, runWorker, workersRefusal } = await import('./workers.js');
      if (isWorker()) return runWorker(config);
      if (o.workers < 1) fail('--workers must be at least 1');
      const why = workersRefusal(config);
      if (why) fail(why);
      return runPrimary(o.workers, (line) => process.stdout.write(`${line}\n`), fail);
    }
    const { startServer } = await import('../server.js');
    let server;
    try {
      server = await startServer(config);
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`);
    }
    const { bannerLines } = await import('./banner.js');
    process.stdout.write(`${bannerLines(server, config).join('\n')}\n`);
    // scripts and orchestration read this line; a person at a terminal has the banner
    if (!process.stdout.isTTY) process.stdout.write(`${JSON.stringify({ event: 'listening', http: server.http, mqtt: server.mqtt, mqtts: server.mqtts })}\n`);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      const force = setTimeout(() => {
        process.stderr.write(`omnipush: ${signal}: shutdown took too long, exiting\n`);
        process.exit(1);
      }, 15_000);
      force.unref();
      server.close().then(
        () => process.exit(0),
        (e: unknown) => fail(`shutdown failed: ${(e as Error).message}`),
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

program
  .command('pub')
  .description('publish a message')
  .argument('<topic>', 'topic name')
  .argument('<data>', 'payload (text)')
  .option('--url <url>', 'server URL', process.env.OMNIPUSH_URL ?? 'http://127.0.0.1:8080')
  .option('--token <jwt>', 'bearer token', process.env.OMNIPUSH_TOKEN)
  .option('--retain', 'keep as the retained message of the topic')
  .option('--event <name>', 'SSE event name')
  .option('--ttl <seconds>', 'expire after this many seconds', Number)
  .action(async (topic: string, data: string, o: { url: string; token?: string; retain?: boolean; event?: string; ttl?: number }) => {
    const body: Record<string, unknown> = { topic, data };
    if (o.retain) body.retain = true;
    if (o.event) body.event = o.event;
    if (o.ttl !== undefined) body.ttl = o.ttl;
    let r: Response;
    try {
      r = await fetch(new URL('/v1/publish', o.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
        body: JSON.stringify(body),
      });
    } catch (e) {
      fail(`cannot reach ${o.url}: ${(e as Error).message}`);
    }
    const text = await r.text();
    if (!r.ok) {
      let msg = text;
      try {
        msg = (JSON.parse(text) as { error: { code: string; message: string } }).error.message;
      } catch {
        /* not JSON */
      }
      fail(`${r.status}: ${msg}`);
    }
    process.stdout.write(`${text}\n`);
  });

program
  .command('sub')
  .description('subscribe and print messages as they arrive (one JSON line each); resumes on reconnect')
  .argument('<filter...>', 'topic filters')
  .option('--url <url>', 'server URL', process.env.OMNIPUSH_URL ?? 'http://127.0.0.1:8080')
  .option('--token <jwt>', 'bearer token', process.env.OMNIPUSH_TOKEN)
  .option('--since <cursor>', 'start after this cursor (or all, now)')
  .action(async (filters: string[], o: { url: string; token?: string; since?: string }) => {
    await subscribeCommand(filters, o);
  });

program
  .command('token')
  .description('mint an HS256 JWT for testing, from --secret or the config file')
  .option('--secret <secret>', 'HS256 secret (default: auth.jwt.secret of --config)')
  .option('--config <file>', 'config file to read the secret from')
  .option('--sub <id>', 'subject (principal id)', 'cli')
  .option('--publish <filter>', 'allow publishing to this filter (repeatable)', collect, [])
  .option('--subscribe <filter>', 'allow subscribing to this filter (repeatable)', collect, [])
  .option('--deny-publish <filter>', 'deny publishing to this filter (repeatable)', collect, [])
  .option('--deny-subscribe <filter>', 'deny subscribing to this filter (repeatable)', collect, [])
  .option('--expires <span>', 'lifetime, e.g. 30m, 1h, 7d', '1h')
  .action(async (o: { secret?: string; config?: string; sub: string; publish: string[]; subscribe: string[]; denyPublish: string[]; denySubscribe: string[]; expires: string }) => {
    let secret = o.secret;
    let claim: string | undefined;
    let issuer: string | undefined;
    let audience: string | undefined;
    if (!secret && o.config) {
      try {
        const cfg = loadConfig({ file: o.config, env: {} });
        secret = cfg.auth.jwt?.secret;
        claim = cfg.auth.jwt?.claim;
        issuer = cfg.auth.jwt?.issuer;
        audience = cfg.auth.jwt?.audience;
      } catch (e) {
        fail((e as Error).message);
      }
    }
    if (!secret) fail('give --secret, or --config with auth.jwt.secret');
    const token = await mintToken({
      secret,
      sub: o.sub,
      grants: { publish: o.publish, subscribe: o.subscribe, deny: { publish: o.denyPublish, subscribe: o.denySubscribe } },
      expiresIn: o.expires,
      claim,
      issuer,
      audience,
    });
    process.stdout.write(`${token}\n`);
  });

program
  .command('passwd')
  .description('print an scrypt hash of a password for auth.users[].passwordHash (reads the password from stdin)')
  .action(async () => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
    if (password === '') fail('give the password on stdin, e.g. printf %s "$PASSWORD" | omnipush passwd');
    const { hashPassword } = await import('../auth/users.js');
    process.stdout.write(`${await hashPassword(password)}\n`);
  });

const configCmd = program.command('config').description('configuration files');
configCmd
  .command('init')
  .description('write a starter configuration: every key with a description and its default, commented out')
  .argument('[file]', 'where to write it (.yaml); default: stdout')
  .option('--force', 'overwrite an existing file')
  .action(async (file: string | undefined, o: { force?: boolean }) => {
    const { starterConfig } = await import('../config/starter.js');
    const text = starterConfig();
    if (!file) {
      process.stdout.write(text);
      return;
    }
    const { writeFileSync } = await import('node:fs');
    try {
      writeFileSync(file, text, { flag: o.force ? 'w' : 'wx' });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      fail(err.code === 'EEXIST' ? `${file} exists; use --force to overwrite it` : `cannot write ${file}: ${err.message}`);
    }
    process.stderr.write(`wrote ${file}\n`);
  });

program
  .command('vapid')
  .description('print the VAPID key pair Web Push uses (from the config, else the store, creating and storing one if none), or --generate a new one without storing it')
  .option('--generate', 'print a new key pair for webpush.publicKey / webpush.privateKey; touches nothing')
  .option('--config <file>', 'YAML or JSON config file')
  .option('--data <dir>', 'store directory (default ./data)')
  .option('--public-only', 'print only the public key (the applicationServerKey browsers subscribe with)')
  .action(async (o: { generate?: boolean; config?: string; data?: string; publicOnly?: boolean }) => {
    const { generateVapidKeys } = await import('../transports/webpush/vapid.js');
    let keys;
    let source = 'generated';
    if (o.generate) keys = generateVapidKeys();
    else {
      let config;
      try {
        config = loadConfig({ file: o.config, flags: { store: { dir: o.data } } });
      } catch (e) {
        fail((e as Error).message);
      }
      if (config.store.kind === 'memory' && !config.webpush.publicKey) fail('the memory store keeps no keys; use --generate and put them in the config');
      const { createStore } = await import('../store/index.js');
      const { loadOrCreateVapidKeys } = await import('../transports/webpush/vapid-keys.js');
      const store = await createStore(config.store);
      try {
        ({ keys, source } = await loadOrCreateVapidKeys(store, config.webpush));
      } catch (e) {
        fail((e as Error).message);
      } finally {
        await store.close();
      }
    }
    if (o.publicOnly) process.stdout.write(`${keys.publicKey}\n`);
    else process.stdout.write(`${JSON.stringify({ publicKey: keys.publicKey, privateKey: keys.privateKey, source })}\n`);
  });

program.parseAsync(process.argv).catch((e: unknown) => fail((e as Error).message));
