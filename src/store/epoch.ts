import { randomBytes } from 'node:crypto';

/** A fresh history name: 8 base36 characters. */
export function newEpoch(): string {
  const n = randomBytes(6).readUIntBE(0, 6);
  return n.toString(36).padStart(10, '0').slice(-8);
}
