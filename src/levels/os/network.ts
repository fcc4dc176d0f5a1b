/**
 * The network of the `os` level: one bridge per tenant holding the tenant's
 * gateway address, one veth per instance from the bridge into the instance's own
 * network namespace, and one nftables table that keeps tenants apart.
 *
 * The firewall (`inet <tag>_os`), in words:
 *  - input from any tenant bridge: replies to connections the host opened (the
 *    gateway proxying to an instance) and new TCP connections to `hostPorts` (the
 *    gateway's listeners); everything else dropped. Nothing else on the host is
 *    reachable from an instance.
 *  - forward: only within one bridge (one tenant); anything from or to a tenant
 *    bridge that would be routed — to another tenant, to the host's uplink, out of
 *    the machine — is dropped. Instances get no default route either, and the
 *    driver never enables forwarding or NAT.
 * IPv6 is off on the bridges, the veths and inside instances.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { run, runQuietly } from './exec.js';
import { instanceSideCounters, type InterfaceCounters } from '../../core/net-counters.js';

export interface NetworkNames {
  tag: string;
  hostPorts: readonly number[];
  /** The nftables table; default `<tag>_os` (the vm level names its own, `<tag>_vm`). */
  table?: string;
}

export class Network {
  readonly table: string;

  constructor(private readonly names: NetworkNames) {
    this.table = names.table ?? `${names.tag}_os`;
  }

  bridgeName(tenantIndex: number): string {
    return `${this.names.tag}b${tenantIndex}`;
  }

  /** The host end of an instance's veth: tag + 'v' + 12 hex characters of the id's sha256 (IFNAMSIZ is 16). */
  hostVethName(instanceId: string): string {
    return `${this.names.tag}v${createHash('sha256').update(instanceId).digest('hex').slice(0, 12)}`;
  }

  /** Creates (or re-creates) the firewall table, with the bridges already present. Idempotent. */
  async ensureFirewall(): Promise<void> {
    if (await this.#tableExists()) return;
    const existing = (await this.bridges()).map((index) => this.bridgeName(index));
    const elements = existing.length > 0 ? `elements = { ${existing.map((b) => `"${b}" . "${b}"`).join(', ')} }` : '';
    const bridges = `"${this.names.tag}b*"`;
    const ports = this.names.hostPorts.length > 0 ? `tcp dport { ${this.names.hostPorts.join(', ')} } ct state new accept` : '';
    await run('nft', ['-f', '-'], {
      input: `table inet ${this.table} {
  set same_tenant { type ifname . ifname; ${elements} }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname ${bridges} ct state established,related accept
    iifname ${bridges} ${ports}
    iifname ${bridges} drop
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname . oifname @same_tenant accept
    iifname ${bridges} drop
    oifname ${bridges} drop
  }
}
`,
    });
  }

  async removeFirewall(): Promise<void> {
    if (await this.#tableExists()) await run('nft', ['delete', 'table', 'inet', this.table]);
  }

  /** The tenant's bridge with its gateway address, up, and allowed to talk to itself only. Idempotent. */
  async ensureBridge(tenantIndex: number, gatewayCidr: string): Promise<string> {
    const bridge = this.bridgeName(tenantIndex);
    if (existsSync(`/sys/class/net/${bridge}`)) return bridge;
    await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await disableIpv6(bridge);
    await run('ip', ['-batch', '-'], { input: `addr add ${gatewayCidr} dev ${bridge}\nlink set ${bridge} up\n` });
    await run('nft', ['add', 'element', 'inet', this.table, 'same_tenant', `{ "${bridge}" . "${bridge}" }`]);
    return bridge;
  }

  async removeBridge(tenantIndex: number): Promise<void> {
    const bridge = this.bridgeName(tenantIndex);
    if (existsSync(`/sys/class/net/${bridge}`)) await runQuietly('ip', ['link', 'del', bridge]);
    if (await this.#tableExists()) await runQuietly('nft', ['delete', 'element', 'inet', this.table, 'same_tenant', `{ "${bridge}" . "${bridge}" }`]);
  }

  /** Bridges of this driver's tag present on the machine, by tenant index. */
  async bridges(): Promise<number[]> {
    const { stdout } = await run('ip', ['-o', 'link', 'show', 'type', 'bridge']);
    const pattern = new RegExp(`^\\d+: ${this.names.tag}b(\\d+)[:@]`);
    return stdout.split('\n').flatMap((line) => {
      const m = pattern.exec(line);
      return m ? [Number(m[1])] : [];
    });
  }

  /**
   * Plugs the network namespace of process `pid` into the bridge: a veth pair
   * whose inner end becomes `eth0` with `address`, plus loopback. No default route.
   */
  async attach(pid: number, hostVeth: string, bridge: string, addressCidr: string): Promise<void> {
    if (existsSync(`/sys/class/net/${hostVeth}`)) await runQuietly('ip', ['link', 'del', hostVeth]);
    // A neighbour entry left by an earlier holder of this address would send the host's packets to a dead MAC for seconds.
    const address = addressCidr.split('/')[0]!;
    await run('ip', ['-batch', '-'], {
      input: `link add ${hostVeth} type veth peer name eth0 netns ${pid}\nlink set ${hostVeth} master ${bridge}\nlink set ${hostVeth} up\nneigh flush to ${address} dev ${bridge}\n`,
    });
    await disableIpv6(hostVeth);
    await run('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-batch', '-'], {
      input: `addr add ${addressCidr} dev eth0\nlink set eth0 up\nlink set lo up\n`,
    });
  }

  /** Takes an instance's host veth down (the guard's network cut: nothing in or out) or up again. */
  async setLink(hostVeth: string, up: boolean): Promise<void> {
    await run('ip', ['link', 'set', hostVeth, up ? 'up' : 'down']);
  }

  /** Whether the host veth is up; null when it does not exist. */
  async linkUp(hostVeth: string): Promise<boolean | null> {
    const flags = await readFile(`/sys/class/net/${hostVeth}/flags`, 'utf8').catch(() => null);
    return flags === null ? null : (Number(flags.trim()) & 1) === 1;
  }

  /** Removes the host end (the pair goes with it); a veth whose namespace died is gone already. */
  async detach(hostVeth: string): Promise<void> {
    if (existsSync(`/sys/class/net/${hostVeth}`)) await runQuietly('ip', ['link', 'del', hostVeth]);
  }

  /** Bytes the instance received and sent, read on the host end (where rx and tx are swapped). */
  counters(hostVeth: string): Promise<InterfaceCounters | null> {
    return instanceSideCounters(hostVeth);
  }

  /** Host veths of this driver's tag, whatever instance they belonged to. */
  async hostVeths(): Promise<string[]> {
    const { stdout } = await run('ip', ['-o', 'link', 'show', 'type', 'veth']);
    const pattern = new RegExp(`^\\d+: (${this.names.tag}v[0-9a-f]{12})[:@]`);
    return stdout.split('\n').flatMap((line) => {
      const m = pattern.exec(line);
      return m ? [m[1]!] : [];
    });
  }

  async #tableExists(): Promise<boolean> {
    return runQuietly('nft', ['list', 'table', 'inet', this.table]);
  }
}

export async function disableIpv6(ifname: string): Promise<void> {
  const path = `/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`;
  if (existsSync(path)) await writeFile(path, '1');
}
