import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { OmnipushError } from '../core/errors.js';

/** The console's files, built by scripts/build-console.js into dist/console/ and read once. */
const FILES = new Map<string, Buffer | null>();
const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

// the bundle's lazily loaded chunks (scripts/build-console.js names them); no slash, no dot-dot
const CHUNK = /^[a-z][a-z-]*-[A-Z0-9]{8}\.js$/;

function typeOf(name: string): string | undefined {
  return TYPES[name] ?? (CHUNK.test(name) ? TYPES['console.js'] : undefined);
}

function file(name: string): Buffer | null {
  const cached = FILES.get(name);
  if (cached !== undefined) return cached;
  try {
    const body = readFileSync(new URL(`../../console/${name}`, import.meta.url));
    FILES.set(name, body);
    return body;
  } catch {
    // a miss is not remembered: chunk names come from the request, and the map must stay bounded
    return null;
  }
}

export const CONSOLE_PATH = '/admin';

// the console only talks to its own origin; no framing (clickjacking on the disconnect button)
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** `GET /admin`, `/admin/` and `/admin/<file>`: the single-page console. */
export function serveConsole(path: string, res: ServerResponse): void {
  if (path === CONSOLE_PATH) {
    res.writeHead(301, { Location: `${CONSOLE_PATH}/`, 'Content-Length': 0 });
    res.end();
    return;
  }
  const name = path === `${CONSOLE_PATH}/` ? 'index.html' : path.slice(CONSOLE_PATH.length + 1);
  const type = typeOf(name);
  const body = type ? file(name) : null;
  if (!body) throw new OmnipushError('not_found', `no console file ${JSON.stringify(name)}${name === 'index.html' ? ' (run npm run build)' : ''}`);
  res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': type!, 'Content-Length': body.length, 'Cache-Control': 'no-cache' });
  res.end(body);
}
