#!/usr/bin/env bash
# Builds one guest image for the vm/emu levels from an unpacked Debian kernel
# package and a static busybox:
#   build-initramfs.sh ARCH KERNEL_ROOT BUSYBOX OUT_DIR
# writes OUT_DIR/vmlinuz (the Debian kernel as shipped), OUT_DIR/initramfs.cpio.gz
# (busybox, ./init, strata-poweroff, strata-identity, the modules the kernel lacks
# built in, in load order, acpid's power-button action and a default /www) and OUT_DIR/kernel.release. For x86_64
# it also writes OUT_DIR/vmlinux, the kernel uncompressed: QEMU boots that ELF
# through its PVH entry, which skips the in-guest decompression (seconds under
# TCG; a probe boot goes from ~9 s to ~2.5 s wall here).
set -euo pipefail
arch=$1 kroot=$2 busybox=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
kver=$(ls "$kroot/lib/modules" | head -n1)
moddir=$kroot/lib/modules/$kver
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc/acpi/PWRF,proc,sys,dev,tmp,run,www,data,lib/modules}
install -m 0755 "$busybox" "$root/bin/busybox"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/strata-poweroff" "$root/bin/strata-poweroff"
install -m 0755 "$here/strata-identity" "$root/bin/strata-identity"
# busybox acpid maps the power button (KEY_POWER) to the action PWRF/00000080.
printf '#!/bin/busybox sh\nexec /bin/strata-poweroff\n' > "$root/etc/acpi/PWRF/00000080"
chmod 0755 "$root/etc/acpi/PWRF/00000080"
printf 'strata vm guest (%s)\n' "$arch" > "$root/www/index.html"

# Modules in dependency order; a module built into the kernel needs nothing.
order=()
add() {
  local m=${1//-/_} file dep
  for x in "${order[@]}"; do [[ $x == "$m" ]] && return; done
  file=$(find "$moddir" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) | head -n1)
  if [[ -z $file ]]; then
    grep -qE "/(${m}|${m//_/-})\.ko$" "$moddir/modules.builtin" && return
    echo "module $m: neither a module nor built in" >&2; exit 1
  fi
  for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add "$dep"; done
  case $file in
    *.xz) xz -dc "$file" > "$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$file" > "$root/lib/modules/$m.ko" ;;
    *) cp "$file" "$root/lib/modules/$m.ko" ;;
  esac
  order+=("$m")
}
# virtio devices (NIC, disk), ext4 for /data, and the power button as an input
# event for acpid: ACPI button on x86_64 microvm, gpio-keys on aarch64 virt.
for m in virtio_mmio virtio_net virtio_blk crc32c_generic ext4 button gpio_keys evdev qemu_fw_cfg; do add "$m"; done
printf '%s\n' "${order[@]}" > "$root/etc/modules"

(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$out/initramfs.cpio.gz.new"
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz.new"
if [[ $arch == x86_64 ]]; then
  # The bzImage carries the kernel xz-compressed (Debian's choice); find the
  # stream by its magic and unpack it, as the kernel's extract-vmlinux does.
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$out/vmlinuz.new" | head -n1 | cut -d: -f1)
  tail -c +"$((off + 1))" "$out/vmlinuz.new" | xz -dcq > "$out/vmlinux.new" 2>/dev/null || true
  [[ "$(head -c4 "$out/vmlinux.new" | od -An -c | tr -d ' ')" == '177ELF' ]] || { echo "could not extract vmlinux" >&2; exit 1; }
  mv "$out/vmlinux.new" "$out/vmlinux"
fi
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
mv "$out/vmlinuz.new" "$out/vmlinuz"
echo "$kver" > "$out/kernel.release"
echo "built $arch image: kernel $kver, modules: ${order[*]:-none}" >&2
