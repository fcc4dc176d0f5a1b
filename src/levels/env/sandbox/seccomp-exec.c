/*
 * seccomp-exec: installs Strata's seccomp filter for isolate hosts, then execs
 * its arguments.   usage: seccomp-exec PROGRAM [ARGS...]
 *
 * The filter is a deny list (an isolate host is a Node.js process, and Node's
 * syscall set is broad and version-dependent): it refuses, with EPERM, the
 * system calls an escaped tenant would use to attack the kernel or other
 * processes — namespaces and mounts, ptrace and cross-process memory, BPF and
 * perf, kernel keyrings and modules, userfaultfd — and every socket that is not
 * AF_UNIX (a host talks to nothing but its supervisor). clone3 answers ENOSYS
 * so libc falls back to clone, whose namespace flags the filter can inspect.
 * Other architectures' and x32 syscalls are refused outright.
 *
 * Run it after no_new_privs is set (setpriv --no-new-privs): an unprivileged
 * process may then install the filter, and it survives exec.
 * Built by scripts/setup.d/30-env.sh; no libseccomp needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp-exec: unsupported architecture"
#endif

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LOAD_ARG0 BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]))
#define DENY_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: seccomp-exec PROGRAM [ARGS...]\n");
    return 2;
  }
  struct sock_filter filter[] = {
    /* Right architecture, no x32. */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
    RET(SECCOMP_RET_KILL_PROCESS),
    LOAD_NR,
#if defined(__x86_64__)
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
    RET(SECCOMP_RET_ERRNO | EPERM),
#endif
    /* socket(domain, ...): AF_UNIX only. */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 4),
    LOAD_ARG0,
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
    RET(SECCOMP_RET_ALLOW),
    RET(SECCOMP_RET_ERRNO | EACCES),
    /* clone(flags, ...): no new namespaces. */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4),
    LOAD_ARG0,
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1),
    RET(SECCOMP_RET_ERRNO | EPERM),
    RET(SECCOMP_RET_ALLOW),
    /* clone3: its flags sit behind a pointer; ENOSYS makes libc use clone. */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
    RET(SECCOMP_RET_ERRNO | ENOSYS),
    DENY_NR(SYS_ptrace),
    DENY_NR(SYS_process_vm_readv),
    DENY_NR(SYS_process_vm_writev),
    DENY_NR(SYS_kcmp),
    DENY_NR(SYS_pidfd_getfd),
    DENY_NR(SYS_mount),
    DENY_NR(SYS_umount2),
    DENY_NR(SYS_pivot_root),
    DENY_NR(SYS_chroot),
    DENY_NR(SYS_unshare),
    DENY_NR(SYS_setns),
    DENY_NR(SYS_open_tree),
    DENY_NR(SYS_move_mount),
    DENY_NR(SYS_fsopen),
    DENY_NR(SYS_fsmount),
    DENY_NR(SYS_fsconfig),
    DENY_NR(SYS_fspick),
    DENY_NR(SYS_mount_setattr),
    DENY_NR(SYS_bpf),
    DENY_NR(SYS_perf_event_open),
    DENY_NR(SYS_userfaultfd),
    DENY_NR(SYS_keyctl),
    DENY_NR(SYS_add_key),
    DENY_NR(SYS_request_key),
    DENY_NR(SYS_init_module),
    DENY_NR(SYS_finit_module),
    DENY_NR(SYS_delete_module),
    DENY_NR(SYS_kexec_load),
    DENY_NR(SYS_kexec_file_load),
    DENY_NR(SYS_reboot),
    DENY_NR(SYS_swapon),
    DENY_NR(SYS_swapoff),
    DENY_NR(SYS_syslog),
    DENY_NR(SYS_acct),
    DENY_NR(SYS_quotactl),
    DENY_NR(SYS_open_by_handle_at),
    DENY_NR(SYS_name_to_handle_at),
    DENY_NR(SYS_personality),
    DENY_NR(SYS_io_uring_setup),
#if defined(__x86_64__)
    DENY_NR(SYS_iopl),
    DENY_NR(SYS_ioperm),
#endif
    RET(SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { .len = (unsigned short)(sizeof(filter) / sizeof(filter[0])), .filter = filter };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("seccomp-exec: no_new_privs");
    return 126;
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("seccomp-exec: seccomp");
    return 126;
  }
  execvp(argv[1], argv + 1);
  perror("seccomp-exec: exec");
  return 127;
}
