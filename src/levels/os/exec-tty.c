/*
 * exec-tty: the receiving side of runc's --console-socket, for `exec --tty`.
 *
 *   exec-tty SOCKET PIDFILE COLS ROWS -- RUNC-ARGV...
 *
 * runc hands the master end of the pseudoterminal it made for the process over a
 * unix socket (SCM_RIGHTS); Node cannot receive file descriptors, so this small
 * helper does, and then relays:
 *   stdin          -> pty master   (an EOF on stdin types the terminal's EOF, ^D)
 *   pty master     -> stdout
 *   fd 3 (if open) <- control lines "COLS ROWS\n": resize the terminal (TIOCSWINSZ)
 * It runs `runc exec --detach` (a --console-socket needs it) as a child subreaper,
 * so the process, orphaned when runc exits, becomes our child: we wait for it and
 * exit with its exit code (128 + signal when killed). SIGTERM or SIGHUP to the
 * helper kills the process (SIGKILL). When runc itself fails, its exit code and
 * its stderr (inherited) are the result.
 *
 * Built by scripts/setup.d/25-os-exec-tty.sh with gcc; nothing but libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "exec-tty: %s: %s\n", what, strerror(errno));
  exit(125);
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int recv_fd(int conn) {
  char data[256];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  if (recvmsg(conn, &msg, MSG_CMSG_CLOEXEC) < 0) return -1;
  struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
  if (h == NULL || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) {
    errno = EPROTO;
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(h), sizeof fd);
  return fd;
}

static int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

static void resize(int master, unsigned cols, unsigned rows) {
  if (cols == 0 || rows == 0 || cols > 10000 || rows > 10000) return;
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  ioctl(master, TIOCSWINSZ, &ws);
}

/* Reads what the pty still holds without blocking; stops at EAGAIN or EIO (no writer left). */
static void drain(int master) {
  char buf[65536];
  int flags = fcntl(master, F_GETFL);
  fcntl(master, F_SETFL, flags | O_NONBLOCK);
  for (;;) {
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    if (write_all(1, buf, (size_t)n) < 0) return;
  }
}

int main(int argc, char **argv) {
  if (argc < 7 || strcmp(argv[5], "--") != 0) {
    fprintf(stderr, "usage: exec-tty SOCKET PIDFILE COLS ROWS -- RUNC-ARGV...\n");
    return 125;
  }
  const char *sock_path = argv[1];
  const char *pid_path = argv[2];
  unsigned cols = (unsigned)strtoul(argv[3], NULL, 10);
  unsigned rows = (unsigned)strtoul(argv[4], NULL, 10);
  char **runc_argv = &argv[6];

  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("PR_SET_CHILD_SUBREAPER");
  signal(SIGPIPE, SIG_IGN);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");

  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof addr.sun_path) {
    fprintf(stderr, "exec-tty: socket path too long\n");
    return 125;
  }
  strcpy(addr.sun_path, sock_path);
  unlink(sock_path);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(listener, 1) < 0) die("listen");

  pid_t runc = fork();
  if (runc < 0) die("fork");
  if (runc == 0) {
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    close(3);
    execvp(runc_argv[0], runc_argv);
    fprintf(stderr, "exec-tty: exec %s: %s\n", runc_argv[0], strerror(errno));
    _exit(127);
  }

  /* Wait for the console fd, or for runc to fail first. */
  int master = -1;
  int runc_status = -1;
  while (master < 0) {
    struct pollfd p[2] = {{.fd = listener, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) != sizeof si) continue;
      if (si.ssi_signo == SIGCHLD) {
        int status;
        if (waitpid(runc, &status, WNOHANG) == runc) {
          runc_status = status;
          /* runc may have passed the fd just before exiting: take it if it is there. */
          struct pollfd l = {.fd = listener, .events = POLLIN};
          if (poll(&l, 1, 0) <= 0) {
            unlink(sock_path);
            return exit_code(status) == 0 ? 125 : exit_code(status);
          }
        }
      } else {
        kill(runc, SIGKILL);
        unlink(sock_path);
        return 128 + (int)si.ssi_signo;
      }
    }
    if (p[0].revents & POLLIN) {
      int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (conn < 0) continue;
      master = recv_fd(conn);
      close(conn);
      if (master < 0) die("receiving the console fd");
    }
  }
  close(listener);
  unlink(sock_path);
  if (runc_status < 0 && waitpid(runc, &runc_status, 0) < 0) die("waitpid runc");
  if (exit_code(runc_status) != 0) return exit_code(runc_status);

  pid_t target = 0;
  FILE *pf = fopen(pid_path, "r");
  if (pf == NULL || fscanf(pf, "%d", &target) != 1 || target <= 0) die("reading the pid file");
  fclose(pf);
  resize(master, cols, rows);

  int stdin_open = 1;
  int control_open = fcntl(3, F_GETFD) >= 0;
  int master_open = 1;
  int exited = 0;
  int status = 0;
  char buf[65536];
  char line[64];
  size_t line_len = 0;
  while (!exited) {
    struct pollfd p[4] = {
        {.fd = master_open ? master : -1, .events = POLLIN},
        {.fd = stdin_open ? 0 : -1, .events = POLLIN},
        {.fd = control_open ? 3 : -1, .events = POLLIN},
        {.fd = sfd, .events = POLLIN},
    };
    if (poll(p, 4, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n > 0) {
        if (write_all(1, buf, (size_t)n) < 0) kill(target, SIGKILL);
      } else if (n == 0 || errno != EINTR) {
        master_open = 0; /* EIO: every slave fd is closed; the exit status follows */
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n > 0) {
        write_all(master, buf, (size_t)n);
      } else if (n == 0 || errno != EINTR) {
        stdin_open = 0;
        struct termios t;
        char eof = tcgetattr(master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
        write_all(master, &eof, 1);
      }
    }
    if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(3, line + line_len, sizeof line - 1 - line_len);
      if (n <= 0) {
        if (n == 0 || errno != EINTR) control_open = 0;
      } else {
        line_len += (size_t)n;
        char *nl;
        while ((nl = memchr(line, '\n', line_len)) != NULL) {
          *nl = '\0';
          unsigned c = 0, r = 0;
          if (sscanf(line, "%u %u", &c, &r) == 2) resize(master, c, r);
          size_t used = (size_t)(nl - line) + 1;
          memmove(line, nl + 1, line_len - used);
          line_len -= used;
        }
        if (line_len == sizeof line - 1) line_len = 0; /* an overlong line: drop it */
      }
    }
    if (p[3].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) != sizeof si) continue;
      if (si.ssi_signo != SIGCHLD) {
        kill(target, SIGKILL);
        continue;
      }
      /* Reap everything reparented to us; note the process's own end. */
      for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w <= 0) break;
        if (w == target) {
          status = st;
          exited = 1;
        }
      }
    }
  }
  if (master_open) drain(master);
  return exit_code(status);
}
