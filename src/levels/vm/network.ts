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

  constructor(o: VmNetworkOptions) {
    this.#tag = o.tag;
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

  /** Firewall, tenant bridge, and a fresh tap owned by `user` on it, up. */
  async plug(a: VmAddress, user: VmUser): Promise<void> {
    await this.#network.ensureFirewall();
    const bridge = await this.#network.ensureBridge(a.tenantIndex, `${a.gateway}/${a.prefixLength}`);
    await pinBridgeMac(bridge);
    await this.unplug(a.tap);
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
  async unplug(tap: string): Promise<void> {
    if (existsSync(`/sys/class/net/${tap}`)) await runQuietly('ip', ['link', 'del', tap]);
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

  /** Removes every bridge and the table of this tag: for a driver that holds no instance any more. */
  async removeAll(): Promise<void> {
    for (const tap of await this.taps()) await this.unplug(tap);
    for (const index of await this.#network.bridges()) await this.#network.removeBridge(index);
    await this.#network.removeFirewall();
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
