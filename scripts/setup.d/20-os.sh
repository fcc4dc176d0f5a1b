#!/usr/bin/env bash
# The os level: runc and the host tools its driver uses, and the built-in images
# (busybox, node) in /var/lib/strata/images. Idempotent; quick when done (the
# images are rebuilt only when busybox, node or the CA bundle changed).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

PACKAGES=(runc busybox-static iproute2 nftables e2fsprogs util-linux criu ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "os level: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

modprobe overlay 2>/dev/null || true
modprobe loop 2>/dev/null || true

node --input-type=module -e "
  const { ImageStore } = await import('./dist/src/levels/os/images.js');
  const { ensureBuiltinImages } = await import('./dist/src/levels/os/builtin-images.js');
  const built = await ensureBuiltinImages(new ImageStore(process.env.STRATA_IMAGES_DIR ?? '/var/lib/strata/images'));
  if (built.length > 0) console.error('==> os level: built images ' + built.join(', '));
"
