#!/usr/bin/env bash
# The guard's os interceptor: bpftrace (syscall tracepoints, BTF) and tracefs,
# which bpftrace needs to attach tracepoints. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/lib.sh

apt_ensure bpftrace
# bpftool: bench guard-overhead names the costliest probes with it (their programs' ids otherwise).
apt_ensure bpftool

# tracefs is not mounted on these machines; the daemon mounts it too when missing.
if [ -z "$(ls -A /sys/kernel/tracing 2>/dev/null)" ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || say "guard: could not mount tracefs (the os interceptor will say why at start)"
fi
