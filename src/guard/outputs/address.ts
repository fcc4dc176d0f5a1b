/**
 * Where a tenant's output may send: not into the host or its private networks.
 * A tenant names its webhook's URL and its syslog host; left unchecked, the
 * daemon would make requests for it to the API on loopback, to other tenants'
 * instance addresses or to a metadata service (server-side request forgery).
 * The check runs on the address a name resolves to at connection time (the
 * lookup the socket itself uses), so a name that resolves elsewhere later (DNS
 * rebinding) is caught too. Provider outputs may send anywhere.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

// Two lists: a BlockList checks an IPv4 address against IPv6 rules too (as ::ffff:a.b.c.d), so one list with ::ffff:0:0/96 would refuse all of IPv4.
const PRIVATE4 = new BlockList();
const PRIVATE6 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) PRIVATE4.addSubnet(net, bits, 'ipv4');
// IPv4 inside IPv6 (mapped, NAT64, 6to4) could carry any private IPv4 address: none of them is a tenant's to use.
for (const [net, bits] of [['::', 128], ['::1', 128], ['::ffff:0:0', 96], ['64:ff9b::', 96], ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) {
  PRIVATE6.addSubnet(net, bits, 'ipv6');
}

/** True for loopback, private, link-local, shared, multicast and reserved addresses, and for IPv4 carried in IPv6. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return family === 4 ? PRIVATE4.check(address, 'ipv4') : PRIVATE6.check(address, 'ipv6');
}

/** Whether a host as written (a name or an address literal, IPv6 in brackets or not) is plainly private. */
export function isPrivateHost(host: string): boolean {
  const h = canonicalHost(host);
  if (h === null || h === 'localhost' || h.endsWith('.localhost')) return true;
  return isIP(h) !== 0 && isPrivateAddress(h);
}

/**
 * The host as a URL parser (and so the resolver) reads it: `127.1`,
 * `2130706433` and `0x7f.0.0.1` are all 127.0.0.1. Null for what is no host.
 */
function canonicalHost(host: string): string | null {
  const bare = host.replace(/^\[|\]$/g, '');
  try {
    return new URL(`http://${isIP(bare) === 6 ? `[${bare}]` : bare}/`).hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  } catch {
    return null;
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for sockets and http requests that refuses private addresses (all
 * of them, when a name has several). `options` is the family alone when dgram
 * calls it (`lookup(host, 4, cb)`), an object when net and http do.
 */
export function publicLookup(hostname: string, optionsOrFamily: LookupOptions | number, callback: LookupCallback): void {
  const options: LookupOptions = typeof optionsOrFamily === 'number' ? { family: optionsOrFamily } : optionsOrFamily;
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '');
    const refused = addresses.find((a) => isPrivateAddress(a.address));
    if (refused) {
      const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to ${refused.address}, a private address a tenant's output may not reach`);
      e.code = 'STRATA_PRIVATE_ADDRESS';
      return callback(e, '');
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0]!;
    callback(null, first.address, first.family);
  });
}
