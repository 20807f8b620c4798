/** Which door listens where, and what moves it: for a message an operator can act on. */
export interface ListenerInfo {
  door: string;
  port: number;
  /** The flag and/or key that moves it, e.g. `--mqtt-port or mqtt.port`. */
  moveWith: string;
  /** Another way out, e.g. turning the door off. */
  alternative?: string;
}

/**
 * Turns a listen error into one an operator can act on: a taken port names the door, the port and
 * the flag or key that moves it (a bare `EADDRINUSE 127.0.0.1:1883` names none of them).
 */
export function listenError(e: unknown, where: ListenerInfo): Error {
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  const port = err.port ?? where.port;
  const at = err.address ? ` on ${err.address}` : '';
  const or = where.alternative ? `, or ${where.alternative}` : '';
  if (err.code === 'EADDRINUSE') return new Error(`${where.door} port ${port} is in use${at}; move it with ${where.moveWith} (0 picks a free port)${or}`);
  if (err.code === 'EACCES') return new Error(`${where.door} port ${port}${at} needs privileges this process lacks; use a port above 1023 with ${where.moveWith}`);
  if (err.code === 'EADDRNOTAVAIL') return new Error(`${where.door} cannot listen${at}: no such local address; change the host`);
  return e instanceof Error ? e : new Error(String(e));
}
