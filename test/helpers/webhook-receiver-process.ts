import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { within } from './server.js';

/** One request as the receiver process saw it. */
export interface ReceivedHook {
  webhookId: string;
  signature: string;
  verified: boolean;
  error?: string;
  status: number;
  path: string;
  body: unknown;
}

export interface EventJson {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

const SCRIPT = fileURLToPath(new URL('./webhook-receiver.js', import.meta.url));

/**
 * The receiver in a separate process; `received` collects its requests across restarts (a restart
 * on the same port is the receiver coming back after being down).
 */
export class ReceiverProcess {
  readonly received: ReceivedHook[] = [];
  port = 0;
  private proc: ChildProcess | null = null;

  constructor(private readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  async start(): Promise<void> {
    const proc = spawn(process.execPath, [SCRIPT, String(this.port), this.secret], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.proc = proc;
    const lines = createInterface({ input: proc.stdout! });
    this.port = await within(
      new Promise<number>((resolve, reject) => {
        lines.on('line', (l) => {
          const j = JSON.parse(l) as { ready?: number } & ReceivedHook;
          if (j.ready !== undefined) resolve(j.ready);
          else this.received.push(j);
        });
        proc.once('exit', (code) => reject(new Error(`webhook receiver exited with ${code}`)));
      }),
      10_000,
      'webhook receiver ready',
    );
  }

  /** Sets the status the receiver answers verified requests with. */
  async answer(status: number, retryAfter?: string, delayMs = 0): Promise<void> {
    const r = await fetch(`http://127.0.0.1:${this.port}/control`, { method: 'POST', body: JSON.stringify({ status, retryAfter, delayMs }) });
    await r.text();
  }

  /** SIGKILL: the receiver is down (connections refused) until {@link start} again. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** Every event in the requests answered with `status` (batched bodies flattened). */
  events(filter: (h: ReceivedHook) => boolean = (h) => h.status >= 200 && h.status < 300): EventJson[] {
    const out: EventJson[] = [];
    for (const h of this.received) {
      if (!filter(h)) continue;
      if (Array.isArray(h.body)) out.push(...(h.body as EventJson[]));
      else out.push(h.body as EventJson);
    }
    return out;
  }
}
