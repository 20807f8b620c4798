import { isIP } from 'node:net';

/** Checks one `http.trustedProxies` entry; throws a message naming it when it is not an address or a CIDR range. */
export function parseRange(entry: string): { address: string; prefix?: number; family: 'ipv4' | 'ipv6' } {
  const [address, bits, extra] = entry.split('/');
  const v = isIP(address);
  if (v === 0 || extra !== undefined) throw new Error(`not an IP address or CIDR range: ${JSON.stringify(entry)}`);
  const family = v === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) return { address, family };
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (v === 6 ? 128 : 32)) throw new Error(`bad prefix length in ${JSON.stringify(entry)}`);
  return { address, prefix, family };
}
