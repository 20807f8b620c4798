/**
 * A stand-in push service (RFC 8030) for tests: it checks requests the way real push services do
 * and decrypts every body with the browser-side keys it handed out, through code of its own (not
 * the server's), so a bug shared by encryptor and decryptor cannot hide.
 */
import { execFileSync } from 'node:child_process';
import { createDecipheriv, createECDH, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { importJWK, jwtVerify } from 'jose';
import { tempDir } from './server.js';

/** Decrypts an `aes128gcm` Web Push body (RFC 8291 + RFC 8188) as a browser would. */
export function decryptPushBody(body: Buffer, uaPrivate: Buffer, uaPublic: Buffer, authSecret: Buffer): Buffer {
  if (body.length < 21) throw new Error('body shorter than the aes128gcm header');
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const keyid = body.subarray(21, 21 + idlen);
  if (idlen !== 65 || keyid[0] !== 4) throw new Error(`keyid must be the sender's 65-byte P-256 key, got ${idlen} bytes`);
  if (rs < 18) throw new Error(`record size ${rs} too small`);
  const records = body.subarray(21 + idlen);
  if (records.length > rs) throw new Error('Web Push bodies hold one record');
  const ua = createECDH('prime256v1');
  ua.setPrivateKey(uaPrivate);
  const shared = ua.computeSecret(keyid);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, keyid]);
  const ikm = Buffer.from(hkdfSync('sha256', shared, authSecret, info, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const d = createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(records.subarray(records.length - 16));
  const plain = Buffer.concat([d.update(records.subarray(0, records.length - 16)), d.final()]);
  // strip padding: the last non-zero octet is the delimiter, 2 for the last record
  let i = plain.length - 1;
  while (i >= 0 && plain[i] === 0) i--;
  if (i < 0 || plain[i] !== 2) throw new Error('missing last-record delimiter');
  return plain.subarray(0, i);
}

export interface VapidClaims {
  aud: string;
  exp: number;
  sub: string;
}

/** Checks `Authorization: vapid t=…, k=…` as push services do; returns the claims or throws why not. */
export async function verifyVapid(header: string | undefined, audience: string, now = Date.now(), expectedKey?: string): Promise<VapidClaims> {
  const m = /^vapid t=([A-Za-z0-9_.-]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header ?? '');
  if (!m) throw new Error(`Authorization is not "vapid t=…, k=…": ${header}`);
  const k = Buffer.from(m[2], 'base64url');
  if (k.length !== 65 || k[0] !== 4) throw new Error('k is not an uncompressed P-256 key');
  if (expectedKey && m[2] !== expectedKey) throw new Error('k is not the key the subscription was created with');
  const key = await importJWK({ kty: 'EC', crv: 'P-256', x: k.subarray(1, 33).toString('base64url'), y: k.subarray(33).toString('base64url') }, 'ES256');
  const { payload, protectedHeader } = await jwtVerify(m[1], key, { algorithms: ['ES256'], currentDate: new Date(now) });
  if (protectedHeader.alg !== 'ES256') throw new Error('alg must be ES256');
  if (payload.aud !== audience) throw new Error(`aud ${JSON.stringify(payload.aud)} is not the endpoint origin ${audience}`);
  if (typeof payload.exp !== 'number' || payload.exp * 1000 > now + 24 * 3600_000) throw new Error('exp missing or more than 24 h ahead');
  if (typeof payload.sub !== 'string' || !payload.sub) throw new Error('sub missing');
  return payload as unknown as VapidClaims;
}

/** Browser-side keys of one push subscription. */
export interface FakeBrowser {
  name: string;
  subscription: { endpoint: string; expirationTime: null; keys: { p256dh: string; auth: string } };
  privateKey: Buffer;
  publicKey: Buffer;
  auth: Buffer;
}

export interface Received {
  name: string;
  /** Decrypted payload (parsed JSON), or null for a push without data. */
  payload: Record<string, unknown> | null;
  headers: IncomingMessage['headers'];
  /** The status the stand-in answered. */
  status: number;
}

/** The stand-in's answer to one request; `hang` never answers. */
export type Answer = { status: number; headers?: Record<string, string>; hang?: boolean };

export interface PushService {
  /** Origin, e.g. https://127.0.0.1:41234 */
  origin: string;
  tls: boolean;
  /** CA file the server must trust (TLS only). */
  caFile?: string;
  /** Accepted (and decrypted) requests, in arrival order, whatever the scripted answer. */
  received: Received[];
  /** Requests that broke a rule: these would fail at a real push service. Tests assert it stays empty. */
  violations: string[];
  /** Decides answers; default 201. Called for valid requests only. */
  answer: (r: Received, n: number) => Answer;
  /** Most requests that were open (received, not yet answered) at one time. */
  maxInFlight: number;
  /** Answers every hanging request with `status`. */
  release(status?: number): void;
  /** The VAPID key `k` must equal, once known. */
  expectedKey?: string;
  browser(name?: string): FakeBrowser;
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1 from the `openssl` CLI, or null when it is missing. */
function makeCert(): { key: string; cert: string; caFile: string } | null {
  const dir = tempDir('omnipush-push-tls-');
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir.path, 'key.pem'), '-out', join(dir.path, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(join(dir.path, 'key.pem'), 'utf8'), cert: readFileSync(join(dir.path, 'cert.pem'), 'utf8'), caFile: join(dir.path, 'cert.pem') };
  } catch {
    dir.remove();
    return null;
  }
}

const URGENCIES = ['very-low', 'low', 'normal', 'high'];

/** Starts the stand-in on 127.0.0.1, port 0; HTTPS with a fresh self-signed certificate when `openssl` exists (or `tls: false`). */
export async function startPushService(opts: { tls?: boolean } = {}): Promise<PushService> {
  const cert = opts.tls === false ? null : makeCert();
  if (!cert && opts.tls !== false) {
    if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error('openssl is needed for the HTTPS push-service stand-in, and OMNIPUSH_REQUIRE_ALL=1 requires it');
    console.error('\n*** openssl missing: the push-service stand-in runs over plain HTTP (webpush.allowHttpEndpoints) ***\n');
  }
  const browsers = new Map<string, FakeBrowser>();
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  let count = 0;
  let open = 0;
  const svc: PushService = {
    origin: '',
    tls: !!cert,
    caFile: cert?.caFile,
    received: [],
    violations: [],
    answer: () => ({ status: 201 }),
    maxInFlight: 0,
    release(status = 201) {
      for (const r of hung) if (!r.destroyed) r.writeHead(status).end();
      hung.clear();
    },
    browser(name = `b${browsers.size + 1}`) {
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      const auth = randomBytes(16);
      const b: FakeBrowser = {
        name,
        privateKey: ecdh.getPrivateKey(),
        publicKey: ecdh.getPublicKey(),
        auth,
        subscription: { endpoint: `${svc.origin}/push/${name}`, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } },
      };
      browsers.set(name, b);
      return b;
    },
    async close() {
      for (const r of hung) r.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> => {
    const reject = (status: number, why: string) => {
      svc.violations.push(`${req.method} ${req.url}: ${why}`);
      res.writeHead(status, { 'content-type': 'text/plain' }).end(why);
    };
    const m = /^\/push\/([\w-]+)$/.exec(req.url ?? '');
    const b = m && browsers.get(m[1]);
    if (req.method !== 'POST') return reject(405, 'push requests are POST');
    if (!b) return reject(404, 'no such subscription');
    const ttl = req.headers.ttl;
    if (typeof ttl !== 'string' || !/^\d+$/.test(ttl)) return reject(400, 'TTL header missing or not a non-negative integer');
    const urgency = req.headers.urgency;
    if (urgency !== undefined && !URGENCIES.includes(urgency as string)) return reject(400, `bad Urgency ${urgency}`);
    const topic = req.headers.topic;
    if (topic !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(topic as string)) return reject(400, `bad Topic ${topic}`);
    if (body.length > 4096) return reject(413, `body of ${body.length} bytes is over 4096`);
    try {
      await verifyVapid(req.headers.authorization, svc.origin, Date.now(), svc.expectedKey);
    } catch (e) {
      return reject(401, `VAPID: ${(e as Error).message}`);
    }
    let payload: Record<string, unknown> | null = null;
    if (body.length) {
      if (req.headers['content-encoding'] !== 'aes128gcm') return reject(400, 'Content-Encoding must be aes128gcm');
      try {
        payload = JSON.parse(decryptPushBody(body, b.privateKey, b.publicKey, b.auth).toString('utf8')) as Record<string, unknown>;
      } catch (e) {
        return reject(400, `cannot decrypt: ${(e as Error).message}`);
      }
    }
    const r: Received = { name: b.name, payload, headers: req.headers, status: 0 };
    const a = svc.answer(r, count++);
    r.status = a.hang ? -1 : a.status;
    svc.received.push(r);
    if (a.hang) {
      hung.add(res);
      return;
    }
    res.writeHead(a.status, { ...(a.status === 201 ? { location: `${svc.origin}/message/${count}` } : {}), ...(a.headers ?? {}) }).end();
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    open++;
    svc.maxInFlight = Math.max(svc.maxInFlight, open);
    res.once('close', () => open--);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle(req, res, Buffer.concat(chunks)));
  };
  const server: Server = cert ? createHttpsServer({ key: cert.key, cert: cert.cert }, onRequest) : createHttpServer(onRequest);
  server.on(cert ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  svc.origin = `${cert ? 'https' : 'http'}://127.0.0.1:${port}`;
  return svc;
}

/** Server config that sends to the stand-in (trusting its certificate, or allowing http:). */
export function webpushConfig(svc: PushService, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { subject: 'mailto:ops@example.com', endpointHosts: ['127.0.0.1'], ...(svc.caFile ? { caFiles: [svc.caFile] } : { allowHttpEndpoints: true }), ...extra };
}
