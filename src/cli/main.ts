import { Command, InvalidArgumentError } from 'commander';
import { checkBindSafety } from '../auth/authenticator.js';
import { mintToken } from '../auth/token.js';
import { parseDuration } from '../config/duration.js';
import { loadConfig } from '../config/load.js';
import { parseConfig } from '../config/schema.js';
import { VERSION } from '../version.js';
import { stopWithNpmParent } from './parent-watch.js';
import { fail } from './fail.js';
import { readAll, readHidden } from './prompt.js';
import { publishCommand, type PubOptions } from './pub.js';
import { subscribeCommand } from './sub.js';

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
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
      // the primary drains its workers on SIGTERM: the same when npm's shell is gone
      stopWithNpmParent(() => process.kill(process.pid, 'SIGTERM'));
      const { bannerLines } = await import('./banner.js');
      const out = (line: string) => {
        // the workers' shared addresses, once all listen: the banner goes before the line scripts read
        const j = line.startsWith('{') ? (JSON.parse(line) as { event?: string; http?: string; mqtt?: string; mqtts?: string; workers?: number }) : undefined;
        if (j?.event === 'listening' && j.http) {
          process.stdout.write(`${bannerLines({ http: j.http, mqtt: j.mqtt, mqtts: j.mqtts }, config).join('\n')}\n  Workers    ${j.workers}\n`);
          if (process.stdout.isTTY) return;
        }
        process.stdout.write(`${line}\n`);
      };
      return runPrimary(o.workers, out, fail);
    }
    const { startServer } = await import('../server.js');
    let server;
    try {
      server = await startServer(config);
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`);
    }
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
    // before the banner: whoever reads it may signal at once, and must get a drain, not a kill
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    stopWithNpmParent(() => stop('parent exit'));
    const { bannerLines } = await import('./banner.js');
    process.stdout.write(`${bannerLines(server, config).join('\n')}\n`);
    // scripts and orchestration read this line; a person at a terminal has the banner
    if (!process.stdout.isTTY) process.stdout.write(`${JSON.stringify({ event: 'listening', http: server.http, mqtt: server.mqtt, mqtts: server.mqtts })}\n`);
  });

/** Options whose default comes from the environment: resolved at run time so `--help` never shows a token. */
const URL_HELP = 'server URL (default: $OMNIPUSH_URL, else http://127.0.0.1:8080)';
const TOKEN_HELP = 'bearer token (default: $OMNIPUSH_TOKEN)';
const serverUrl = (u?: string) => u ?? process.env.OMNIPUSH_URL ?? 'http://127.0.0.1:8080';
const bearer = (t?: string) => t ?? process.env.OMNIPUSH_TOKEN;

function span(v: string): number {
  const n = parseDuration(v);
  if (n === undefined || n <= 0) throw new InvalidArgumentError('expected seconds or a duration like 90s, 5m, 1d');
  return n;
}

program
  .command('pub')
  .description('publish a message: the payload as an argument, from stdin (-), from a file (-f), or one message per stdin line (-l)')
  .argument('<topic>', 'topic name')
  .argument('[data]', 'payload (text); - reads it from stdin')
  .option('--url <url>', URL_HELP)
  .option('--token <jwt>', TOKEN_HELP)
  .option('-f, --file <path>', 'send the file as the payload (bytes as they are)')
  .option('-l, --lines', 'read stdin and publish each line as its own message')
  .option('--retain', 'keep as the retained message of the topic')
  .option('--event <name>', 'SSE event name')
  .option('--ttl <seconds>', 'expire after this long (seconds, or 90s, 5m, 1d)', span)
  .action(async (topic: string, data: string | undefined, o: PubOptions) => {
    await publishCommand(topic, data, { ...o, url: serverUrl(o.url), token: bearer(o.token) });
  });

program
  .command('sub')
  .description('subscribe and print each message as "topic payload" (or --format, --json); resumes on reconnect')
  .argument('<filter...>', 'topic filters')
  .option('--url <url>', URL_HELP)
  .option('--token <jwt>', TOKEN_HELP)
  .option('--since <cursor>', 'start after this cursor (or all, now)')
  .option('--format <template>', 'line template: {topic} {data} {cursor} {event} {time} {json}, \\n and \\t')
  .option('--json', 'print each message as its JSON envelope (topic, cursor, data, event, publishedAt ...)')
  .option('--retries <n>', 'failed connection attempts in a row before giving up (default: keep trying)', int)
  .action(async (filters: string[], o: { url?: string; token?: string; since?: string; format?: string; json?: boolean; retries?: number }) => {
    await subscribeCommand(filters, { ...o, url: serverUrl(o.url), token: bearer(o.token) });
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
  .option('--admin', 'grant the server API (/v1/admin/...)', false)
  .action(async (o: { secret?: string; config?: string; sub: string; publish: string[]; subscribe: string[]; denyPublish: string[]; denySubscribe: string[]; expires: string; admin: boolean }) => {
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
    // a token signed with a secret the server would not load verifies nowhere: say so now
    try {
      parseConfig({ auth: { jwt: { secret } } });
    } catch (e) {
      fail(`--secret: the server refuses this secret (${(e as Error).message.replace(/^invalid configuration:\s*/, '')})`);
    }
    const token = await mintToken({
      secret,
      sub: o.sub,
      grants: { publish: o.publish, subscribe: o.subscribe, deny: { publish: o.denyPublish, subscribe: o.denySubscribe }, ...(o.admin ? { admin: true } : {}) },
      expiresIn: o.expires,
      claim,
      issuer,
      audience,
    });
    process.stdout.write(`${token}\n`);
  });

program
  .command('passwd')
  .description('print an scrypt hash of a password for auth.users[].passwordHash (asks twice without echo on a terminal; else reads stdin: one line, or two that must match)')
  .action(async () => {
    let password: string;
    if (process.stdin.isTTY) {
      try {
        password = await readHidden('Password: ');
        const again = await readHidden('Again: ');
        if (again !== password) fail('the passwords do not match');
      } catch (e) {
        fail((e as Error).message);
      }
    } else {
      const lines = (await readAll()).replace(/\r?\n$/, '').split(/\r?\n/);
      if (lines.length > 2) fail('give the password on one line (or twice, on two lines)');
      if (lines.length === 2 && lines[0] !== lines[1]) fail('the passwords do not match');
      password = lines[0];
    }
    if (password === '') fail('the password is empty; type it at the prompt, or: printf %s "$PASSWORD" | omnipush passwd');
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
