import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { clientAddress } from '../core/connections.js';
import { parseRange } from '../config/address-range.js';

/**
 * The address of the client behind an HTTP request. Behind a reverse proxy every socket comes from
 * the proxy, so per-address quotas and the pre-auth pool would count all clients as one: when the
 * socket's peer is one of `http.trustedProxies`, the client is read from `X-Forwarded-For`, walking
 * from the right (the hop nearest to us) past every trusted address. The header is never read from
 * a peer that is not trusted, so a client cannot choose the address it is counted under.
 */
export class ClientAddresses {
  private readonly trusted: BlockList | null;

  /** `proxies`: addresses (`10.0.0.5`, `::1`) or CIDR ranges (`10.0.0.0/8`, `fd00::/8`). */
  constructor(proxies: readonly string[]) {
    if (proxies.length === 0) {
      this.trusted = null;
      return;
    }
    const list = new BlockList();
    for (const p of proxies) {
      const { address, prefix, family } = parseRange(p);
      if (prefix === undefined) list.addAddress(address, family);
      else list.addSubnet(address, prefix, family);
    }
    this.trusted = list;
  }

  /** The client's address for quotas, the pre-auth pool, hooks and logs. */
  of(req: IncomingMessage): string {
    const peer = clientAddress(req.socket.remoteAddress);
    if (!this.trusted || !this.isTrusted(peer)) return peer;
    const header = req.headers['x-forwarded-for'];
    if (header === undefined) return peer;
    const hops = (Array.isArray(header) ? header.join(',') : header).split(',');
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = clientAddress(stripPort(hops[i].trim()));
      // a malformed hop ends the walk: what lies to its left was written by someone we cannot vouch for
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.isTrusted(hop)) break;
    }
    return client;
  }

  /**
   * What the pre-auth pool counts a fresh socket under, before any head is read: its address, but
   * a trusted proxy's sockets each under their own key, since each may carry another client.
   */
  poolKey(socket: { remoteAddress?: string; remotePort?: number }): string {
    const peer = clientAddress(socket.remoteAddress);
    return this.trusted && this.isTrusted(peer) ? `${peer}#${socket.remotePort ?? 0}` : peer;
  }

  private isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted!.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** `1.2.3.4:5678` and `[::1]:5678` (some proxies add the port) → the address alone. */
function stripPort(hop: string): string {
  if (hop.startsWith('[')) {
    const end = hop.indexOf(']');
    return end > 0 ? hop.slice(1, end) : hop;
  }
  const colon = hop.indexOf(':');
  return colon > 0 && hop.indexOf(':', colon + 1) === -1 ? hop.slice(0, colon) : hop;
}
