/**
 * The OCI runtime `config.json` of an `os` instance, composed from small pure
 * functions (containerd's `spec_opts.go`): each `with…` takes a spec and returns a
 * new one with one concern applied. `instanceSpec` composes them in one fixed
 * order; `validate.ts` then checks the result before runc ever sees it.
 *
 * Nothing here touches the machine, so the output is golden-tested without root.
 */
import { CPU_PERIOD_US, type CgroupMode } from '../../core/cgroups.js';
import type { SeccompProfile } from './seccomp.js';

/** The subset of the OCI runtime spec (1.0.2) that Strata writes. */
export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: OciLinux;
}

export interface OciProcess {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: Record<CapabilitySet, string[]>;
  rlimits: OciRlimit[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
}

export type CapabilitySet = 'bounding' | 'effective' | 'inheritable' | 'permitted' | 'ambient';
export interface OciRlimit { type: string; hard: number; soft: number }
export interface OciMount { destination: string; type: string; source: string; options: string[] }
export interface OciNamespace { type: NamespaceType; path?: string }
export type NamespaceType = 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'cgroup' | 'user';
export interface OciIdMapping { containerID: number; hostID: number; size: number }

export interface OciResources {
  devices: Array<{ allow: boolean; access: string; type?: string; major?: number; minor?: number }>;
  memory?: { limit: number; swap: number; swappiness?: number; disableOOMKiller?: boolean };
  cpu?: { shares?: number; quota: number; period: number };
  pids?: { limit: number };
  blockIO?: { weight: number };
  unified?: Record<string, string>;
}

export interface OciLinux {
  namespaces: OciNamespace[];
  uidMappings?: OciIdMapping[];
  gidMappings?: OciIdMapping[];
  resources: OciResources;
  cgroupsPath?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: SeccompProfile;
  sysctl?: Record<string, string>;
  rootfsPropagation?: string;
}

export type SpecOpt = (spec: OciSpec) => OciSpec;
export type { CgroupMode };

/** Applies `opts` left to right. */
export const composeSpec = (base: OciSpec, ...opts: SpecOpt[]): OciSpec => opts.reduce((spec, opt) => opt(spec), base);

const nosuidNodevNoexec = ['nosuid', 'nodev', 'noexec'];

/**
 * The starting point: a minimal spec with the kernel filesystems a
 * process expects (/proc, a tmpfs /dev, devpts, shm, mqueue, read-only /sys and
 * cgroupfs), no namespaces, no capabilities, and a device cgroup that denies every
 * device (runc adds back only null, zero, full, random, urandom, tty and ptmx).
 */
export const baseSpec = (): OciSpec => ({
  ociVersion: '1.0.2',
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args: ['/bin/sh'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    cwd: '/',
    capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
    rlimits: [],
    noNewPrivileges: false,
  },
  root: { path: 'rootfs', readonly: false },
  hostname: 'instance',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc', options: nosuidNodevNoexec },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: [...nosuidNodevNoexec, 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: nosuidNodevNoexec },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: [...nosuidNodevNoexec, 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: [...nosuidNodevNoexec, 'relatime', 'ro'] },
  ],
  linux: {
    namespaces: [],
    resources: { devices: [{ allow: false, access: 'rwm' }] },
    rootfsPropagation: 'rprivate',
  },
});

/** Every namespace but the user namespace (added with its mapping by `withUserNamespace`), all new: none joins a host namespace. */
export const withNamespaces = (): SpecOpt => (spec) => ({
  ...spec,
  linux: {
    ...spec.linux,
    namespaces: [
      ...spec.linux.namespaces.filter((ns) => ns.type === 'user'),
      ...(['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'] as const).map((type) => ({ type })),
    ],
  },
});

/**
 * A new user namespace mapping container ids 0..count-1 to host ids
 * hostId..hostId+count-1 (the tenant's range): root in the container is an
 * unprivileged nobody on the host.
 */
export const withUserNamespace = (hostId: number, count: number): SpecOpt => (spec) => {
  const mapping = [{ containerID: 0, hostID: hostId, size: count }];
  return {
    ...spec,
    linux: {
      ...spec.linux,
      namespaces: [{ type: 'user' }, ...spec.linux.namespaces.filter((ns) => ns.type !== 'user')],
      uidMappings: mapping,
      gidMappings: mapping.map((m) => ({ ...m })),
    },
  };
};

/** The image root is mounted read-only; writes go to volumes and the tmpfs /tmp. */
export const withReadonlyRoot = (): SpecOpt => (spec) => ({ ...spec, root: { ...spec.root, readonly: true } });

/** Docker's masked paths (bind-mounted over with /dev/null or an empty tmpfs), plus a few it leaves readable. */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/timer_list', '/proc/timer_stats', '/proc/kallsyms', '/proc/sysrq-trigger',
  '/sys/firmware', '/sys/devices/virtual/powercap', '/sys/kernel/debug', '/sys/kernel/tracing', '/sys/kernel/security', '/sys/fs/selinux',
] as const;

/** Paths remounted read-only inside the container. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'] as const;

export const withMaskedPaths = (): SpecOpt => (spec) => ({
  ...spec,
  linux: { ...spec.linux, maskedPaths: [...MASKED_PATHS], readonlyPaths: [...READONLY_PATHS] },
});

export const withSeccomp = (profile: SeccompProfile): SpecOpt => (spec) => ({ ...spec, linux: { ...spec.linux, seccomp: profile } });

/**
 * The capabilities a web service needs and no more: fewer than Docker's default
 * (no NET_RAW, MKNOD, SETFCAP, AUDIT_WRITE, SYS_CHROOT). Root in the container
 * holds them only inside its user namespace.
 */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
] as const;

/** Sets bounding, effective and permitted to `list`; inheritable and ambient stay empty. */
export const withCapabilities = (list: readonly string[]): SpecOpt => (spec) => ({
  ...spec,
  process: {
    ...spec.process,
    capabilities: { bounding: [...list], effective: [...list], permitted: [...list], inheritable: [], ambient: [] },
  },
});

export const withNoNewPrivileges = (): SpecOpt => (spec) => ({ ...spec, process: { ...spec.process, noNewPrivileges: true } });

/** Open files capped (below the daemon's own hard limit, which a user namespace cannot raise); no core dumps (they would land in the read-only root or leak memory to disk). */
export const DEFAULT_RLIMITS: readonly OciRlimit[] = [
  { type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 },
  { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
];

export const withRlimits = (rlimits: readonly OciRlimit[] = DEFAULT_RLIMITS): SpecOpt => (spec) => ({
  ...spec,
  process: { ...spec.process, rlimits: rlimits.map((r) => ({ ...r })) },
});

export interface CgroupLimits {
  vcpus: number;
  memoryMiB: number;
  pids: number;
  /**
   * Relative block I/O weight, 10..1000 (cgroup v1 blkio.weight scale); left out
   * where the kernel has no weight-based I/O scheduler (no BFQ: runc's write fails).
   */
  blkioWeight?: number | undefined;
}

const MIB = 1024 * 1024;

/**
 * Memory (with no swap on top: swap = limit), CPU (CFS quota from vcpus), pids and
 * block I/O weight, in the container's own cgroup at `cgroupsPath` (under its
 * tenant's parent). On v1 the weight goes to blkio and swappiness is pinned to 0;
 * on v2, where runc's conversion is lossy, io.weight is written directly and
 * memory.oom.group makes an OOM kill take the whole instance, nothing else.
 */
export const withCgroupLimits = (limits: CgroupLimits, mode: CgroupMode, cgroupsPath: string): SpecOpt => (spec) => {
  const memoryBytes = limits.memoryMiB * MIB;
  const common: OciResources = {
    ...spec.linux.resources,
    cpu: { quota: Math.round(limits.vcpus * CPU_PERIOD_US), period: CPU_PERIOD_US },
    pids: { limit: limits.pids },
  };
  const resources: OciResources =
    mode === 'v1'
      ? { ...common, memory: { limit: memoryBytes, swap: memoryBytes, swappiness: 0 }, ...(limits.blkioWeight !== undefined ? { blockIO: { weight: limits.blkioWeight } } : {}) }
      : {
          ...common,
          memory: { limit: memoryBytes, swap: memoryBytes },
          unified: { ...(limits.blkioWeight !== undefined ? { 'io.weight': String(blkioToIoWeight(limits.blkioWeight)) } : {}), 'memory.oom.group': '1' },
        };
  return { ...spec, linux: { ...spec.linux, cgroupsPath, resources } };
};

/** Maps blkio.weight (10..1000) linearly onto io.weight (1..10000), as the kernel documentation suggests. */
export const blkioToIoWeight = (weight: number): number => Math.round(1 + ((weight - 10) * 9999) / 990);

/** A private tmpfs at `destination`, world-writable with the sticky bit, never executable or setuid. */
export const withTmpfs = (destination: string, sizeMiB = 64): SpecOpt => (spec) => ({
  ...spec,
  mounts: [...spec.mounts, { destination, type: 'tmpfs', source: 'tmpfs', options: [...nosuidNodevNoexec, 'mode=1777', `size=${sizeMiB}m`] }],
});

export interface VolumeMount {
  /** Host path (the instance's mounted data volume). */
  source: string;
  destination: string;
  readonly: boolean;
}

/** Bind mounts of the instance's volumes: private propagation, never setuid or device nodes. */
export const withMounts = (volumes: readonly VolumeMount[]): SpecOpt => (spec) => ({
  ...spec,
  mounts: [
    ...spec.mounts,
    ...volumes.map((v) => ({
      destination: v.destination,
      type: 'bind',
      source: v.source,
      options: ['rbind', 'rprivate', 'nosuid', 'nodev', ...(v.readonly ? ['ro'] : ['rw'])],
    })),
  ],
});

export const withProcess = (args: readonly string[], env: readonly string[], cwd: string): SpecOpt => (spec) => ({
  ...spec,
  process: { ...spec.process, args: [...args], env: [...spec.process.env.filter((e) => !env.some((x) => sameVar(x, e))), ...env], cwd },
});

const sameVar = (a: string, b: string): boolean => a.split('=', 1)[0] === b.split('=', 1)[0];

/** The root filesystem's path: absolute, or relative to the bundle. */
export const withRootPath = (path: string): SpecOpt => (spec) => ({ ...spec, root: { ...spec.root, path } });

export const withHostname = (hostname: string): SpecOpt => (spec) => ({ ...spec, hostname });

/** The container process's user and groups (container ids; the image's `User`, resolved). */
export const withUser = (user: OciProcess['user']): SpecOpt => (spec) => ({
  ...spec,
  process: { ...spec.process, user: { uid: user.uid, gid: user.gid, ...(user.additionalGids?.length ? { additionalGids: [...user.additionalGids] } : {}) } },
});

/**
 * Namespaced sysctls set inside the container's network namespace: no IPv6 (the
 * firewall and the address plan are IPv4), and unprivileged binds to any port so a
 * service may listen on 80 without CAP_NET_BIND_SERVICE over the namespace.
 */
export const NETWORK_SYSCTLS: Readonly<Record<string, string>> = {
  'net.ipv6.conf.all.disable_ipv6': '1',
  'net.ipv6.conf.default.disable_ipv6': '1',
  'net.ipv4.ip_unprivileged_port_start': '0',
};

export const withSysctl = (sysctl: Readonly<Record<string, string>>): SpecOpt => (spec) => ({
  ...spec,
  linux: { ...spec.linux, sysctl: { ...spec.linux.sysctl, ...sysctl } },
});

/** Everything `instanceSpec` needs to know about one instance. */
export interface InstanceSpecInput {
  hostname: string;
  /** Where the instance's root filesystem is mounted on the host. */
  rootPath: string;
  args: readonly string[];
  env: readonly string[];
  cwd: string;
  /** First host uid/gid of the tenant's range, and its size. */
  idRange: { hostId: number; count: number };
  limits: CgroupLimits;
  cgroupMode: CgroupMode;
  cgroupsPath: string;
  volumes: readonly VolumeMount[];
  seccomp: SeccompProfile;
  capabilities?: readonly string[];
  tmpSizeMiB?: number;
  /** Default: root (0:0) of the container. */
  user?: OciProcess['user'];
}

/** The whole spec of an instance, in the one order Strata applies the options. */
export const instanceSpec = (input: InstanceSpecInput): OciSpec =>
  composeSpec(
    baseSpec(),
    withRootPath(input.rootPath),
    withHostname(input.hostname),
    withNamespaces(),
    withUserNamespace(input.idRange.hostId, input.idRange.count),
    withReadonlyRoot(),
    withMaskedPaths(),
    withSeccomp(input.seccomp),
    withCapabilities(input.capabilities ?? DEFAULT_CAPABILITIES),
    withNoNewPrivileges(),
    withRlimits(),
    withCgroupLimits(input.limits, input.cgroupMode, input.cgroupsPath),
    withTmpfs('/tmp', input.tmpSizeMiB),
    withMounts(input.volumes),
    withSysctl(NETWORK_SYSCTLS),
    withProcess(input.args, input.env, input.cwd),
    ...(input.user ? [withUser(input.user)] : []),
  );
