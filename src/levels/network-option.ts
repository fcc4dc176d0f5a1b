/**
 * A VM network plan as an operator names it: `TAG:SUBNET`, e.g. `sv:10.89.0.0/16`.
 * The vm and emu drivers of one daemon default to `sv:10.89.0.0/16` and
 * `se:10.90.0.0/16`; a second daemon on the same machine (the receiving side of
 * a move) must pick others, or the two would share bridges, taps, nftables
 * tables and addresses. Validated here, at the edge; the drivers take it typed.
 */
import { StrataError } from '../core/errors.js';

export interface NetworkPlan {
  /** Two characters that start bridge, tap and table names (IFNAMSIZ leaves no more). */
  tag: string;
  /** An IPv4 /16 (`A.B.0.0/16`): one /24 per tenant. */
  subnet: string;
}

const octet = (s: string): boolean => Number(s) <= 255;
const TAG = /^[a-z][a-z0-9]$/;
const SUBNET = /^(\d{1,3})\.(\d{1,3})\.0\.0\/16$/;

/** Parses `TAG:SUBNET`; a typed STRATA_ERR_CONFIG names what is wrong. */
export function parseNetworkPlan(value: string, flag = 'network'): NetworkPlan {
  const [tag, subnet, ...rest] = value.split(':');
  const bad = (why: string): never => {
    throw new StrataError('STRATA_ERR_CONFIG', `${flag} ${JSON.stringify(value)}: ${why} (expected TAG:A.B.0.0/16, e.g. sw:10.91.0.0/16)`, { flag, value });
  };
  if (tag === undefined || subnet === undefined || rest.length) return bad('not TAG:SUBNET');
  if (!TAG.test(tag)) return bad('the tag is two characters, a lowercase letter then a letter or digit');
  const m = SUBNET.exec(subnet);
  if (!m || !octet(m[1]!) || !octet(m[2]!)) return bad('the subnet is an IPv4 /16 written A.B.0.0/16');
  return { tag, subnet };
}

/** Refuses plans that would collide inside one daemon (vm and emu must differ in tag and subnet). */
export function checkDistinctPlans(plans: Array<[string, NetworkPlan]>): void {
  for (let i = 0; i < plans.length; i++) {
    for (let j = i + 1; j < plans.length; j++) {
      const [a, pa] = plans[i]!;
      const [b, pb] = plans[j]!;
      if (pa.tag === pb.tag || pa.subnet === pb.subnet) {
        throw new StrataError('STRATA_ERR_CONFIG', `${a} and ${b} must differ in tag and subnet`, { [a]: pa, [b]: pb });
      }
    }
  }
}
