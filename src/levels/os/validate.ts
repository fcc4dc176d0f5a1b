/**
 * The checks every generated `config.json` passes before runc sees it (runc's
 * `libcontainer/configs/validate`): an ordered list of small rules, each naming
 * the isolation promise it guards. The first broken rule throws
 * `UnsafeSpecError`; a spec that reaches runc has passed all of them.
 *
 * The rules restate the isolation defaults independently of the builders in
 * `spec.ts`, so a change to a builder that weakens isolation fails here, loudly,
 * instead of shipping.
 */
import { StrataError } from '../../core/errors.js';
import { DENIED_SYSCALLS } from './seccomp.js';
import { MASKED_PATHS, READONLY_PATHS, type NamespaceType, type OciSpec } from './spec.js';

/** A generated spec breaks an isolation rule: a bug in Strata, never the tenant's input. */
export class UnsafeSpecError extends StrataError {
  constructor(readonly rule: string, message: string) {
    super('STRATA_ERR_DRIVER', `unsafe container spec (${rule}): ${message}`, { rule });
    this.name = 'UnsafeSpecError';
  }
}

export interface SpecRule {
  name: string;
  /** Returns what is wrong, or null. */
  check: (spec: OciSpec, ctx: ValidationContext) => string | null;
}

export interface ValidationContext {
  /** Host directories bind mounts may come from (the instance's volume mount points). */
  allowedBindSources: readonly string[];
}

const REQUIRED_NAMESPACES: readonly NamespaceType[] = ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup', 'user'];
/** Host uids and gids no container may map: root and every ordinary system and login account. */
const HOST_RESERVED_IDS = 65_536;
const FORBIDDEN_CAPABILITIES = [
  'CAP_SYS_ADMIN', 'CAP_SYS_MODULE', 'CAP_SYS_PTRACE', 'CAP_SYS_RAWIO', 'CAP_SYS_BOOT', 'CAP_SYS_TIME', 'CAP_SYS_RESOURCE', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_MAC_ADMIN', 'CAP_MAC_OVERRIDE', 'CAP_BPF', 'CAP_PERFMON', 'CAP_DAC_READ_SEARCH', 'CAP_SYSLOG', 'CAP_LINUX_IMMUTABLE',
  'CAP_MKNOD', 'CAP_AUDIT_CONTROL', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_SYS_CHROOT', 'CAP_CHECKPOINT_RESTORE',
];
/** Filesystems a spec may mount; anything else (a host block device, a second procfs …) is refused. */
const ALLOWED_MOUNT_TYPES = new Set(['proc', 'tmpfs', 'devpts', 'mqueue', 'sysfs', 'cgroup', 'bind']);

const validMapping = (mappings: OciSpec['linux']['uidMappings']): string | null => {
  if (!mappings || mappings.length === 0) return 'no id mapping';
  for (const m of mappings) {
    if (m.hostID < HOST_RESERVED_IDS) return `maps host id ${m.hostID}, inside the host's reserved 0..${HOST_RESERVED_IDS - 1}`;
    if (m.size < 1 || m.size > 65_536) return `mapping size ${m.size} outside 1..65536`;
    if (m.hostID + m.size > 0xffff_ffff) return 'mapping runs past the largest uid';
  }
  return null;
};

/** The rules, in the order they are checked. */
export const SPEC_RULES: readonly SpecRule[] = [
  {
    name: 'namespaces',
    check: (spec) => {
      const types = spec.linux.namespaces.map((ns) => ns.type);
      const missing = REQUIRED_NAMESPACES.filter((t) => !types.includes(t));
      if (missing.length > 0) return `missing namespaces: ${missing.join(', ')}`;
      const joined = spec.linux.namespaces.filter((ns) => ns.path !== undefined);
      return joined.length > 0 ? `joins existing namespaces: ${joined.map((ns) => ns.type).join(', ')}` : null;
    },
  },
  {
    name: 'user-namespace-mapping',
    check: (spec) => validMapping(spec.linux.uidMappings) ?? validMapping(spec.linux.gidMappings),
  },
  { name: 'readonly-root', check: (spec) => (spec.root.readonly ? null : 'the root filesystem is writable') },
  {
    name: 'masked-paths',
    check: (spec) => {
      const masked = MASKED_PATHS.filter((p) => !spec.linux.maskedPaths?.includes(p));
      const readonly = READONLY_PATHS.filter((p) => !spec.linux.readonlyPaths?.includes(p));
      if (masked.length > 0) return `not masked: ${masked.join(', ')}`;
      return readonly.length > 0 ? `not read-only: ${readonly.join(', ')}` : null;
    },
  },
  {
    name: 'seccomp',
    check: (spec) => {
      const profile = spec.linux.seccomp;
      if (!profile) return 'no seccomp profile';
      if (profile.defaultAction === 'SCMP_ACT_ALLOW' || profile.defaultAction === 'SCMP_ACT_LOG') return `default action ${profile.defaultAction} is not a denial`;
      const unconditional = profile.syscalls.filter((r) => (r.action === 'SCMP_ACT_ALLOW' || r.action === 'SCMP_ACT_LOG') && !(r.args?.length));
      const allowed = new Set(unconditional.flatMap((r) => r.names));
      const leaks = DENIED_SYSCALLS.filter((name) => allowed.has(name));
      return leaks.length > 0 ? `allows denied syscalls: ${leaks.join(', ')}` : null;
    },
  },
  {
    name: 'capabilities',
    check: (spec) => {
      const caps = spec.process.capabilities;
      if (caps.ambient.length > 0 || caps.inheritable.length > 0) return 'ambient or inheritable capabilities';
      const present = FORBIDDEN_CAPABILITIES.filter((c) => caps.bounding.includes(c) || caps.permitted.includes(c) || caps.effective.includes(c));
      return present.length > 0 ? `forbidden capabilities: ${present.join(', ')}` : null;
    },
  },
  {
    // CVE-2024-21626: a working directory like /proc/self/fd/7 once resolved to a
    // host directory fd runc leaked. Only clean absolute paths outside /proc may be a cwd.
    name: 'process-cwd',
    check: (spec) => {
      const cwd = spec.process.cwd;
      if (!cwd.startsWith('/') || cwd.split('/').includes('..')) return `cwd ${cwd} is not a clean absolute path`;
      return cwd === '/proc' || cwd.startsWith('/proc/') ? `cwd ${cwd} is under /proc` : null;
    },
  },
  { name: 'no-new-privileges', check: (spec) => (spec.process.noNewPrivileges ? null : 'noNewPrivileges is off') },
  {
    name: 'rlimits',
    check: (spec) => {
      const types = spec.process.rlimits.map((r) => r.type);
      return types.includes('RLIMIT_NOFILE') && types.includes('RLIMIT_CORE') ? null : 'RLIMIT_NOFILE and RLIMIT_CORE must be set';
    },
  },
  {
    name: 'cgroup-limits',
    check: (spec) => {
      const r = spec.linux.resources;
      if (!spec.linux.cgroupsPath) return 'no cgroupsPath';
      if (!r.memory || r.memory.limit <= 0) return 'no memory limit';
      if (r.memory.swap !== r.memory.limit) return 'swap beyond the memory limit';
      if (!r.cpu || r.cpu.quota <= 0 || r.cpu.period <= 0) return 'no CPU quota';
      if (!r.pids || r.pids.limit <= 0) return 'no pids limit';
      return null;
    },
  },
  {
    name: 'devices',
    check: (spec) => {
      const first = spec.linux.resources.devices[0];
      if (!first || first.allow || first.access !== 'rwm' || first.type !== undefined) return 'the device cgroup does not start by denying every device';
      return spec.linux.resources.devices.some((d) => d.allow) ? 'allows devices beyond the runtime defaults' : null;
    },
  },
  {
    name: 'mounts',
    check: (spec, ctx) => {
      for (const m of spec.mounts) {
        if (!ALLOWED_MOUNT_TYPES.has(m.type)) return `mount type ${m.type} at ${m.destination}`;
        if (m.type === 'bind') {
          if (!ctx.allowedBindSources.includes(m.source)) return `bind mount from ${m.source}, which is not one of the instance's volumes`;
          if (!m.options.includes('nosuid') || !m.options.includes('nodev')) return `bind mount at ${m.destination} without nosuid,nodev`;
        }
        if ((m.type === 'sysfs' || m.type === 'cgroup') && !m.options.includes('ro')) return `${m.type} at ${m.destination} is writable`;
        if (!m.destination.startsWith('/') || m.destination.split('/').includes('..')) return `mount destination ${m.destination} is not a clean absolute path`;
      }
      return null;
    },
  },
];

/** Throws `UnsafeSpecError` for the first rule `spec` breaks. */
export function validateSpec(spec: OciSpec, ctx: ValidationContext, rules: readonly SpecRule[] = SPEC_RULES): void {
  for (const rule of rules) {
    const problem = rule.check(spec, ctx);
    if (problem !== null) throw new UnsafeSpecError(rule.name, problem);
  }
}
