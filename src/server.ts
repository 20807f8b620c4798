// placeholder: the composition root is being written; see startServer below.
import type { Config } from './config/schema.js';
import type { Hub } from './core/hub.js';

export interface RunningServer {
  /** Base URL of the HTTP door, e.g. http://127.0.0.1:41234 */
  readonly http: string;
  readonly hub: Hub;
  /** Stops accepting, ends streams cleanly, flushes and closes the store. */
  close(): Promise<void>;
}

export async function startServer(_config: Config): Promise<RunningServer> {
  throw new Error('not yet');
}
