import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

type FreeParser = (parser: unknown, req: unknown, socket: unknown) => void;

// node's own helper for upgraded connections; if a future node drops it we only keep more memory
const freeParser: FreeParser | undefined = (() => {
  try {
    return (createRequire(import.meta.url)('_http_common') as { freeParser?: FreeParser }).freeParser;
  } catch {
    return undefined;
  }
})();

/** Listeners node's HTTP server puts on a connection's socket (named in node's _http_server). */
const NODE_HTTP_LISTENERS = /^(bound )?(socketOn(Data|End|Drain|Timeout|Error|Close)|onSocket(Resume|Pause))$/;

/** What node's HTTP server keeps on a connection's socket (not in its typings). */
export type HttpSocket = Socket & { parser?: { incoming?: unknown } | null; _httpMessage?: unknown; _handle?: { _consumed?: boolean } | null };

/**
 * Detaches the response, drops node's listeners and returns the request parser to its pool, as node
 * itself does for an upgraded connection. False (and nothing done) when this node has no such helper.
 */
export function leaveHttp(req: IncomingMessage, res: ServerResponse, socket: Socket): boolean {
  const parser = (socket as HttpSocket).parser;
  if (!freeParser || !parser) return false;
  res.detachSocket(socket);
  for (const event of ['data', 'end', 'drain', 'timeout', 'error', 'close', 'resume', 'pause'] as const) {
    for (const l of socket.listeners(event) as Array<(...a: unknown[]) => void>) {
      if (NODE_HTTP_LISTENERS.test(l.name)) socket.removeListener(event, l);
    }
  }
  freeParser(parser, req, socket);
  return true;
}

/**
 * Takes a socket out of node's HTTP machinery once a long-lived response (an event stream) has
 * written its own head: the stream then costs its socket and our own small objects, not an idle
 * HTTP exchange. Anything the client sends afterwards is ignored.
 */
export function takeOverSocket(req: IncomingMessage, res: ServerResponse, socket: Socket): void {
  if (!leaveHttp(req, res, socket)) {
    res.detachSocket(socket);
    return;
  }
  // keep reading so that the peer's close is noticed; whatever it sends is dropped. The HTTP
  // server's sockets allow half-open connections, and node's own 'end' listener is gone: without
  // this, a stream whose client left would stay open (and counted) until a write failed
  socket.on('data', ignore);
  socket.once('end', destroyOnEnd);
  socket.resume();
}

function ignore(): void {}

function destroyOnEnd(this: Socket): void {
  this.destroy();
}
