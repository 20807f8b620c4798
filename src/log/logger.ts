import { destination, pino, type Logger } from 'pino';
import type { Config } from '../config/schema.js';

/**
 * The server's logger on stderr: JSON lines for machines, or readable lines (pino-pretty) for a
 * person at a terminal. `auto` decides by whether stderr is a terminal, so that piping to a log
 * collector keeps JSON without any flag.
 */
export async function createLogger(cfg: Config['log'], stream: { fd: number; isTTY?: boolean } = { fd: 2, isTTY: process.stderr.isTTY }): Promise<Logger> {
  const pretty = cfg.format === 'pretty' || (cfg.format === 'auto' && stream.isTTY === true);
  if (!pretty) return pino({ level: cfg.level, base: undefined }, destination(stream.fd));
  try {
    const { default: prettyStream } = await import('pino-pretty');
    // synchronous, in this thread: a worker-thread transport would lose the last lines on exit
    return pino({ level: cfg.level, base: undefined }, prettyStream({ destination: stream.fd, sync: true, colorize: stream.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  } catch (e) {
    const log = pino({ level: cfg.level, base: undefined }, destination(stream.fd));
    log.warn({ err: e }, 'pino-pretty is not installed; logging JSON lines');
    return log;
  }
}
