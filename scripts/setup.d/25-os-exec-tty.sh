#!/usr/bin/env bash
# os level: builds the helper behind `exec --tty` — it receives the pty master from
# runc's --console-socket (SCM_RIGHTS, which Node cannot) and relays it
# (src/levels/os/exec-tty.c → dist/src/levels/os/exec-tty). Needs only gcc
# (build-essential); rebuilt when the source changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=src/levels/os/exec-tty.c
out=dist/src/levels/os/exec-tty
if [[ ! -x $out || $src -nt $out ]]; then
  mkdir -p "$(dirname "$out")"
  gcc -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
  chmod 0755 "$out.tmp"
  mv "$out.tmp" "$out"
  echo "==> os: built $out" >&2
fi
