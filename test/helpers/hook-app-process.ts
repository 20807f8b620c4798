/**
 * A stand-in for the app's backend, run as its own process: it answers connect hooks from the
 * credentials it is shown, and reports on stdout `listening <port>`. What it was asked is listed at
 * GET /asked. Credentials (a token, a cookie `session`, or an MQTT password) decide the answer:
 *   allow-<sub>   allow as <sub>, may subscribe to and publish on `<sub>/#`
 *   deny-403      refused with status 403;  anything else unknown: refused with 401
 *   slow          answers after 5 s         garbage: answers text that is not JSON
 *   shapeless     answers JSON of the wrong shape;  badfilter: grants with a bad filter
 *   expired       allow, but with an expiry in the past
 * POST /subscribe and /publish answer subscribe and publish hooks (see there).
 */
import { createServer, type IncomingMessage } from 'node:http';

const asked: unknown[] = [];

function credentialOf(body: { token?: string; cookies?: Record<string, string>; mqtt?: { password?: string }; headers?: Record<string, string> }): string {
  const basic = /^Basic (.+)$/.exec(body.headers?.authorization ?? '');
  if (basic) return Buffer.from(basic[1], 'base64').toString('utf8').split(':')[1] ?? '';
  return body.token ?? body.cookies?.session ?? body.mqtt?.password ?? body.headers?.['x-app-session'] ?? '';
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
}

const server = createServer((req, res) => {
  const send = (status: number, body: unknown) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(text);
  };
  if (req.method === 'GET' && req.url === '/asked') return send(200, asked);
  if (req.method === 'POST' && req.url === '/subscribe') {
    // a filter naming `forbidden` is refused, one naming `garbage` gets an answer of the wrong shape
    readJson(req).then((body) => {
      asked.push({ hook: 'subscribe', ...body });
      const filter = String(body.filter);
      if (filter.includes('forbidden')) return send(200, { result: 'deny', reason: 'members only' });
      if (filter.includes('garbage')) return send(200, { result: 'perhaps' });
      return send(200, { result: 'allow' });
    }, () => send(400, { error: 'bad json' }));
    return;
  }
  if (req.method === 'POST' && req.url === '/publish') {
    // `<x>/deny` is refused, `<x>/upper` gets its payload in capitals and a property, others pass
    readJson(req).then((body) => {
      asked.push({ hook: 'publish', ...body });
      const topic = String(body.topic);
      if (topic.endsWith('/deny')) return send(200, { result: 'deny', reason: 'not on a Sunday' });
      if (topic.endsWith('/upper')) {
        const text = Buffer.from(String(body.payload), 'base64').toString('utf8');
        return send(200, { result: 'replace', payload: text.toUpperCase(), contentType: 'text/plain', properties: [['checked', 'yes']] });
      }
      return send(200, { result: 'allow' });
    }, () => send(400, { error: 'bad json' }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/connect') return send(404, { error: 'no such hook' });
  readJson(req).then(
    (body) => {
      asked.push(body);
      const cred = credentialOf(body);
      if (cred.startsWith('allow-')) {
        const sub = cred.slice('allow-'.length);
        return send(200, { result: 'allow', sub, grants: { subscribe: [`${sub}/#`], publish: [`${sub}/#`] }, ttl: 3600, info: { plan: 'gold' } });
      }
      if (cred === 'deny-403') return send(200, { result: 'deny', reason: 'account suspended', status: 403 });
      if (cred === 'slow') {
        const t = setTimeout(() => send(200, { result: 'allow', sub: 'slow', grants: {} }), 5000);
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (cred === 'garbage') return send(200, '<html>oops</html>');
      if (cred === 'shapeless') return send(200, { result: 'maybe', who: 'knows' });
      if (cred === 'badfilter') return send(200, { result: 'allow', sub: 'x', grants: { subscribe: ['a/#/b'] } });
      if (cred === 'expired') return send(200, { result: 'allow', sub: 'late', expiresAt: Math.floor(Date.now() / 1000) - 60 });
      return send(200, { result: 'deny', reason: 'unknown credentials' });
    },
    () => send(400, { error: 'bad json' }),
  );
});

server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`listening ${typeof a === 'object' && a ? a.port : 0}\n`);
});
// the test's process is the parent: when it goes, so does the app
process.on('disconnect', () => process.exit(0));
