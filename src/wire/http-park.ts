import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { leaveHttp, type HttpSocket } from './http-takeover.js';

/** Set on a parked socket when the client sent anything while its request was held. */
const SENT_MORE = Symbol('omnipush.sentMore');
type ParkedSocket = HttpSocket & { [SENT_MORE]?: boolean; encrypted?: boolean };

/**
 * Parks a request that will be held a while (a long-poll): the connection leaves node's HTTP
 * machinery (its response, request, parser and their listeners, ~4 KB a request) and only its socket
 * waits, read so that the client's leaving is noticed. The answer is written by
 * {@link answerParked}, and the connection then goes back to the HTTP server for its next request.
 *
 * Only an exchange that can be handed back whole is parked: its request read to the end, the
 * connection's current one, no byte read after it (`readAtHead`: the socket's count when the head
 * was read), plain TCP (a TLS socket would be wrapped again when handed back). Anything the
 * client sends while parked (a pipelined request) is dropped and the connection closes after the
 * answer, as HTTP/1.1 lets a server do: the client sends it again on a new connection.
 * Returns the socket, or undefined when the exchange stays with node.
 */
export function parkExchange(req: IncomingMessage, res: ServerResponse, readAtHead: number, closed: (this: Socket) => void): Socket | undefined {
  const socket = req.socket as ParkedSocket;
  if (!req.complete || res.headersSent || socket.encrypted || socket.destroyed || socket._httpMessage !== res) return undefined;
  if (socket.parser?.incoming !== req || socket.bytesRead !== readAtHead) return undefined;
  if (!leaveHttp(req, res, socket)) return undefined;
  socket.on('data', sentMore);
  socket.on('end', destroyOnEnd);
  socket.on('error', ignore);
  socket.on('close', closed);
  socket.resume();
  return socket;
}

/**
 * Writes the answer of a parked exchange. With `keepAliveMs` (the request allowed it and the server
 * is not closing) and nothing sent meanwhile, returns true: the caller hands the connection back to
 * the HTTP server. Else the connection closes once the answer is out.
 */
export function answerParked(socket: Socket, status: number, headers: Record<string, string | number>, body: Buffer, keepAliveMs: number | null, closed: (this: Socket) => void): boolean {
  const s = socket as ParkedSocket;
  s.removeListener('data', sentMore);
  s.removeListener('end', destroyOnEnd);
  s.removeListener('close', closed);
  if (s.destroyed) return false;
  const again = keepAliveMs !== null && s[SENT_MORE] !== true;
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
  head += `Date: ${httpDate()}\r\n`;
  head += again ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n\r\n` : 'Connection: close\r\n\r\n';
  s.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
  if (!again) {
    s.end();
    return false;
  }
  s.removeListener('error', ignore);
  // the next parser reads the socket natively again, as the first one did
  if (s._handle) s._handle._consumed = false;
  return true;
}

let dateSecond = 0;
let dateText = '';

/** The `Date` header's value, made once a second as node makes its own. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

function sentMore(this: ParkedSocket): void {
  this[SENT_MORE] = true;
}

function ignore(): void {}

function destroyOnEnd(this: Socket): void {
  this.destroy();
}
