import { createSecureContext } from 'node:tls';
import type { Config } from '../config/schema.js';
import { readPem } from '../wire/pem.js';

export interface HttpsOptions {
  cert: string;
  key: string;
}

/**
 * The certificate and key of `http.tls`, read and checked before anything else starts: a
 * missing file or a key that does not match the certificate stops the start with the key's name,
 * instead of failing every handshake later.
 */
export function httpsOptions(tls: Config['http']['tls']): HttpsOptions | undefined {
  if (!tls) return undefined;
  const out = { cert: readPem(tls.cert, 'http.tls.cert'), key: readPem(tls.key, 'http.tls.key') };
  try {
    createSecureContext(out);
  } catch (e) {
    throw new Error(`http.tls: the certificate and key are not usable together (${(e as Error).message})`);
  }
  return out;
}
