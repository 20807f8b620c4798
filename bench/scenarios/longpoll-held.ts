import { join } from 'node:path';
import { forkLoadGen, heldRss, type ServerProc } from '../lib/procs.js';
import { sleep } from '../lib/publish.js';
import { LOADGEN_DIR } from '../lib/servers.js';

export const POLL_TOPIC = 'bench/poll';

export interface HeldPollCost {
  clients: number;
  /** RSS slope between half and all of the clients holding a poll: what one more held poll costs. */
  rssMarginalPerHeldPollBytes: number;
  /** (RSS with every poll held − RSS before any) / clients: includes one-time costs such as V8's young generation growing. */
  rssPerHeldPollBytes: number;
}

/** The cursor our server gives for "now" on the bench topic: the clients of ours and of the floor poll from it alike. */
export async function headCursor(server: ServerProc, topic = POLL_TOPIC): Promise<string> {
  return ((await (await fetch(`${server.url}/v1/poll?topic=${topic}&since=now&timeout=0`)).json()) as { cursor: string }).cursor;
}

/**
 * What holding a poll costs a server: `clients` long-poll loops of the bench's own client
 * (loadgen/poll-clients: node:http with a keep-alive agent), in two halves from two processes, and
 * the server's RSS before, between and after. The same URL, headers and count reach our server and
 * the bare node:http floor (floor/longpoll-hold.ts), which never answers. Nothing is published:
 * every request stays held for the whole measurement (well inside the clients' 20 s timeout).
 */
export async function heldPollCost(server: ServerProc, clients: number, since: string, topic = POLL_TOPIC): Promise<HeldPollCost> {
  const rss0 = await heldRss(server);
  const gens = [0, 1].map(() => forkLoadGen(join(LOADGEN_DIR, 'poll-clients.js'), []));
  try {
    // the halves start one after the other so that the second half's cost can be read alone
    const half = Math.ceil(clients / 2);
    await gens[0].ask({ cmd: 'start', url: server.url, topic, count: half, since });
    await sleep(1500);
    const rssHalf = await heldRss(server);
    await gens[1].ask({ cmd: 'start', url: server.url, topic, count: clients - half, since });
    await sleep(1500);
    const rss1 = await heldRss(server);
    return {
      clients,
      rssMarginalPerHeldPollBytes: Math.round((rss1 - rssHalf) / (clients - half)),
      rssPerHeldPollBytes: Math.round((rss1 - rss0) / clients),
    };
  } finally {
    await Promise.all(gens.map((g) => g.ask({ cmd: 'stop' }).catch(() => undefined)));
    gens.forEach((g) => g.stop());
  }
}
