/**
 * The bpftrace program of the os interceptor, generated here because bpftrace
 * 0.17 (Debian 12) has no macros and every probe starts with the same scoping.
 *
 * Identity: each record carries the task's cgroup v2 id (`cgroup`, i.e.
 * bpf_get_current_cgroup_id) and the kernel time (`nsecs`, CLOCK_MONOTONIC),
 * both taken in the probe. These machines are hybrid (v1 controllers, cgroup2
 * at /sys/fs/cgroup/unified): runc still makes each container its own cgroup in
 * the unified hierarchy (`0::/<root>/<tenant>/<instance>`, `runc exec` joins it
 * too), and kernfs never hands a cgroup id out twice, while the pid namespace
 * inode this program used before is reused as soon as a container is gone —
 * the flaw that let one tenant's refused syscalls be pinned on whoever started
 * next. So the cgroup id is the identity, not the namespace inode with its
 * reaper's start time (the fallback for machines without any cgroup2; none of
 * ours). The os driver registers cgroup id → (tenant, instance, generation)
 * between `runc create` and `runc start` (src/levels/os/identities.ts).
 *
 * Scoping: a probe does nothing unless the task is under a seccomp filter
 * (mode 2: the tenant's workload, not runc's own set-up before it installs the
 * filter, one pointer read) and inside the os driver's cgroup subtree (its
 * record then names the instance-level cgroup, so one a tenant nested below
 * still names its instance); without the subtree, any task in a pid namespace
 * below the host's, by its own cgroup.
 *
 * Records: `-f json`, one `print((tag, cgroup, nsecs, pid, uid, comm, ppid,
 * pcomm, sessionid, …))` tuple per event, so bpftrace escapes attacker-controlled strings.
 * The process's name and its parent are read here, at event time, and so is its
 * audit session id (which tells an operator session from the workload). A path
 * relative to the cwd or a dirfd is followed by `("d", name)` records, the
 * components of that directory from the kernel's dentries (crossing mounts up
 * to the task's root), deepest first, then `("e", how)`; an exec is followed by
 * its arguments, `("a", arg, last)` each. One probe's records come from one CPU, in
 * order. The exit of a container's init (the pid namespace's reaper, marked
 * SIGNAL_UNKILLABLE) is an `exit` record: user space retires the identity.
 *
 * Floods: each cgroup has a budget of records per class and second; past it
 * events are only counted in the kernel (`@budget`, `@fbudget`, `@nbudget`,
 * printed and reset every second), so a tenant cannot bury the guard, and
 * nothing is lost unseen. Forks and CPU samples (with the sampled task's name
 * and voluntary context switches) are aggregated in the kernel and printed once
 * a second (`@forks`, `@cpu`, `@nvcsw`).
 *
 * To extend: add a probe with `probe(attach, emit)`; `WHO` is the common head
 * of a record, `SCOPE` the block every probe body runs in (`$id` is set there).
 * Scoping by the driver's cgroup subtree (`scope`) is also what keeps other
 * runtimes' containers out: they are not ours, so they are not even counted.
 *
 * Seccomp denials: a syscall the filter refuses never reaches sys_enter, but
 * passes sys_exit with -EPERM (the profile's errno), so they are caught there.
 */
import { DENIED_SYSCALLS } from '../seccomp.js';
import type { CgroupScope } from '../cgroups.js';
import { structOffsets } from './btf.js';

/** Per-event records per cgroup, class and second, by default. */
export const DEFAULT_BUDGET = 500;

/** Directory levels (components plus mount crossings) a relative path's directory is followed up. */
export const WALK_DEPTH = 10;

/** How a directory walk ended (`e` record): at the task's root, or cut short (too deep, or outside its root). */
export const WALK_COMPLETE = 1;

/** Defaults of the generated program. */
export interface BpfProgramOptions {
  /**
   * Per-event records per cgroup per second, for file writes, connections and
   * the rest each, before only counting. Default 500: what user space spends
   * per record is what a syscall-heavy tenant pays in shared CPU.
   */
  budgetPerSecond?: number;
  /** CPU sampling frequency per core (Hz). Default 99: at 49 a half-core hog reads anywhere from 0.7 to 1.1 of its share. */
  sampleHz?: number;
  /**
   * Whether this kernel has a tracepoint (`syscalls:sys_enter_mount`); probes on
   * missing ones are left out. Default: all present.
   */
  has?: (tracepoint: string) => boolean;
  /** Offset of `mnt` (the vfsmount) in `struct mount`, and of its parent and mountpoint; default read from the kernel's BTF. */
  mountLayout?: MountLayout | null;
  /**
   * The os driver's subtree of cgroups: only its tasks are watched, and a
   * record's identity is its instance-level ancestor (a cgroup a tenant nested
   * below its own still names the instance). Without it (or without the
   * kernel's BTF) every tenant-looking task is watched, by its own cgroup.
   */
  scope?: CgroupScope | null;
  /** Offsets in `struct cgroup` and `struct kernfs_node`; default read from the kernel's BTF. */
  cgroupLayout?: CgroupLayout | null;
}

export interface CgroupLayout {
  level: number;
  ancestors: number;
  kn: number;
  /** of `id` in struct kernfs_node (after an anonymous union, which bpftrace 0.17 cannot see past). */
  knId: number;
}

export interface MountLayout {
  mnt: number;
  mnt_parent: number;
  mnt_mountpoint: number;
}

const SECCOMP = 'curtask->seccomp.mode == 2';

/** Without a scope: a task in a pid namespace below the host's, `$id` its own cgroup. */
const ANY_CONTAINER = 'if (curtask->nsproxy->pid_ns_for_children->level > 0) {\n    $id = cgroup;';

/**
 * Opens the block of a tenant task, with `$id` its identity: inside the
 * driver's cgroup subtree (its ancestor at the root's depth is the root),
 * identified by its ancestor at instance depth. Read through BTF offsets:
 * bpftrace 0.17 neither indexes the flexible `ancestors` array nor sees
 * kernfs_node's `id` past an anonymous union. Other runtimes' containers,
 * other daemons' and the host cost these reads and emit nothing.
 */
function scopeBlock(scope: CgroupScope | null | undefined, c: CgroupLayout | null): string {
  if (!scope || !c) return ANY_CONTAINER;
  const idOf = (level: number): string => `*(uint64 *)(*(uint64 *)(*(uint64 *)($cg + ${c.ancestors + 8 * level}) + ${c.kn}) + ${c.knId})`;
  return `$cg = (uint64)curtask->cgroups->dfl_cgrp;\n  if (*(int32 *)($cg + ${c.level}) >= ${scope.instanceLevel} && ${idOf(scope.rootLevel)} == ${scope.rootId}) {\n` +
    `    $id = ${idOf(scope.instanceLevel)};`;
}

/** The kernel's layout of cgroups, from its BTF; null if it lacks a field. */
function cgroupLayout(): CgroupLayout | null {
  const cg = structOffsets('cgroup', ['level', 'ancestors', 'kn']);
  const kn = structOffsets('kernfs_node', ['id']);
  return cg && kn ? { level: cg.level!, ancestors: cg.ancestors!, kn: cg.kn!, knId: kn.id! } : null;
}

/**
 * The head of every record: identity, kernel time, the process and its parent, read now; and the task's audit
 * session id, the lineage of an operator session (guard/sessions.ts: inherited at fork, set by the session's runner).
 */
const WHO = '$id, nsecs, pid, uid, comm, curtask->real_parent->tgid, curtask->real_parent->comm, curtask->sessionid';

/** Indices of the head's fields in a record (after the tag at 0). */
export const HEAD = { id: 1, time: 2, pid: 3, uid: 4, comm: 5, ppid: 6, pcomm: 7, session: 8, rest: 9 } as const;

/**
 * Syscalls whose refusal is reported: every one the seccomp profile refuses,
 * the fork family (-EAGAIN at the pids limit), device nodes and privilege changes.
 */
const EXIT_WATCHED = [...new Set([
  ...DENIED_SYSCALLS, 'clone', 'clone3', 'fork', 'vfork', 'mknod', 'mknodat',
  'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setgroups', 'capset',
])];

/** Arguments of an exec sent, at most (bpftrace's `join` took 16 too). */
export const ARGV_MAX = 16;

/**
 * An exec's argv: one `("a", arg, last)` record per argument, up to the NULL that
 * ends it (an empty argv: one empty, last one). Not bpftrace's `join()`: it reads
 * all 16 slots and their strings whether argv ended or not, and each read of a
 * NULL faults in the kernel: 86 µs per exec on these (nested) machines against
 * 23 µs for one record (the kernel's run time per probe hit, bench guard-overhead).
 */
const ARGV = '$p = (uint64)args->argv; $a = *(uint64 *)uptr($p); $i = (uint64)0;\n' +
  `      unroll(${ARGV_MAX}) { if ($a != 0) { $i++; $nx = *(uint64 *)uptr($p + 8 * $i); print(("a", str($a), $nx == 0 || $i == ${ARGV_MAX})); $a = $nx; } }\n` +
  '      if ($i == 0) { print(("a", "", 1)); }';

/** O_WRONLY | O_RDWR | O_CREAT | O_TRUNC. */
const WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200;
/** task->signal->flags bit of a pid namespace's init. */
const SIGNAL_UNKILLABLE = 0x40;

/**
 * The directory walk: from a dentry and its mount up to the task's root,
 * printing each component; at the top of a mount it continues from the
 * mountpoint in the parent mount (`struct mount` is found from its vfsmount by
 * the BTF offset: bpftrace has no container_of).
 */
function walk(dentry: string, vfsmount: string, m: MountLayout): string {
  const mountOf = (vfs: string): string => `(struct mount *)((uint64)${vfs} - ${m.mnt})`;
  return [
    `$d = ${dentry}; $m = ${mountOf(vfsmount)}; $rd = (uint64)curtask->fs->root.dentry; $rm = (uint64)curtask->fs->root.mnt; $w = 0;`,
    `      unroll(${WALK_DEPTH}) { if ($w == 0) {`,
    `        if ((uint64)$d == $rd && (uint64)$m + ${m.mnt} == $rm) { $w = ${WALK_COMPLETE}; }`,
    '        else { if ((uint64)$d == (uint64)$m->mnt.mnt_root) {',
    '          if ((uint64)$m->mnt_parent == (uint64)$m) { $w = 2; } else { $d = $m->mnt_mountpoint; $m = $m->mnt_parent; }',
    '        } else { print(("d", str($d->d_name.name))); $d = $d->d_parent; } }',
    '      } }',
    '      print(("e", $w));',
  ].join('\n');
}

/** The generated bpftrace source. */
export function osProgram(opts: BpfProgramOptions = {}): string {
  const budget = opts.budgetPerSecond ?? DEFAULT_BUDGET;
  const hz = opts.sampleHz ?? 99;
  const has = opts.has ?? (() => true);
  const layout = opts.mountLayout === undefined ? structOffsets('mount', ['mnt', 'mnt_parent', 'mnt_mountpoint']) as MountLayout | null : opts.mountLayout;
  const SCOPE = scopeBlock(opts.scope, opts.cgroupLayout === undefined ? cgroupLayout() : opts.cgroupLayout);
  /** One probe: scoped, budgeted; `emit` is the body that prints. `budgetMap`: file writes and connections each have their own. */
  const probe = (attach: string, emit: string, extraPredicate = '', budgetMap = '@budget'): string => {
    const points = attach.split(',').filter((p) => has(p.replace(/^tracepoint:/, '')));
    if (points.length === 0) return '';
    // The cheap test on the call's own arguments first; one lookup and one update of the budget map per hit.
    return `${points.join(',')} / ${extraPredicate ? `${extraPredicate} && ` : ''}${SECCOMP} / {\n  ${SCOPE}\n` +
      `    $c = ${budgetMap}[$id]; ${budgetMap}[$id] = $c + 1;\n    if ($c < ${budget}) {\n      ${emit}\n    }\n  }\n}`;
  };
  /**
   * A record with a path: `rel` says whether directory components follow (a
   * relative path: of the cwd, or of `dfd`'s directory). Without the kernel's
   * mount layout the components are not followed (`rel` = 0: the path stays relative).
   */
  const withPath = (tag: string, dfd: string, path: string, rest: string): string => {
    if (!layout) return `print(("${tag}", ${WHO}, 0, ${rest}, str(${path})));`;
    const fd = '*(curtask->files->fdt->fd + $dfd)';
    const cwd = walk('curtask->fs->pwd.dentry', 'curtask->fs->pwd.mnt', layout);
    // The dirfd is an int the tracepoint hands over unsigned: AT_FDCWD (-100) only compares as its own type.
    const ofFd = `if ($dfd >= 0 && $dfd < (int64)curtask->files->fdt->max_fds) { $f = ${fd}; ${walk('$f->f_path.dentry', '$f->f_path.mnt', layout)} } else { print(("e", 3)); }`;
    return `$rel = *uptr(${path}) != 47;\n      print(("${tag}", ${WHO}, $rel, ${rest}, str(${path})));\n` +
      `      if ($rel) {\n      ${dfd === '-100' ? cwd : `$dfd = (int32)${dfd}; if ($dfd == -100) { ${cwd} }\n      else { ${ofFd} }`}\n      }`;
  };
  const fileProbe = (attach: string, emit: string, extraPredicate = ''): string => probe(attach, emit, extraPredicate, '@fbudget');
  const netProbe = (attach: string, emit: string, extraPredicate = ''): string => probe(attach, emit, extraPredicate, '@nbudget');
  const probes = [
    probe('tracepoint:syscalls:sys_enter_execve', `${withPath('exec', '-100', 'args->filename', '0')}\n      ${ARGV}`),
    probe('tracepoint:syscalls:sys_enter_execveat', `${withPath('exec', 'args->fd', 'args->filename', '0')}\n      ${ARGV}`),
    fileProbe('tracepoint:syscalls:sys_enter_openat', withPath('open', 'args->dfd', 'args->filename', 'args->flags'), `(args->flags & ${WRITE_FLAGS})`),
    fileProbe('tracepoint:syscalls:sys_enter_open', withPath('open', '-100', 'args->filename', 'args->flags'), `(args->flags & ${WRITE_FLAGS})`),
    fileProbe('tracepoint:syscalls:sys_enter_creat', withPath('open', '-100', 'args->pathname', String(0x241))),
    fileProbe('tracepoint:syscalls:sys_enter_openat2',
      `$how = (struct open_how *)uptr(args->how); $fl = $how->flags; if ($fl & ${WRITE_FLAGS}) {\n      ${withPath('open', 'args->dfd', 'args->filename', '$fl')}\n      }`),
    fileProbe('tracepoint:syscalls:sys_enter_renameat2,tracepoint:syscalls:sys_enter_renameat', withPath('rename', 'args->newdfd', 'args->newname', '0')),
    fileProbe('tracepoint:syscalls:sys_enter_rename', withPath('rename', '-100', 'args->newname', '0')),
    fileProbe('tracepoint:syscalls:sys_enter_unlinkat', withPath('unlink', 'args->dfd', 'args->pathname', '0')),
    fileProbe('tracepoint:syscalls:sys_enter_unlink', withPath('unlink', '-100', 'args->pathname', '0')),
    probe('tracepoint:syscalls:sys_enter_mount', `print(("mount", ${WHO}, str(args->dir_name), str(args->type)));`),
    probe('tracepoint:syscalls:sys_enter_fsopen', `print(("mount", ${WHO}, "", str(args->_fs_name)));`),
    probe('tracepoint:syscalls:sys_enter_move_mount', `print(("mount", ${WHO}, str(args->to_pathname), ""));`),
    probe('tracepoint:syscalls:sys_enter_ptrace', `print(("ptrace", ${WHO}, args->request, args->pid));`),
    probe('tracepoint:syscalls:sys_enter_init_module', `print(("module", ${WHO}, "init_module"));`),
    probe('tracepoint:syscalls:sys_enter_finit_module', `print(("module", ${WHO}, "finit_module"));`),
    probe('tracepoint:syscalls:sys_enter_delete_module', `print(("module", ${WHO}, "delete_module"));`),
    netProbe('tracepoint:syscalls:sys_enter_connect',
      '$s4 = (struct sockaddr_in *)uptr(args->uservaddr); $fam = $s4->sin_family;\n' +
      `    if ($fam == 2) { $p = $s4->sin_port; print(("connect", ${WHO}, 2, ($p >> 8) | (($p & 0xff) << 8), ntop(2, $s4->sin_addr.s_addr))); }\n` +
      `    if ($fam == 10) { $s6 = (struct sockaddr_in6 *)uptr(args->uservaddr); $q = $s6->sin6_port; print(("connect", ${WHO}, 10, ($q >> 8) | (($q & 0xff) << 8), ntop(10, $s6->sin6_addr.in6_u.u6_addr8))); }`),
    // Raw (type 3) and packet (family 17) sockets: sniffing and spoofing.
    netProbe('tracepoint:syscalls:sys_enter_socket', `print(("socket", ${WHO}, args->family, args->type));`, '((args->type & 0xf) == 3 || args->family == 17)'),
    probe('tracepoint:syscalls:sys_enter_setuid', `print(("priv", ${WHO}, "setuid", args->uid, -1));`),
    probe('tracepoint:syscalls:sys_enter_setgid', `print(("priv", ${WHO}, "setgid", args->gid, -1));`),
    probe('tracepoint:syscalls:sys_enter_setreuid', `print(("priv", ${WHO}, "setreuid", args->ruid, args->euid));`),
    probe('tracepoint:syscalls:sys_enter_setregid', `print(("priv", ${WHO}, "setregid", args->rgid, args->egid));`),
    probe('tracepoint:syscalls:sys_enter_setresuid', `print(("priv", ${WHO}, "setresuid", args->ruid, args->euid));`),
    probe('tracepoint:syscalls:sys_enter_setresgid', `print(("priv", ${WHO}, "setresgid", args->rgid, args->egid));`),
    probe('tracepoint:syscalls:sys_enter_capset', `print(("priv", ${WHO}, "capset", -1, -1));`),
    // -EPERM: the profile's errno for what seccomp refuses (and a missing capability's);
    // -EAGAIN from the fork family: the pids limit. Only these syscalls: raw_syscalls:sys_exit
    // runs on every syscall of the machine (+50 % on bench/guard-overhead here).
    probe(EXIT_WATCHED.map((n) => `tracepoint:syscalls:sys_exit_${n}`).join(','), `print(("denied", ${WHO}, args->__syscall_nr, args->ret));`,
      '(args->ret == -1 || args->ret == -11)'),
  ];
  return [
    ...probes.filter((p) => p !== ''),
    `tracepoint:sched:sched_process_fork / ${SECCOMP} / {\n  ${SCOPE}\n    @forks[$id] = count();\n  }\n}`,
    `profile:hz:${hz} / ${SECCOMP} / {\n  ${SCOPE}\n    @cpu[$id, pid, comm] = count(); @nvcsw[$id, pid] = max(curtask->nvcsw);\n  }\n}`,
    // A container's init leaving: its identity retires. Not scoped by seccomp: an init that never reached its workload exits too.
    `tracepoint:sched:sched_process_exit / pid == tid && (curtask->signal->flags & ${SIGNAL_UNKILLABLE}) / {\n  ${SCOPE}\n    print(("exit", $id, nsecs, pid));\n  }\n}`,
    'interval:s:1 {\n  print(@forks); clear(@forks);\n  print(@cpu); clear(@cpu);\n  print(@nvcsw); clear(@nvcsw);\n' +
    '  print(@budget); clear(@budget);\n  print(@fbudget); clear(@fbudget);\n  print(@nbudget); clear(@nbudget);\n  print(("tick", 0));\n}',
    '',
  ].join('\n');
}
