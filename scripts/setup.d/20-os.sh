#!/usr/bin/env bash
# The os level: runc and the host tools its driver uses, and the built-in images
# (busybox, node) in /var/lib/strata/images. Idempotent; quick when done (the
# images are rebuilt only when busybox, node or the CA bundle changed).
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/lib.sh

apt_ensure runc busybox-static iproute2 nftables e2fsprogs util-linux criu ca-certificates

modprobe overlay 2>/dev/null || true
modprobe loop 2>/dev/null || true

node --input-type=module -e "
  const { ImageStore } = await import('./dist/src/levels/os/images.js');
  const { ensureBuiltinImages } = await import('./dist/src/levels/os/builtin-images.js');
  const built = await ensureBuiltinImages(new ImageStore(process.env.STRATA_IMAGES_DIR ?? '/var/lib/strata/images'));
  if (built.length > 0) console.error('==> os level: built images ' + built.join(', '));
"
