/*
 * The attacker's toolbox for the os breakout suite, compiled statically on the
 * host and run inside a tenant container. Each subcommand makes one real attempt
 * and prints one line: "OK ..." when the kernel let it through, "DENIED <errno>
 * <message>" when it refused. The tests decide what each answer means.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/if_ether.h>
#include <arpa/inet.h>
#include <sys/sysmacros.h>
#include <sys/prctl.h>

static int report(const char *what, long rc) {
  if (rc >= 0) printf("OK %s %ld\n", what, rc);
  else printf("DENIED %d %s (%s)\n", errno, strerror(errno), what);
  return 0;
}

static int child_fn(void *arg) { (void)arg; return 0; }

/* Runs argv[0] (a full path) as a child and waits for it: the child's parent is this process, as named now. */
static int spawn_wait(char **cmd) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) { execv(cmd[0], cmd); _exit(127); }
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  return pid > 0 ? WEXITSTATUS(status) : 127;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: probe ATTACK [ARG]\n"); return 2; }
  const char *a = argv[1];
  const char *arg = argc > 2 ? argv[2] : "";
  if (!strcmp(a, "mount-tmpfs")) return report(a, mount("none", "/tmp", "tmpfs", 0, ""));
  if (!strcmp(a, "mount-cgroup")) { mkdir("/tmp/cg", 0700); return report(a, mount("cgroup", "/tmp/cg", "cgroup", 0, "memory")); }
  if (!strcmp(a, "ptrace")) return report(a, ptrace(PTRACE_ATTACH, atoi(arg), 0, 0));
  if (!strcmp(a, "kexec")) return report(a, syscall(SYS_kexec_load, 0, 0, 0, 0));
  if (!strcmp(a, "bpf")) { union bpf_attr attr; memset(&attr, 0, sizeof attr); attr.map_type = BPF_MAP_TYPE_ARRAY; attr.key_size = 4; attr.value_size = 4; attr.max_entries = 1; return report(a, syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr)); }
  if (!strcmp(a, "keyctl")) return report(a, syscall(SYS_add_key, "user", "strata", "x", 1, -3 /* KEY_SPEC_SESSION_KEYRING */));
  if (!strcmp(a, "init-module")) return report(a, syscall(SYS_init_module, "\0", 1, ""));
  if (!strcmp(a, "finit-module")) { int fd = open("/bin/busybox", O_RDONLY); return report(a, syscall(SYS_finit_module, fd, "", 0)); }
  if (!strcmp(a, "perf")) { struct perf_event_attr pe; memset(&pe, 0, sizeof pe); pe.type = PERF_TYPE_SOFTWARE; pe.size = sizeof pe; pe.config = PERF_COUNT_SW_CPU_CLOCK; return report(a, syscall(SYS_perf_event_open, &pe, -1, 0, -1, 0)); }
  if (!strcmp(a, "unshare-user")) return report(a, unshare(CLONE_NEWUSER));
  if (!strcmp(a, "clone-newuser")) { static char stack[65536]; long pid = clone(child_fn, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, 0); if (pid > 0) waitpid(pid, 0, 0); return report(a, pid); }
  if (!strcmp(a, "regain-root")) { if (setgid(65534) || setuid(65534)) return report("drop to nobody", -1); return report(a, setuid(0)); }
  if (!strcmp(a, "setns")) { int fd = open(arg, O_RDONLY); if (fd < 0) return report("open ns", -1); return report(a, setns(fd, 0)); }
  if (!strcmp(a, "pivot-root")) return report(a, syscall(SYS_pivot_root, "/tmp", "/tmp"));
  if (!strcmp(a, "chroot")) return report(a, chroot("/tmp"));
  if (!strcmp(a, "swapon")) return report(a, syscall(SYS_swapon, "/data/swap", 0));
  if (!strcmp(a, "reboot")) return report(a, syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc /* power off */, 0));
  if (!strcmp(a, "open-by-handle")) { char buf[sizeof(struct file_handle) + 8]; struct file_handle *h = (void *)buf; h->handle_bytes = 8; h->handle_type = 1; memset(h->f_handle, 0, 8); h->f_handle[0] = 2; /* inode 2: a file system's root */ return report(a, syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY)); }
  if (!strcmp(a, "userfaultfd")) return report(a, syscall(SYS_userfaultfd, 0));
  if (!strcmp(a, "io-uring")) { char params[120]; memset(params, 0, sizeof params); return report(a, syscall(SYS_io_uring_setup, 4, params)); }
  if (!strcmp(a, "raw-socket")) return report(a, socket(AF_INET, SOCK_RAW, 1 /* ICMP */));
  if (!strcmp(a, "packet-socket")) return report(a, socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  if (!strcmp(a, "mknod-mem")) return report(a, mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
  if (!strcmp(a, "open")) return report(a, open(arg, O_RDONLY));
  if (!strcmp(a, "open-write")) return report(a, open(arg, O_WRONLY));
  if (!strcmp(a, "settime")) { struct timespec ts = {1, 0}; return report(a, clock_settime(CLOCK_REALTIME, &ts)); }
  if (!strcmp(a, "fd-escape")) {
    /* CVE-2024-21626 class: a directory fd, held by this process or the container's init, whose ".." leads out. */
    int found = 0;
    const char *owners[] = {"self", "1"};
    for (int o = 0; o < 2; o++) {
      for (int fd = 0; fd < 1024; fd++) {
        char path[64]; snprintf(path, sizeof path, "/proc/%s/fd/%d", owners[o], fd);
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) continue;
        char target[4096]; ssize_t n = readlink(path, target, sizeof target - 1); if (n < 0) n = 0; target[n] = 0;
        if (!strcmp(owners[o], "self") && !strcmp(target, "/proc/self/fd")) continue;
        printf("OK dirfd %s -> %s\n", path, target); found = 1;
      }
    }
    if (!found) printf("DENIED 0 no directory fd\n");
    return 0;
  }
  /* Look like someone else: rename this process (what `ps` and the parent name of its children show), then spawn. */
  if (!strcmp(a, "rename-spawn") && argc > 3) { report(a, prctl(PR_SET_NAME, argv[2], 0, 0, 0)); return spawn_wait(argv + 3); }
  /* Open an audit session of its own (its loginuid is unset: no privilege needed), then spawn under it. */
  if (!strcmp(a, "loginuid-spawn") && argc > 2) {
    int fd = open("/proc/self/loginuid", O_WRONLY);
    long rc = fd < 0 ? -1 : write(fd, "0", 1);
    if (fd >= 0) close(fd);
    char sid[32] = ""; int sfd = open("/proc/self/sessionid", O_RDONLY); if (sfd >= 0) { ssize_t n = read(sfd, sid, sizeof sid - 1); if (n > 0) sid[n] = 0; close(sfd); }
    report("loginuid", rc);
    printf("sessionid %s\n", sid);
    return spawn_wait(argv + 2);
  }
  if (!strcmp(a, "memhog")) {
    long mib = atol(arg);
    for (long i = 0; i < mib; i++) { char *p = malloc(1 << 20); if (!p) { printf("DENIED malloc at %ld MiB\n", i); return 0; } memset(p, 1, 1 << 20); }
    printf("OK allocated %ld MiB\n", mib); return 0;
  }
  if (!strcmp(a, "cpuhog")) { time_t end = time(0) + atoi(arg); volatile unsigned long x = 0; while (time(0) < end) x++; printf("OK %lu\n", (unsigned long)x); return 0; }
  fprintf(stderr, "unknown attack %s\n", a);
  return 2;
}
