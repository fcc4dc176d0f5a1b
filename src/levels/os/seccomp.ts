/**
 * The seccomp profile of every `os` instance: an allowlist. Anything not listed
 * fails with EPERM, so a syscall added to a later kernel is denied until someone
 * decides otherwise.
 *
 * It starts from Docker's default profile and removes what a web service never
 * needs and an escape often does: mounting (also the new mount API), pivot_root,
 * ptrace and cross-process memory access, kexec, bpf, the kernel keyring,
 * module loading, perf_event_open, namespaces (unshare, setns, and clone with
 * any CLONE_NEW* flag), swap, reboot, open_by_handle_at (the "shocker" escape),
 * userfaultfd, io_uring, clock setting, chroot, syslog and acct. clone3 answers
 * ENOSYS, since its flags sit behind a pointer seccomp cannot read; libc then
 * falls back to clone, whose flags it can.
 *
 * Only the machine's native ABI is allowed: 32-bit compat and x32 syscalls fail
 * as a wrong architecture. Stricter than Docker (old filter bypasses went through
 * the compat entry points), and cheaper: runc compiles one filter, not five,
 * which halves the time `runc create` takes here (about 70 → 35 ms).
 * Names unknown to libseccomp are skipped by runc, so one list serves x86_64 and aarch64.
 */

import { StrataError } from '../../core/errors.js';

export interface SeccompArg { index: number; value: number; valueTwo?: number; op: string }
export interface SeccompRule { names: string[]; action: string; args?: SeccompArg[]; errnoRet?: number }
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;

/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** Syscalls no instance may make; the validator refuses a profile that allows any of them. */
export const DENIED_SYSCALLS = [
  'mount', 'umount', 'umount2', 'pivot_root', 'chroot', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'mount_setattr',
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd',
  'kexec_load', 'kexec_file_load', 'reboot', 'swapon', 'swapoff',
  'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key',
  'init_module', 'finit_module', 'delete_module', 'create_module', 'query_module', 'get_kernel_syms',
  'unshare', 'setns', 'open_by_handle_at', 'name_to_handle_at', 'userfaultfd',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'acct', 'syslog', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'stime',
  'iopl', 'ioperm', 'lookup_dcookie', 'quotactl', 'quotactl_fd', 'nfsservctl', 'uselib', 'vm86', 'vm86old', 'sysfs', '_sysctl', 'ustat',
  'fanotify_init', 'vhangup', 'personality', 'clone3',
] as const;

/** Allowed unconditionally. */
const ALLOWED = [
  'accept', 'accept4', 'access', 'alarm', 'arch_prctl', 'bind', 'brk', 'capget', 'capset', 'chdir', 'chmod', 'chown', 'chown32',
  'clock_getres', 'clock_getres_time64', 'clock_gettime', 'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'close', 'close_range',
  'connect', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait',
  'epoll_pwait2', 'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit', 'exit_group', 'faccessat', 'faccessat2',
  'fadvise64', 'fadvise64_64', 'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64',
  'fdatasync', 'fgetxattr', 'flistxattr', 'flock', 'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64',
  'fsync', 'ftruncate', 'ftruncate64', 'futex', 'futex_time64', 'futex_waitv', 'futimesat', 'get_mempolicy', 'get_robust_list', 'get_thread_area',
  'getcpu', 'getcwd', 'getdents', 'getdents64', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32', 'getgroups', 'getgroups32',
  'getitimer', 'getpeername', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrandom', 'getresgid', 'getresgid32', 'getresuid',
  'getresuid32', 'getrlimit', 'getrusage', 'getsid', 'getsockname', 'getsockopt', 'gettid', 'gettimeofday', 'getuid', 'getuid32', 'getxattr',
  'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'io_destroy', 'io_getevents', 'io_pgetevents',
  'io_pgetevents_time64', 'io_setup', 'io_submit', 'ioctl', 'ioprio_get', 'ioprio_set', 'ipc', 'kill', 'landlock_add_rule',
  'landlock_create_ruleset', 'landlock_restrict_self', 'lchown', 'lchown32', 'lgetxattr', 'link', 'linkat', 'listen', 'listxattr', 'llistxattr',
  '_llseek', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat', 'lstat64', 'madvise', 'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mkdir',
  'mkdirat', 'mknod', 'mknodat', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2', 'mprotect', 'mq_getsetattr', 'mq_notify', 'mq_open',
  'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64', 'mq_unlink', 'mremap', 'msgctl', 'msgget', 'msgrcv',
  'msgsnd', 'msync', 'munlock', 'munlockall', 'munmap', 'nanosleep', 'newfstatat', '_newselect', 'open', 'openat', 'openat2', 'pause',
  'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'poll', 'ppoll', 'ppoll_time64', 'prctl',
  'pread64', 'preadv', 'preadv2', 'prlimit64', 'process_mrelease', 'pselect6', 'pselect6_time64', 'pwrite64', 'pwritev', 'pwritev2', 'read',
  'readahead', 'readlink', 'readlinkat', 'readv', 'recv', 'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'remap_file_pages',
  'removexattr', 'rename', 'renameat', 'renameat2', 'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask',
  'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_get_priority_max',
  'sched_get_priority_min', 'sched_getaffinity', 'sched_getattr', 'sched_getparam', 'sched_getscheduler', 'sched_rr_get_interval',
  'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp',
  'select', 'semctl', 'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'send', 'sendfile', 'sendfile64', 'sendmmsg', 'sendmsg', 'sendto',
  'set_mempolicy', 'set_robust_list', 'set_thread_area', 'set_tid_address', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32', 'setgid',
  'setgid32', 'setgroups', 'setgroups32', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setregid32', 'setresgid', 'setresgid32',
  'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setrlimit', 'setsid', 'setsockopt', 'setuid', 'setuid32', 'setxattr', 'shmat',
  'shmctl', 'shmdt', 'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4', 'sigprocmask', 'sigreturn', 'socket', 'socketcall',
  'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64', 'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs',
  'sysinfo', 'tee', 'tgkill', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime',
  'timer_settime64', 'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime', 'timerfd_settime64', 'times', 'tkill',
  'truncate', 'truncate64', 'ugetrlimit', 'umask', 'uname', 'unlink', 'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork',
  'wait4', 'waitid', 'waitpid', 'write', 'writev',
] as const;

/** personality(2) values that only select an execution domain Linux programs use (PER_LINUX, PER_LINUX32, UNAME26, query). */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff] as const;

/** The native seccomp architecture of each Node.js `process.arch` Strata runs on. */
const NATIVE_ARCH: Readonly<Record<string, string>> = { x64: 'SCMP_ARCH_X86_64', arm64: 'SCMP_ARCH_AARCH64' };

/** The default profile for `arch` (default: this machine's); a fresh object each call so callers may not share mutations. */
export function defaultSeccompProfile(arch: string = process.arch): SeccompProfile {
  const native = NATIVE_ARCH[arch];
  if (!native) throw new StrataError('STRATA_ERR_CONFIG', `no seccomp profile for architecture '${arch}'`, { arch });
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: [native],
    syscalls: [
      { names: [...ALLOWED], action: 'SCMP_ACT_ALLOW' },
      // clone without any namespace flag (on x86_64 flags are the first argument).
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
      ...PERSONALITIES.map((value) => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] })),
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}
