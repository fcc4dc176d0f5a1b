/**
 * The network of the `vm` and `emu` levels: the `os` level's design and code
 * (`../os/network.ts`, `../os/allocations.ts`) with a tap instead of a veth.
 * Each tenant has one bridge holding its gateway address (.1 of its /24), each
 * VM one tap on that bridge and one address from the tenant's /24, and one
 * nftables table keeps tenants apart: from a tenant bridge only replies to the
 * host's own connections (the gateway proxying in) and new connections to the
 * gateway's ports reach the host; nothing is forwarded between bridges or off
 * the machine. The guest gets no default route.
 *
 * The tap is created by root but owned by the VM user (`ip tuntap add … user`),
 * so the unprivileged, sandboxed QEMU can attach to it by name and nothing else.
 * Each driver has its own tag, subnet and table (vm: `sv`, 10.89/16; emu: `se`,
 * 10.90/16), so levels never share a bridge or an address plan.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, readFile, stat } from 'node:fs/promises';
import { Allocations } from '../os/allocations.js';
import { run, runQuietly } from '../os/exec.js';
import { Network, disableIpv6 } from '../os/network.js';
import type { VmUser } from './launch.js';

export interface VmNetworkOptions {
  /** Two letters that start the bridge, tap and table names. */
  tag: string;
  /** IPv4 /16, one /24 per tenant. */
  subnet: string;
  /** Host TCP ports a guest may reach on its gateway address: the gateway's listeners. */
  hostPorts: readonly number[];
  /** Where the address plan is kept (`allocations.json`). */
  stateDir: string;
}

/** Where one VM sits on the network. */
export interface VmAddress {
  tenantIndex: number;
  address: string;
  gateway: string;
  prefixLength: 24;
  tap: string;
}

/**
 * QEMU opens /dev/net/tun itself (as the VM user) to attach to its tap by name.
 * Debian's udev makes the device 0666; where it is root's alone (0600, as on
 * these machines) the VM user's group gets it (0660): still no one else.
 * Returns why QEMU cannot open it, or null.
 */
export async function grantTunAccess(user: VmUser, device = '/dev/net/tun'): Promise<string | null> {
  const st = await stat(device).catch(() => null);
  if (!st) return `${device} is missing (no tun/tap support)`;
  if ((st.mode & 0o006) === 0o006 || (st.gid === user.gid && (st.mode & 0o060) === 0o060)) return null;
  if (st.gid !== 0) return `${device} belongs to group ${st.gid}: give the VM user (${user.name}) read-write access`;
  await chown(device, 0, user.gid);
  await chmod(device, (st.mode & 0o7707) | 0o060);
  return null;
}

export class VmNetwork {
  readonly #network: Network;
  readonly #allocations: Allocations;
  readonly #tag: string;
  readonly #hostPorts: readonly number[];

  constructor(o: VmNetworkOptions) {
    this.#tag = o.tag;
    this.#hostPorts = o.hostPorts;
    this.#network = new Network({ tag: o.tag, hostPorts: o.hostPorts, table: `${o.tag}_vm` });
    // The uid plan of Allocations is the os level's user namespaces: unused here, any valid base does.
    this.#allocations = new Allocations({ stateDir: o.stateDir, subnet: o.subnet, idBase: 65_536 });
  }

  get table(): string { return this.#network.table; }

  /** tag + 't' + 12 hex characters of the id's sha256 (IFNAMSIZ is 16). */
  tapName(instanceId: string): string {
    return `${this.#tag}t${createHash('sha256').update(instanceId).digest('hex').slice(0, 12)}`;
  }

  bridgeName(tenantIndex: number): string {
    return this.#network.bridgeName(tenantIndex);
  }

  /** The instance's place in its tenant's /24: the one it had, else the lowest free address. */
  async allocate(instanceId: string, tenantId: string): Promise<VmAddress> {
    const tenant = await this.#allocations.tenant(tenantId);
    const address = await this.#allocations.address(instanceId, tenantId);
    return { tenantIndex: tenant.index, address, gateway: tenant.gateway, prefixLength: 24, tap: this.tapName(instanceId) };
  }

  /** Gives the address back; the tenant's bridge goes with its last instance. */
  async release(instanceId: string, tenantId: string): Promise<void> {
    await this.#allocations.releaseAddress(instanceId);
    if ((await this.#allocations.instancesOf(tenantId)).length > 0) return;
    const tenant = await this.#allocations.existingTenant(tenantId);
    if (tenant) await this.#network.removeBridge(tenant.index);
  }

  /** Firewall, tenant bridge, and a fresh tap owned by `user` on it, up, passing frames from `mac` only. */
  async plug(a: VmAddress, mac: string, user: VmUser): Promise<void> {
    await this.#network.ensureFirewall();
    await this.#ensureProbeCounters();
    const bridge = await this.#network.ensureBridge(a.tenantIndex, `${a.gateway}/${a.prefixLength}`);
    await pinBridgeMac(bridge);
    await this.unplug(a.tap);
    await this.allowMacs([{ tap: a.tap, mac }]);
    await run('ip', ['tuntap', 'add', 'dev', a.tap, 'mode', 'tap', 'user', String(user.uid), 'group', String(user.gid)]);
    await disableIpv6(a.tap);
    // A neighbour entry left by an earlier holder of this address would send the host's packets to a dead MAC for seconds.
    await run('ip', ['-batch', '-'], { input: `link set ${a.tap} master ${bridge}\nlink set ${a.tap} up\nneigh flush to ${a.address} dev ${bridge}\n` });
  }

  /** Whether the tap exists (on its bridge since `plug`). */
  isPlugged(tap: string): boolean {
    return existsSync(`/sys/class/net/${tap}`);
  }

  /** Removes the tap; missing is fine. */
  async unplug(tap: string, mac?: string): Promise<void> {
    if (existsSync(`/sys/class/net/${tap}`)) await runQuietly('ip', ['link', 'del', tap]);
    if (mac !== undefined) await runQuietly('nft', ['delete', 'element', 'bridge', this.#macTable, 'macs', `{ "${tap}" . ${mac} }`]);
  }

  /**
   * Lets frames from each tap through only with its VM's own source MAC (the
   * bridge-level table `<table>_l2`, created on first use): a guest that takes
   * another MAC is cut off, so the MAC a frame carries names the VM that sent
   * it — what the guard's refused-flow counters are keyed by. Idempotent; a
   * daemon re-lists the taps it finds still plugged at start.
   */
  async allowMacs(entries: ReadonlyArray<{ tap: string; mac: string }>): Promise<void> {
    if (!(await runQuietly('nft', ['list', 'table', 'bridge', this.#macTable]))) {
      await run('nft', ['-f', '-'], { input: macFilterRules(this.#macTable, `${this.#tag}t*`) });
    }
    if (entries.length === 0) return;
    await run('nft', ['add', 'element', 'bridge', this.#macTable, 'macs', `{ ${entries.map((e) => `"${e.tap}" . ${e.mac}`).join(', ')} }`]);
  }

  get #macTable(): string {
    return `${this.table}_l2`;
  }

  /** Taps of this tag on the machine, whatever instance they belonged to (orphan cleanup). */
  async taps(): Promise<string[]> {
    const { stdout } = await run('ip', ['-o', 'link', 'show']);
    const pattern = new RegExp(`^\\d+: (${this.#tag}t[0-9a-f]{12})[:@]`);
    return stdout.split('\n').flatMap((line) => {
      const m = pattern.exec(line);
      return m ? [m[1]!] : [];
    });
  }

  /** The guard's view of what the firewall refuses (`probeCounterRules`), added to the table once; counters keyed by source address alone (an earlier daemon's) are replaced. */
  async #ensureProbeCounters(): Promise<void> {
    const current = await run('nft', ['list', 'set', 'inet', this.table, PROBE_SETS.routed]).catch(() => null);
    if (current?.stdout.includes('ether_addr')) return;
    if (current) {
      await run('nft', ['-f', '-'], {
        input: ['probes_in', 'probes_routed'].map((c) => `delete chain inet ${this.table} ${c}\n`).join('') +
          Object.values(PROBE_SETS).map((set) => `delete set inet ${this.table} ${set}\n`).join(''),
      });
    }
    await run('nft', ['-f', '-'], { input: probeCounterRules(this.table, `${this.#tag}b*`, this.#hostPorts) });
  }

  /** Removes every bridge and the table of this tag: for a driver that holds no instance any more. */
  async removeAll(): Promise<void> {
    for (const tap of await this.taps()) await this.unplug(tap);
    for (const index of await this.#network.bridges()) await this.#network.removeBridge(index);
    await this.#network.removeFirewall();
    await runQuietly('nft', ['delete', 'table', 'bridge', this.#macTable]);
  }
}

/**
 * A bridge without an address of its own takes its lowest port's MAC, which
 * changes as taps come and go. A guest resumed from a snapshot still has the
 * old gateway MAC in its ARP cache and would answer into the void for seconds;
 * so the bridge gets a fixed, locally administered MAC derived from its name.
 */
async function pinBridgeMac(bridge: string): Promise<void> {
  const assigned = (await readFile(`/sys/class/net/${bridge}/addr_assign_type`, 'utf8').catch(() => '')).trim();
  if (assigned === '3') return; // NET_ADDR_SET: set explicitly already
  const h = createHash('sha256').update(bridge).digest();
  const mac = ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
  await run('ip', ['link', 'set', bridge, 'address', mac]);
}

/** A locally administered MAC in QEMU's 52:54:00 range, stable per instance. */
export function macFor(id: string): string {
  let h = 2166136261;
  for (const c of id) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  const b = [(h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff].map((x) => x.toString(16).padStart(2, '0'));
  return `52:54:00:${b.join(':')}`;
}

/** Frames entering the bridge from a tap (`taps`: a name pattern) pass only with the source MAC listed for that tap. */
export function macFilterRules(table: string, taps: string): string {
  return `table bridge ${table} {
  set macs { type ifname . ether_addr; }
  chain from_vms {
    type filter hook prerouting priority -200; policy accept;
    iifname "${taps}" iifname . ether saddr != @macs drop
  }
}
`;
}

/** The sets that count the new connections a tenant bridge's firewall refuses: to the host itself, and routed (other tenants, outside). */
export const PROBE_SETS = { host: 'strata_probes_host', routed: 'strata_probes_routed' } as const;

/**
 * Counters for the guard (its network interceptor for VMs), never a verdict:
 * two chains that accept everything and, for each new TCP connection (a bare
 * SYN) or UDP flow from a tenant bridge that goes nowhere, bump a per-flow
 * counter keyed by the sender's MAC (which the bridge-level filter ties to
 * one VM's tap: `macFilterRules`), source, destination, protocol and port —
 * never by the source address alone, which the next VM may be given. One for
 * the host itself other than the gateway's ports (input, just before the
 * firewall's chain: priority -11 < -10, so only what it will drop), one for
 * unicast addresses elsewhere (prerouting: the host does not forward, so a
 * packet for another tenant or the outside dies in routing, before any forward
 * hook). Frames between one tenant's VMs are switched by the bridge and never
 * get here. The guest cannot see them. ICMP is not counted. Elements expire
 * 10 min after their last packet, so the sets stay small.
 */
export function probeCounterRules(table: string, bridges: string, hostPorts: readonly number[]): string {
  // The MAC leads: nftables 1.0 (Debian 12) misprints a key with an ether_addr after any other field.
  const set = (name: string) => `  set ${name} { type ether_addr . ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; timeout 10m; size 65536; counter; }`;
  const count = (name: string) => [
    `    iifname "${bridges}" meta l4proto udp ct state new update @${name} { ether saddr . ip saddr . ip daddr . meta l4proto . udp dport }`,
    `    iifname "${bridges}" tcp flags & (syn | ack) == syn ct state new update @${name} { ether saddr . ip saddr . ip daddr . meta l4proto . tcp dport }`,
  ].join('\n');
  const allowed = hostPorts.length > 0 ? `    iifname "${bridges}" tcp dport { ${hostPorts.join(', ')} } return\n` : '';
  return `table inet ${table} {
${set(PROBE_SETS.host)}
${set(PROBE_SETS.routed)}
  chain probes_in {
    type filter hook input priority -11; policy accept;
    iifname "${bridges}" ct state established,related return
${allowed}${count(PROBE_SETS.host)}
  }
  chain probes_routed {
    type filter hook prerouting priority -150; policy accept;
    iifname "${bridges}" fib daddr type != unicast return
${count(PROBE_SETS.routed)}
  }
}
`;
}

/** One refused flow as counted so far: `kind` host (to the host itself) or routed (off the bridge). */
export interface ProbeCount {
  table: string;
  kind: keyof typeof PROBE_SETS;
  /** The sending VM's MAC (lower case). */
  mac: string;
  source: string;
  destination: string;
  protocol: string;
  port: number;
  packets: number;
}

interface NftSetJson { set?: { name: string; table: string; elem?: { elem?: { val?: { concat?: unknown[] }; counter?: { packets: number } } }[] } }

/** Every refused-flow counter of every vm/emu table on the machine, in one `nft` call. */
export async function readProbeCounts(): Promise<ProbeCount[]> {
  const { stdout } = await run('nft', ['-j', 'list', 'sets', 'inet']);
  const kinds = new Map(Object.entries(PROBE_SETS).map(([k, v]) => [v, k as keyof typeof PROBE_SETS]));
  const out: ProbeCount[] = [];
  for (const item of (JSON.parse(stdout) as { nftables: NftSetJson[] }).nftables) {
    const kind = item.set ? kinds.get(item.set.name as typeof PROBE_SETS.host) : undefined;
    if (!item.set || !kind) continue;
    for (const e of item.set.elem ?? []) {
      const key = e.elem?.val?.concat;
      if (!key || key.length !== 5) continue;
      out.push({
        table: item.set.table, kind, mac: String(key[0]).toLowerCase(), source: String(key[1]), destination: String(key[2]),
        protocol: String(key[3]), port: Number(key[4]), packets: e.elem?.counter?.packets ?? 0,
      });
    }
  }
  return out;
}
