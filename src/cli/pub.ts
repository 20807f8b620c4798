/** `omnipush pub`: one message from an argument, stdin or a file, or one per line of stdin. */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fail } from './fail.js';
import { readAll } from './prompt.js';

export interface PubOptions {
  url?: string;
  token?: string;
  retain?: boolean;
  event?: string;
  ttl?: number;
  file?: string;
  lines?: boolean;
}

function errorMessage(text: string): string {
  try {
    return (JSON.parse(text) as { error: { code: string; message: string } }).error.message;
  } catch {
    return text;
  }
}

/** Publishes one payload through `POST /v1/topics/<topic>` (raw body, so binary files go as they are). */
async function publishOnce(topic: string, payload: Buffer, o: PubOptions & { url: string }): Promise<void> {
  const url = new URL(`/v1/topics/${topic.split('/').map(encodeURIComponent).join('/')}`, o.url);
  if (o.retain) url.searchParams.set('retain', 'true');
  if (o.event) url.searchParams.set('event', o.event);
  if (o.ttl !== undefined) url.searchParams.set('ttl', String(o.ttl));
  let r: Response;
  try {
    r = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
      body: payload,
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    fail(`cannot reach ${o.url}: ${cause ?? (e as Error).message}`);
  }
  const text = await r.text();
  if (!r.ok) fail(`${r.status}: ${errorMessage(text)}`);
  process.stdout.write(`${text}\n`);
}

export async function publishCommand(topic: string, data: string | undefined, o: PubOptions & { url: string }): Promise<void> {
  const sources = [data !== undefined, o.file !== undefined, o.lines === true].filter(Boolean).length;
  if (sources !== 1) fail('give the payload once: as an argument, - for stdin, -f <file>, or -l for one message per line');
  if (o.lines) {
    // one at a time, in order: each line is acknowledged before the next is sent
    for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) await publishOnce(topic, Buffer.from(line), o);
    return;
  }
  let payload: Buffer;
  if (o.file !== undefined) {
    try {
      payload = readFileSync(o.file);
    } catch (e) {
      fail(`cannot read ${o.file}: ${(e as Error).message}`);
    }
  } else if (data === '-') payload = Buffer.from(await readAll());
  else payload = Buffer.from(data!);
  await publishOnce(topic, payload, o);
}
