#!/usr/bin/env bash
# env level: builds the seccomp helper the isolate hosts run under
# (src/levels/env/sandbox/seccomp-exec.c → dist/src/levels/env/sandbox/seccomp-exec).
# Needs only gcc and the kernel headers (build-essential); rebuilt when the source changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=src/levels/env/sandbox/seccomp-exec.c
out=dist/src/levels/env/sandbox/seccomp-exec
if [[ ! -x $out || $src -nt $out ]]; then
  mkdir -p "$(dirname "$out")"
  gcc -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
  chmod 0755 "$out.tmp"
  mv "$out.tmp" "$out"
  echo "==> env: built $out" >&2
fi
