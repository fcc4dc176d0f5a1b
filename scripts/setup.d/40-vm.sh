#!/usr/bin/env bash
# 40-vm: what the `vm` and `emu` levels need — QEMU from Debian, the Debian guest
# kernels (host arch amd64 and foreign arch arm64, taken from their .deb files
# without installing them) and one busybox initramfs per architecture, built by
# images/vm/build-initramfs.sh into /var/lib/strata/images/vm/<arch>/.
# Idempotent and quick when done: each part checks its stamp before it acts.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m==>\033[0m [vm] %s\n' "$*" >&2; }

IMAGES=/var/lib/strata/images/vm
RECIPES=$PWD/images/vm
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive

source scripts/lib.sh
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# 1. Host packages: QEMU for both guest architectures, qemu-img, busybox for the
#    guests, cpio to pack the initramfs, kmod's modinfo to resolve module order.
APT_UPDATED=0
apt_ensure qemu-system-x86 qemu-system-arm qemu-utils busybox-static cpio kmod e2fsprogs
updated=$APT_UPDATED

# 2. The unprivileged user QEMU drops to (-runas).
id strata-vm >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin strata-vm

# 3. Guest kernels and busybox for each architecture, then the initramfs images.
#    Debian names the kernel package after its ABI (linux-image-6.1.0-NN-ARCH);
#    the amd64 meta package tells the current ABI, the arm64 one shares it.
build() { # arch deb-arch
  local arch=$1 darch=$2 out=$IMAGES/$1
  local stamp=$out/.built recipe_sum
  recipe_sum=$(cat "$RECIPES"/init "$RECIPES"/strata-poweroff "$RECIPES"/strata-identity "$RECIPES"/build-initramfs.sh | sha256sum | cut -d' ' -f1)
  if [[ -f $stamp && "$(cat "$stamp")" == "$recipe_sum" && -f $out/vmlinuz && -f $out/initramfs.cpio.gz ]]; then return; fi
  say "building the $arch guest image"
  if [[ $darch != "$(dpkg --print-architecture)" ]]; then
    dpkg --print-foreign-architectures | grep -qx "$darch" || { dpkg --add-architecture "$darch"; updated=0; }
    if ((updated == 0)) || ! apt-cache show "busybox-static:$darch" >/dev/null 2>&1; then apt-get update -qq; updated=1; fi
  fi
  local abi work
  abi=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); sub("-amd64$","",$2); print $2; exit}')
  work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  (cd "$work" && apt-get -o APT::Sandbox::User=root download -qq "linux-image-$abi-$darch:$darch" "busybox-static:$darch" >/dev/null)
  mkdir -p "$work/kernel" "$work/busybox" "$out"
  dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
  bash "$RECIPES/build-initramfs.sh" "$arch" "$work/kernel" "$work/busybox/bin/busybox" "$out"
  echo "$recipe_sum" > "$stamp"
}
build x86_64 amd64
build aarch64 arm64

# 4. The shared base disk every instance's qcow2 overlay sits on: a small ext4
#    (arch-independent) with a default docroot; the driver grows each overlay's
#    filesystem to the instance's diskMiB.
base_disk() {
  local out=$IMAGES/disk work
  [[ -f $out/base.qcow2 ]] && return
  say "building the base disk"
  work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/root/www" "$out"
  printf 'strata vm disk\n' > "$work/root/www/index.html"
  truncate -s 32M "$work/base.raw"
  mkfs.ext4 -q -F -L strata-data -b 4096 -m 0 -d "$work/root" "$work/base.raw"
  qemu-img convert -q -f raw -O qcow2 "$work/base.raw" "$out/base.qcow2.new"
  mv "$out/base.qcow2.new" "$out/base.qcow2"
}
base_disk
chmod -R a+rX "$IMAGES"
