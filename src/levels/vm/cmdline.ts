/**
 * The QEMU command line, generated, validated, then executed (as runc's
 * specconv + validate, containerd's spec_opts): small pure functions each give
 * one part, `buildCommandLine` joins them, and `validateCommandLine` runs an
 * ordered list of checks over the finished argv before anything starts. The
 * command line only launches: QEMU starts with `-S` (vCPUs stopped) and QMP does
 * the rest (`cont`, `stop`, `system_powerdown`, `migrate`).
 *
 * Privileges: QEMU is started already unprivileged (see `launch.ts`), not with
 * `-runas`: `-sandbox elevateprivileges=deny` forbids the setuid that `-runas`
 * needs (QEMU 7.2 dies with SIGSYS), and starting unprivileged keeps the
 * sandbox whole.
 *
 * Network: one virtio-net device on a tap the daemon created on the tenant's
 * bridge and gave to the VM user (`network.ts`); QEMU attaches to it by name and
 * runs no helper script. The guest's address arrives on the kernel command line.
 */
import { StrataError } from '../../core/errors.js';

export const GUEST_ARCHES = ['x86_64', 'aarch64'] as const;
export type GuestArch = (typeof GUEST_ARCHES)[number];
export type Accelerator = 'kvm' | 'tcg';

/** Translation-cache size for TCG, MiB. QEMU's default (1 GiB) would count against the VM's memory cgroup. */
export const TCG_TB_MIB = 64;

export const QEMU_BINARY: Readonly<Record<GuestArch, string>> = {
  x86_64: 'qemu-system-x86_64',
  aarch64: 'qemu-system-aarch64',
};

/** The serial console device name the guest kernel writes to. */
export const CONSOLE: Readonly<Record<GuestArch, string>> = { x86_64: 'ttyS0', aarch64: 'ttyAMA0' };

export interface NetworkConfig {
  /** A tap on the tenant's bridge, owned by the VM user (see `network.ts`). */
  tap: string;
  mac: string;
}

export interface LaunchConfig {
  name: string;
  arch: GuestArch;
  accelerator: Accelerator;
  vcpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  /** Kernel command line, from `kernelCommandLine`. */
  append: string;
  /** Where QEMU itself writes the serial output when there is no `consoleSocket` (the accelerator probe). */
  serialLog: string;
  /** Where the serial port listens instead (a unix socket): the daemon reads it, logs it and relays `strata console` (`console.ts`). */
  consoleSocket?: string;
  qmpSocket: string;
  pidFile: string;
  /** null: no network device at all (`-nic none`). */
  network: NetworkConfig | null;
  /** The instance's qcow2 overlay (see `disk.ts`), or null for no disk. */
  disk?: string | null;
  /** The guest's identity for fw_cfg (`guestIdentity`): a restored clone takes it from there. */
  identity?: string | null;
  /** Restore: read the migration stream from this inherited file descriptor. */
  incomingFd?: number;
  /** Move: wait for the migration stream, whose socket QMP names later. */
  incomingDefer?: boolean;
}

export interface CommandLine {
  binary: string;
  args: string[];
}

/**
 * RAM the machine model holds beyond the guest's: aarch64's virt board maps two
 * 64 MiB flash banks, allocated as RAM, which a snapshot (a migration) reads in
 * whole. The VM's memory cgroup must hold them, or a snapshot OOM-kills QEMU.
 */
export const MACHINE_RAM_MIB: Readonly<Record<GuestArch, number>> = { x86_64: 0, aarch64: 128 };

/** microvm on x86_64 (no PCI, no firmware: the fastest boot QEMU has), virt on aarch64. */
export function machineArgs(arch: GuestArch): string[] {
  return arch === 'x86_64' ? ['-machine', 'microvm,x-option-roms=off'] : ['-machine', 'virt,gic-version=3'];
}

export function acceleratorArgs(accelerator: Accelerator): string[] {
  return accelerator === 'kvm' ? ['-accel', 'kvm'] : ['-accel', `tcg,tb-size=${TCG_TB_MIB}`];
}

/** KVM passes the host CPU through; under TCG aarch64 emulates a Cortex-A72 (cheaper than `max`, which emulates pointer auth). */
export function cpuArgs(arch: GuestArch, accelerator: Accelerator): string[] {
  if (accelerator === 'kvm') return ['-cpu', 'host'];
  return arch === 'aarch64' ? ['-cpu', 'cortex-a72'] : [];
}

export function resourceArgs(vcpus: number, memoryMiB: number): string[] {
  return ['-smp', String(vcpus), '-m', `${memoryMiB}M`];
}

/** Direct kernel boot: no firmware, no bootloader, no disk to read the kernel from. */
export function bootArgs(kernel: string, initrd: string, append: string): string[] {
  return ['-kernel', kernel, '-initrd', initrd, '-append', append];
}

/**
 * A QEMU that resumes a migration stream (restore, clone, move) boots nothing:
 * the guest's kernel is already in the memory that arrives. Without `-kernel`
 * QEMU does not read the 64 MiB kernel image into its heap first (~10 % of a
 * restore under TCG here, and that much less memory per restored VM).
 */
export function resumes(c: Pick<LaunchConfig, 'incomingFd' | 'incomingDefer'>): boolean {
  return c.incomingFd !== undefined || c.incomingDefer === true;
}

/**
 * No display, no default devices, no config files; the serial console goes to a
 * log file. With `consoleSocket`, the serial port is a unix-socket chardev
 * (QEMU listens; one client, the daemon's console relay, which keeps the log
 * rotated and capped). No `logfile=`: a log QEMU writes grows without bound.
 */
export function consoleArgs(serialLog: string, consoleSocket?: string): string[] {
  const flags = ['-nodefaults', '-no-user-config', '-nographic'];
  if (consoleSocket === undefined) return [...flags, '-serial', `file:${serialLog}`];
  return [...flags, '-chardev', `socket,id=serial0,path=${consoleSocket},server=on,wait=off`, '-serial', 'chardev:serial0'];
}

/** One virtio NIC on the VM's tap (no helper scripts: QEMU may not spawn them); or no NIC at all. */
export function networkArgs(net: NetworkConfig | null): string[] {
  if (!net) return ['-nic', 'none'];
  return [
    '-netdev', `tap,id=net0,ifname=${net.tap},script=no,downscript=no`,
    '-device', `virtio-net-device,netdev=net0,mac=${net.mac}`,
  ];
}

/** The instance's qcow2 overlay as one virtio disk; its backing file (the shared base) is opened read-only by QEMU. */
export function diskArgs(disk: string | null | undefined): string[] {
  if (!disk) return [];
  return ['-blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${disk}`, '-device', 'virtio-blk-device,drive=disk0'];
}

export interface GuestIdentity {
  addressCidr: string;
  hostname: string;
  mac: string;
  seed: string;
}

/** One line, spaces between `key=value`s, read by the guest's `strata-identity`; no commas (QEMU's option syntax). */
export function guestIdentity(i: GuestIdentity): string {
  return `ip=${i.addressCidr} host=${i.hostname} mac=${i.mac} seed=${i.seed}`;
}

/** The identity as a fw_cfg file the guest reads from /sys/firmware/qemu_fw_cfg (fw_cfg is not migrated: a restore sees the new QEMU's). */
export function identityArgs(identity: string | null | undefined): string[] {
  return identity ? ['-fw_cfg', `name=opt/strata/identity,string=${identity}`] : [];
}

export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/** QEMU's seccomp filter: no obsolete syscalls, no set*id, no fork/exec, no scheduler or affinity changes. */
export function sandboxArgs(): string[] {
  return ['-sandbox', SANDBOX];
}

/** QMP socket (QEMU listens), pidfile, vCPUs held until QMP `cont`, a guest reboot ends QEMU. */
export function controlArgs(name: string, qmpSocket: string, pidFile: string): string[] {
  return ['-name', name, '-qmp', `unix:${qmpSocket},server=on,wait=off`, '-pidfile', pidFile, '-S', '-no-reboot'];
}

/** Restore reads an inherited fd; a move's receiver waits (`defer`) for QMP `migrate-incoming` on a socket. */
export function incomingArgs(fd: number | undefined, defer = false): string[] {
  if (defer) return ['-incoming', 'defer'];
  return fd === undefined ? [] : ['-incoming', `fd:${fd}`];
}

export function buildCommandLine(c: LaunchConfig): CommandLine {
  return {
    binary: QEMU_BINARY[c.arch],
    args: [
      ...machineArgs(c.arch),
      ...acceleratorArgs(c.accelerator),
      ...cpuArgs(c.arch, c.accelerator),
      ...resourceArgs(c.vcpus, c.memoryMiB),
      ...consoleArgs(c.serialLog, c.consoleSocket),
      ...(resumes(c) ? [] : bootArgs(c.kernel, c.initrd, c.append)),
      ...networkArgs(c.network),
      ...diskArgs(c.disk),
      ...identityArgs(c.identity),
      ...sandboxArgs(),
      ...controlArgs(c.name, c.qmpSocket, c.pidFile),
      ...incomingArgs(c.incomingFd, c.incomingDefer),
    ],
  };
}

export interface GuestBootOptions {
  arch: GuestArch;
  accelerator: Accelerator;
  /** Host TSC frequency; under TCG on x86_64 the guest's TSC is the host's, and telling it skips a calibration that fails on a loaded host. */
  tscKhz: number | null;
  /** Guest service port (default service: busybox httpd on /www). */
  port: number;
  /** Tenant command replacing the default service; base64 so it is one word on the kernel command line. */
  command: string | null;
  hostname: string;
  /** Hex bytes the guest's init writes into its RNG: fresh for every boot, so no two guests (or clones) share a random state. */
  seed?: string;
  /** Accelerator probe: print the marker and power off. */
  probe?: boolean;
  /** The guest's address on its tenant's /24 (no default route), or null without a NIC. */
  network: { addressCidr: string } | null;
}

/**
 * The guest kernel's command line. Quiet (a serial console is slow under TCG),
 * panic reboots at once (and `-no-reboot` ends QEMU), and the init subsystems a
 * one-service guest does not need are off: PCI (microvm has none), speculative
 * execution mitigations, crypto self-tests, audit, LSMs, the soft-lockup watchdog.
 */
export function kernelCommandLine(o: GuestBootOptions): string {
  const parts = [`console=${CONSOLE[o.arch]}`, 'quiet', 'panic=-1', 'mitigations=off', 'cryptomgr.notests', 'audit=0', 'lsm=', 'nowatchdog', 'init_on_free=1'];
  if (o.arch === 'x86_64') parts.push('pci=off');
  if (o.arch === 'x86_64' && o.accelerator === 'tcg' && o.tscKhz) parts.push(`tsc_early_khz=${o.tscKhz}`, 'tsc=reliable');
  parts.push(`strata.hostname=${o.hostname}`, `strata.port=${o.port}`);
  if (o.network) parts.push(`strata.ip=${o.network.addressCidr}`);
  if (o.seed) parts.push(`strata.seed=${o.seed}`);
  if (o.command !== null) parts.push(`strata.cmd=${Buffer.from(o.command, 'utf8').toString('base64')}`);
  if (o.probe) parts.push('strata.probe=1');
  return parts.join(' ');
}

// ---------------------------------------------------------------------------
// Validation: an ordered list of checks over the finished argv.

interface Validator {
  name: string;
  /** A problem, or null. */
  check: (argv: Argv) => string | null;
}

/** Argv with option lookup; QEMU options take exactly one value except the flags below. */
class Argv {
  static readonly FLAGS = new Set(['-nodefaults', '-no-user-config', '-nographic', '-S', '-no-reboot']);
  readonly options = new Map<string, string[]>();
  readonly unparsed: string[] = [];

  constructor(args: readonly string[]) {
    for (let i = 0; i < args.length; i++) {
      const opt = args[i]!;
      if (!opt.startsWith('-')) { this.unparsed.push(opt); continue; }
      const value = Argv.FLAGS.has(opt) ? '' : args[++i];
      if (value === undefined) { this.unparsed.push(opt); continue; }
      this.options.set(opt, [...(this.options.get(opt) ?? []), value]);
    }
  }

  one(opt: string): string | undefined {
    const values = this.options.get(opt);
    return values && values.length === 1 ? values[0] : undefined;
  }
}

const REQUIRED_FLAGS = ['-nodefaults', '-no-user-config', '-nographic', '-S', '-no-reboot'];
/** Options a launch may carry; anything else (-runas, -monitor, -drive, -virtfs …) is refused; -chardev only as the serial console. */
const ALLOWED = new Set([...REQUIRED_FLAGS, '-machine', '-accel', '-cpu', '-smp', '-m', '-serial', '-chardev', '-kernel', '-initrd', '-append',
  '-netdev', '-device', '-nic', '-blockdev', '-fw_cfg', '-sandbox', '-name', '-qmp', '-pidfile', '-incoming']);
const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;
const SAFE_APPEND = /^[A-Za-z0-9._=,:/+\- ]*$/;

function validators(arch: GuestArch): Validator[] {
  return [
    { name: 'well-formed', check: (a) => (a.unparsed.length ? `stray arguments: ${a.unparsed.join(' ')}` : null) },
    { name: 'known options only', check: (a) => {
      const unknown = [...a.options.keys()].filter((o) => !ALLOWED.has(o));
      return unknown.length ? `options not allowed: ${unknown.join(', ')}` : null;
    } },
    { name: 'isolation flags', check: (a) => {
      const missing = REQUIRED_FLAGS.filter((f) => !a.options.has(f));
      return missing.length ? `missing ${missing.join(', ')}` : null;
    } },
    { name: 'sandbox', check: (a) => (a.one('-sandbox') === SANDBOX ? null : `-sandbox must be exactly '${SANDBOX}'`) },
    { name: 'machine matches arch', check: (a) => {
      const want = machineArgs(arch)[1];
      return a.one('-machine') === want ? null : `-machine must be '${want}' for ${arch}`;
    } },
    { name: 'accelerator', check: (a) => {
      const accel = a.one('-accel');
      return accel === 'kvm' || accel === `tcg,tb-size=${TCG_TB_MIB}` ? null : `bad -accel '${accel ?? ''}'`;
    } },
    { name: 'resources', check: (a) => {
      const smp = Number(a.one('-smp'));
      const mem = /^(\d+)M$/.exec(a.one('-m') ?? '');
      if (!Number.isInteger(smp) || smp < 1 || smp > 16) return `-smp must be 1..16`;
      if (!mem || Number(mem[1]) < 64 || Number(mem[1]) > 65536) return `-m must be 64M..65536M`;
      return null;
    } },
    { name: 'paths', check: (a) => {
      // Kernel and initrd boot the guest; a resumed one (-incoming) may leave them out.
      const boot = a.options.has('-incoming') && !a.options.has('-kernel') && !a.options.has('-initrd') ? [] : [a.one('-kernel'), a.one('-initrd')];
      const paths = [...boot, a.one('-pidfile'), ...(a.one('-serial') === 'chardev:serial0' ? [] : [a.one('-serial')?.replace(/^file:/, '')]),
        a.one('-qmp')?.replace(/^unix:/, '').replace(/,server=on,wait=off$/, '')];
      const bad = paths.filter((p) => p === undefined || !SAFE_PATH.test(p));
      return bad.length ? `kernel, initrd, pidfile, serial log and QMP socket must be safe absolute paths` : null;
    } },
    { name: 'serial: a log file, or the console socket chardev', check: (a) => {
      const chardevs = a.options.get('-chardev') ?? [];
      if (a.one('-serial') !== 'chardev:serial0') return chardevs.length ? '-chardev only as the serial console' : null;
      const m = chardevs.length === 1 ? /^socket,id=serial0,path=([^,]+),server=on,wait=off$/.exec(chardevs[0]!) : null;
      return m && SAFE_PATH.test(m[1]!) ? null : 'the serial chardev must be one unix server socket at a safe absolute path';
    } },
    { name: 'qmp is a unix server socket', check: (a) => (/^unix:\/[^,]+,server=on,wait=off$/.test(a.one('-qmp') ?? '') ? null : 'bad -qmp') },
    { name: 'kernel command line', check: (a) => {
      if (!a.options.has('-append') && !a.options.has('-kernel') && a.options.has('-incoming')) return null;
      return SAFE_APPEND.test(a.one('-append') ?? '\u0000') ? null : '-append has characters outside the safe set';
    } },
    { name: 'network: one prepared tap, no scripts', check: (a) => {
      const netdevs = a.options.get('-netdev') ?? [];
      const nic = a.options.get('-nic') ?? [];
      if (netdevs.length === 0) return nic.length === 1 && nic[0] === 'none' ? null : 'without a netdev, -nic none is required';
      if (netdevs.length > 1 || nic.length) return 'exactly one netdev';
      return /^tap,id=net0,ifname=[a-z]{2}t[0-9a-f]{12},script=no,downscript=no$/.test(netdevs[0]!) ? null : 'netdev must be a prepared tap by name, without scripts';
    } },
    { name: 'disk: one qcow2 file at a safe path', check: (a) => {
      const blockdevs = a.options.get('-blockdev') ?? [];
      if (blockdevs.length > 1) return 'at most one -blockdev';
      const file = /^driver=qcow2,node-name=disk0,file\.driver=file,file\.filename=(.+)$/.exec(blockdevs[0] ?? 'driver=qcow2,node-name=disk0,file.driver=file,file.filename=/none')?.[1];
      return file && SAFE_PATH.test(file) && !file.includes('..') ? null : 'the disk must be a qcow2 file at a safe absolute path';
    } },
    { name: 'fw_cfg: the identity only', check: (a) => {
      const files = a.options.get('-fw_cfg') ?? [];
      const ok = /^name=opt\/strata\/identity,string=ip=[0-9./]+ host=[a-z0-9-]{1,63} mac=52:54:00(:[0-9a-f]{2}){3} seed=[0-9a-f]{1,128}$/;
      return files.length <= 1 && files.every((f) => ok.test(f)) ? null : 'only the strata identity may be passed through fw_cfg';
    } },
    { name: 'devices', check: (a) => {
      const devices = a.options.get('-device') ?? [];
      const hasDisk = (a.options.get('-blockdev') ?? []).length === 1;
      return devices.every((d) => /^virtio-net-device,netdev=net0,mac=52:54:00(:[0-9a-f]{2}){3}$/.test(d) || (hasDisk && d === 'virtio-blk-device,drive=disk0'))
        ? null : 'only the virtio-net device and the instance disk are allowed';
    } },
    { name: 'incoming from an inherited fd or deferred only', check: (a) => {
      const incoming = a.options.get('-incoming');
      return !incoming || (incoming.length === 1 && /^(fd:\d+|defer)$/.test(incoming[0]!)) ? null : '-incoming must be fd:N or defer';
    } },
  ];
}

/** Throws STRATA_ERR_VALIDATION listing every problem; returns the command line unchanged when it passes. */
export function validateCommandLine(cmd: CommandLine, arch: GuestArch): CommandLine {
  const problems: string[] = [];
  if (cmd.binary !== QEMU_BINARY[arch]) problems.push(`binary must be ${QEMU_BINARY[arch]} for ${arch}`);
  const argv = new Argv(cmd.args);
  for (const v of validators(arch)) {
    const problem = v.check(argv);
    if (problem) problems.push(`${v.name}: ${problem}`);
  }
  if (problems.length) {
    throw new StrataError('STRATA_ERR_VALIDATION', `refusing QEMU command line: ${problems.join('; ')}`, { problems });
  }
  return cmd;
}
