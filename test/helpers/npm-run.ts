import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { listeningLine, within, type Listening } from './server.js';

/** `omnipush serve` started through npm (`npm start`, `npx omnipush serve`, `npm exec ...`). */
export interface NpmServer {
  /** The npm process (leader of its own process group). */
  npm: ChildProcess;
  http: string;
  mqtt?: string;
  stderr(): string;
  /**
   * Resolves when every process that holds the output pipes is gone (npm, its shell, the server),
   * with what the server wrote to stderr; rejects after `ms`.
   */
  gone(ms: number): Promise<string>;
}

/** Spawns `command args` (npm or npx) in `cwd` and waits for the server's listening line. */
export async function startUnderNpm(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<NpmServer> {
  // its own process group, so a test can also signal the group the way a terminal's Ctrl-C does
  const npm = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let err = '';
  npm.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  // the pipes end only when the last process holding them (the server, if it outlives npm) exits
  const closed = Promise.all([new Promise((r) => npm.stdout!.once('end', r)), new Promise((r) => npm.stderr!.once('end', r))]);
  const exited = new Promise<void>((r) => npm.once('exit', () => r()));
  let listening: Listening;
  try {
    listening = await listeningLine(npm.stdout!, exited, () => `${command} ${args.join(' ')} exited before listening: ${err}`, 60_000, `listening line of ${command} ${args.join(' ')}`);
  } catch (e) {
    killGroup(npm);
    throw e;
  }
  return {
    npm,
    http: listening.http,
    mqtt: listening.mqtt,
    stderr: () => err,
    gone: async (ms) => {
      await within(Promise.all([closed, exited]), ms, `npm and the server it started to exit; stderr so far: ${err.slice(-2000)}`);
      return err;
    },
  };
}

/** Ends whatever is left of a test's npm process group (after a failed assertion). */
export function killGroup(npm: ChildProcess): void {
  try {
    process.kill(-npm.pid!, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** Whether something still accepts TCP connections at the URL's port. */
export function accepting(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
