import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { within } from './server.js';

/** The app's backend in its own process (hook-app-process.ts), answering hooks over real HTTP. */
export interface HookApp {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  proc: ChildProcess;
  /** The hook requests it received so far, in order. */
  asked(): Promise<Array<Record<string, unknown>>>;
  stop(): Promise<void>;
}

export async function startHookApp(): Promise<HookApp> {
  const script = new URL('./hook-app-process.js', import.meta.url).pathname;
  const proc = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const lines = createInterface({ input: proc.stdout! });
  const port = await within(
    new Promise<number>((resolve, reject) => {
      lines.on('line', (l) => {
        const m = /^listening (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      proc.once('exit', (code) => reject(new Error(`hook app exited with ${code} before listening`)));
    }),
    10_000,
    'the hook app listening',
  );
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    proc,
    async asked() {
      return (await (await fetch(`${url}/asked`)).json()) as Array<Record<string, unknown>>;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill();
      await gone;
    },
  };
}
