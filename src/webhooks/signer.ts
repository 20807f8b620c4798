import { createHmac } from 'node:crypto';

/** Signing keys from `whsec_<base64>` secrets, in the order given (newest first during rotation). */
export function signingKeys(secrets: readonly string[]): Buffer[] {
  return secrets.map((s) => Buffer.from(s.startsWith('whsec_') ? s.slice(6) : s, 'base64'));
}

/**
 * The Standard Webhooks headers for one request: `webhook-signature` holds `v1,<base64 HMAC-SHA256
 * of "id.timestamp.body">` per key, space-separated, so a receiver holding either the old or the
 * new secret accepts the request while a secret is rotated.
 */
export function signatureHeaders(keys: readonly Buffer[], id: string, timestampSec: number, body: Buffer): Record<string, string> {
  const prefix = Buffer.from(`${id}.${timestampSec}.`);
  const sigs: string[] = [];
  for (const k of keys) sigs.push(`v1,${createHmac('sha256', k).update(prefix).update(body).digest('base64')}`);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestampSec), 'webhook-signature': sigs.join(' ') };
}
