import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OmnipushError } from '../core/errors.js';

/** The browser bundles, read once (built by scripts/build-client.js into dist/client/). */
const BUNDLES = new Map<string, Buffer | null>();

function bundle(name: string): Buffer | null {
  if (!BUNDLES.has(name)) {
    try {
      BUNDLES.set(name, readFileSync(new URL(`../../client/${name}`, import.meta.url)));
    } catch {
      BUNDLES.set(name, null);
    }
  }
  return BUNDLES.get(name)!;
}

export const CLIENT_PREFIX = '/v1/client/';
const SERVED = new Set(['omnipush.js', 'omnipush.iife.js', 'omnipush.js.map', 'omnipush.iife.js.map']);

/** `GET /v1/client/omnipush.js` (ESM) and `/v1/client/omnipush.iife.js` (global `Omnipush`). */
export function serveClientBundle(path: string, res: ServerResponse, headers: Record<string, string>): void {
  const name = path.slice(CLIENT_PREFIX.length);
  const body = SERVED.has(name) ? bundle(name) : null;
  if (!body) throw new OmnipushError('not_found', `no client file ${JSON.stringify(name)}`);
  res.writeHead(200, {
    ...headers,
    'Content-Type': name.endsWith('.map') ? 'application/json' : 'text/javascript; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'public, max-age=300',
  });
  res.end(body);
}

const DEMO = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Omnipush demo</title>
<style>body{font:15px system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}input,button{font:inherit}#log{white-space:pre-wrap;background:#f4f4f4;padding:.5rem;min-height:8rem}</style>
</head><body>
<h1>Omnipush demo</h1>
<p>State: <b id="state">connecting</b> over <b id="transport">?</b></p>
<form id="sub"><input id="filter" value="demo/#" aria-label="topic filter"> <button>Subscribe</button></form>
<form id="pub"><input id="topic" value="demo/hello" aria-label="topic"> <input id="data" value="hello" aria-label="message"> <button>Publish</button></form>
<div id="log" role="log"></div>
<script type="module">
import { connect } from '/v1/client/omnipush.js';
const params = new URLSearchParams(location.search);
const transports = params.get('transport') ? [params.get('transport')] : undefined;
const log = (t) => { document.getElementById('log').textContent += t + '\\n'; };
const client = await connect(location.origin, { transports });
window.omnipush = client;
const show = () => { document.getElementById('state').textContent = client.state; document.getElementById('transport').textContent = client.transport ?? '-'; };
client.on('state', show); show();
client.on('gap', (g) => log('gap on ' + g.filter));
document.getElementById('sub').onsubmit = (e) => { e.preventDefault(); const f = document.getElementById('filter').value; client.subscribe(f, (m) => log(m.topic + ': ' + (m.data ?? '[binary]'))); log('subscribed to ' + f); };
document.getElementById('pub').onsubmit = async (e) => { e.preventDefault(); const c = await client.publish(document.getElementById('topic').value, document.getElementById('data').value); log('published ' + c); };
</script></body></html>`;

/** `GET /demo/`: a page that subscribes and publishes through the SDK (when `demo.enabled`). */
export function serveDemo(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
  void req;
  res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(DEMO), 'Cache-Control': 'no-store' });
  res.end(DEMO);
}
