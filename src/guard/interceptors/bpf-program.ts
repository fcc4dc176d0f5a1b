/**
 * The bpftrace program of the os interceptor, generated here because bpftrace
 * 0.17 (Debian 12) has no macros and every probe starts with the same scoping.
 *
 * Scoping, in the kernel: a probe does nothing unless the current task is under
 * a seccomp filter and lives in a pid namespace below the host's (`level > 0`),
 * so the host — Strata itself, bpftrace, the shell of the operator — costs one
 * or three pointer reads per probe hit and emits nothing. Each event names the task's level-1 pid namespace (the
 * container's, even when the tenant made a nested one with unshare), by its
 * inode number; user space maps that to an instance and drops what maps to none.
 *
 * Output: `-f json`, one `print((tag, …))` tuple per event, so bpftrace does
 * the JSON escaping of attacker-controlled strings (paths, comm, argv); exec is
 * followed by the `join` record of its argv, from the same CPU, in order.
 *
 * Floods: each namespace has a budget of per-event records per second; past it
 * events are only counted in the kernel (`@budget`, `@fbudget`, `@nbudget`: the count of
 * the second, printed and reset once a second; what exceeds the budget was not
 * sent), so a tenant cannot bury the guard in records, and nothing is lost unseen.
 * Fork counts and CPU samples (per process) are aggregated in the kernel (`@forks`, `@cpu`)
 * and printed once a second.
 *
 * Seccomp denials: a syscall the seccomp filter refuses never reaches the
 * sys_enter tracepoints, but does pass its sys_exit one with -EPERM (the
 * profile's errno), so denials are caught there, by number.
 */
import { DENIED_SYSCALLS } from '../../levels/os/seccomp.js';

/** Per-event records per pid namespace, class and second, by default. */
export const DEFAULT_BUDGET = 500;

/** Defaults of the generated program. */
export interface BpfProgramOptions {
  /**
   * Per-event records per pid namespace per second, for file writes and for the
   * rest each, before only counting. Default 500: what user space spends per
   * record (JSON out of bpftrace, parsing, the pipeline) is what a syscall-heavy
   * tenant pays in shared CPU (bench/guard-overhead).
   */
  budgetPerSecond?: number;
  /** CPU sampling frequency per core (Hz). Default 99: at 49 a half-core hog reads anywhere from 0.7 to 1.1 of its share. */
  sampleHz?: number;
  /**
   * Whether this kernel has a tracepoint (`syscalls:sys_enter_mount`); probes on
   * missing ones are left out (this machine's kernel, built without modules, has
   * no init_module tracepoints). Default: all present.
   */
  has?: (tracepoint: string) => boolean;
}

/**
 * The predicate of every probe: a task under a seccomp filter (mode 2). With
 * TENANT below, a container's workload; the runtime's own set-up inside the
 * new namespaces (runc init's mounts, before it installs the filter and
 * execs) is not the tenant. One pointer read, so most host tasks stop here.
 */
const SECCOMP = 'curtask->seccomp.mode == 2';

/**
 * Opens the block of a task in a pid namespace below the host's, with `$n` the
 * inode of its level-1 pid namespace (the container's, even when the tenant
 * made a nested one with unshare). Written out rather than `unroll`ed, so
 * each field is read once: each `->` is a bpf_probe_read_kernel, and this
 * runs on every hit of every probe (a task at level 1 costs four reads here,
 * against nine when the predicate tested the level and the body walked again).
 */
const TENANT = '$pns = curtask->nsproxy->pid_ns_for_children; $lvl = $pns->level;\n  if ($lvl > 0) {\n' +
  '    $ns = $pns; if ($lvl > 1) { $ns = $ns->parent; if ($lvl > 2) { $ns = $ns->parent; if ($lvl > 3) { $ns = $ns->parent; } } }\n' +
  '    $n = $ns->ns.inum;';

/**
 * Syscalls whose refusal is reported: every one the seccomp profile always
 * refuses (a sys_exit tracepoint still fires for those; sys_enter does not),
 * the fork family (-EAGAIN at the pids limit), device nodes and privilege
 * changes (-EPERM for want of a capability).
 */
const EXIT_WATCHED = [...new Set([
  ...DENIED_SYSCALLS, 'clone', 'clone3', 'fork', 'vfork', 'mknod', 'mknodat',
  'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setgroups', 'capset',
])];

/** O_WRONLY | O_RDWR | O_CREAT | O_TRUNC. */
const WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200;

/** The generated bpftrace source. */
export function osProgram(opts: BpfProgramOptions = {}): string {
  const budget = opts.budgetPerSecond ?? DEFAULT_BUDGET;
  const hz = opts.sampleHz ?? 99;
  /** One probe: scoped, budgeted; `emit` is the body that prints. */
  const has = opts.has ?? (() => true);
  /** `budgetMap`: file writes have a budget of their own, so a flood of them cannot hide a mount or a denial. */
  const probe = (attach: string, emit: string, extraPredicate = '', budgetMap = '@budget'): string => {
    const points = attach.split(',').filter((p) => has(p.replace(/^tracepoint:/, '')));
    if (points.length === 0) return '';
    // The cheap test on the call's own arguments first: most hits stop there, before any pointer chase.
    // One lookup and one update of the budget map per hit: the count itself says how many went over
    // (user space subtracts the budget), so a flood costs no second map.
    return `${points.join(',')} / ${extraPredicate ? `${extraPredicate} && ` : ''}${SECCOMP} / {\n  ${TENANT}\n` +
      `    $c = ${budgetMap}[$n]; ${budgetMap}[$n] = $c + 1;\n    if ($c < ${budget}) {\n      ${emit}\n    }\n  }\n}`;
  };
  const fileProbe = (attach: string, emit: string, extraPredicate = ''): string => probe(attach, emit, extraPredicate, '@fbudget');
  /** Connections and sockets too (a busy web app makes many): a flood of them cannot hide an exec either. */
  const netProbe = (attach: string, emit: string, extraPredicate = ''): string => probe(attach, emit, extraPredicate, '@nbudget');
  const who = '$n, pid, uid, comm';
  const probes = [
    probe('tracepoint:syscalls:sys_enter_execve,tracepoint:syscalls:sys_enter_execveat',
      `print(("exec", ${who}, curtask->real_parent->tgid, curtask->real_parent->comm, str(args->filename))); join(args->argv);`),
    fileProbe('tracepoint:syscalls:sys_enter_openat', `print(("open", ${who}, args->dfd, args->flags, str(args->filename), curtask->real_parent->tgid));`, `(args->flags & ${WRITE_FLAGS})`),
    fileProbe('tracepoint:syscalls:sys_enter_open', `print(("open", ${who}, -100, args->flags, str(args->filename), curtask->real_parent->tgid));`, `(args->flags & ${WRITE_FLAGS})`),
    fileProbe('tracepoint:syscalls:sys_enter_creat', `print(("open", ${who}, -100, ${0x241}, str(args->pathname), curtask->real_parent->tgid));`),
    fileProbe('tracepoint:syscalls:sys_enter_openat2',
      `$how = (struct open_how *)uptr(args->how); $fl = $how->flags; if ($fl & ${WRITE_FLAGS}) { print(("open", ${who}, args->dfd, $fl, str(args->filename), curtask->real_parent->tgid)); }`),
    fileProbe('tracepoint:syscalls:sys_enter_renameat2,tracepoint:syscalls:sys_enter_renameat', `print(("rename", ${who}, args->newdfd, 0, str(args->newname), curtask->real_parent->tgid));`),
    fileProbe('tracepoint:syscalls:sys_enter_rename', `print(("rename", ${who}, -100, 0, str(args->newname), curtask->real_parent->tgid));`),
    fileProbe('tracepoint:syscalls:sys_enter_unlinkat', `print(("unlink", ${who}, args->dfd, 0, str(args->pathname), curtask->real_parent->tgid));`),
    fileProbe('tracepoint:syscalls:sys_enter_unlink', `print(("unlink", ${who}, -100, 0, str(args->pathname), curtask->real_parent->tgid));`),
    probe('tracepoint:syscalls:sys_enter_mount', `print(("mount", ${who}, str(args->dir_name), str(args->type)));`),
    probe('tracepoint:syscalls:sys_enter_fsopen', `print(("mount", ${who}, "", str(args->_fs_name)));`),
    probe('tracepoint:syscalls:sys_enter_move_mount', `print(("mount", ${who}, str(args->to_pathname), ""));`),
    probe('tracepoint:syscalls:sys_enter_ptrace', `print(("ptrace", ${who}, args->request, args->pid));`),
    probe('tracepoint:syscalls:sys_enter_init_module', `print(("module", ${who}, "init_module"));`),
    probe('tracepoint:syscalls:sys_enter_finit_module', `print(("module", ${who}, "finit_module"));`),
    probe('tracepoint:syscalls:sys_enter_delete_module', `print(("module", ${who}, "delete_module"));`),
    netProbe('tracepoint:syscalls:sys_enter_connect',
      '$s4 = (struct sockaddr_in *)uptr(args->uservaddr); $fam = $s4->sin_family;\n' +
      `    if ($fam == 2) { $p = $s4->sin_port; print(("connect", ${who}, 2, ($p >> 8) | (($p & 0xff) << 8), ntop(2, $s4->sin_addr.s_addr))); }\n` +
      `    if ($fam == 10) { $s6 = (struct sockaddr_in6 *)uptr(args->uservaddr); $q = $s6->sin6_port; print(("connect", ${who}, 10, ($q >> 8) | (($q & 0xff) << 8), ntop(10, $s6->sin6_addr.in6_u.u6_addr8))); }`),
    // Raw (type 3) and packet (family 17) sockets: sniffing and spoofing.
    netProbe('tracepoint:syscalls:sys_enter_socket', `print(("socket", ${who}, args->family, args->type));`, '((args->type & 0xf) == 3 || args->family == 17)'),
    probe('tracepoint:syscalls:sys_enter_setuid', `print(("priv", ${who}, "setuid", args->uid, -1));`),
    probe('tracepoint:syscalls:sys_enter_setgid', `print(("priv", ${who}, "setgid", args->gid, -1));`),
    probe('tracepoint:syscalls:sys_enter_setreuid', `print(("priv", ${who}, "setreuid", args->ruid, args->euid));`),
    probe('tracepoint:syscalls:sys_enter_setregid', `print(("priv", ${who}, "setregid", args->rgid, args->egid));`),
    probe('tracepoint:syscalls:sys_enter_setresuid', `print(("priv", ${who}, "setresuid", args->ruid, args->euid));`),
    probe('tracepoint:syscalls:sys_enter_setresgid', `print(("priv", ${who}, "setresgid", args->rgid, args->egid));`),
    probe('tracepoint:syscalls:sys_enter_capset', `print(("priv", ${who}, "capset", -1, -1));`),
    // -EPERM: the profile's errno for what seccomp refuses (and what a missing capability gets);
    // -EAGAIN from the fork family: the pids limit reached. Only the syscalls worth it: a probe on
    // raw_syscalls:sys_exit runs on every syscall of the machine (+50 % on bench/guard-overhead here),
    // so a call this kernel has no tracepoint for (compiled out: modules, kexec) goes unseen.
    probe(EXIT_WATCHED.map((n) => `tracepoint:syscalls:sys_exit_${n}`).join(','), `print(("denied", ${who}, args->__syscall_nr, args->ret));`,
      '(args->ret == -1 || args->ret == -11)'),
  ];
  return [
    ...probes.filter((p) => p !== ''),
    `tracepoint:sched:sched_process_fork / ${SECCOMP} / {\n  ${TENANT}\n    @forks[$n] = count();\n  }\n}`,
    `profile:hz:${hz} / ${SECCOMP} / {\n  ${TENANT}\n    @cpu[$n, pid] = count();\n  }\n}`,
    'interval:s:1 {\n  print(@forks); clear(@forks);\n  print(@cpu); clear(@cpu);\n  print(@budget); clear(@budget);\n  print(@fbudget); clear(@fbudget);\n  print(@nbudget); clear(@nbudget);\n  print(("tick", 0));\n}',
    '',
  ].join('\n');
}
