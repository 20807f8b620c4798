import { readFileSync } from 'node:fs';

/**
 * A PEM value from the config: the PEM text itself, or a path to a file holding it. A path that
 * cannot be read is an error naming the config key, so a typo stops the start, not the first handshake.
 */
export function readPem(value: string, key: string): string {
  if (value.includes('-----BEGIN')) return value;
  let text: string;
  try {
    text = readFileSync(value, 'utf8');
  } catch (e) {
    throw new Error(`${key}: ${value} is neither PEM nor a readable file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!text.includes('-----BEGIN')) throw new Error(`${key}: ${value} holds no PEM block`);
  return text;
}
