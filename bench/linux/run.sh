#!/usr/bin/env bash
# Prepares the Linux peer for `cargo xtask bench`: Debian's armhf armmp kernel (vmlinuz) and
# an initramfs whose static /init (init.c) measures what Septa's bench app measures and prints
# `BENCH linux_<name> <value> <unit>` lines. xtask then boots them on the same QEMU CPU with
# the same icount setting, through the command-line builder Septa's boots use (qemu/).
# Installs what it needs (armhf package lists, a cross compiler, cpio) on first use; the files
# go to target/bench/linux/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$here/../../target/bench/linux"
mkdir -p "$work"
cd "$work"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
say() { echo "linux-peer: $*" >&2; }

if ! command -v arm-linux-gnueabihf-gcc >/dev/null || ! command -v cpio >/dev/null || ! command -v dtc >/dev/null; then
    say "installing the armhf cross compiler, cpio and dtc (apt-get)"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross cpio device-tree-compiler xz-utils >&2
fi
if ! ls linux-image-*-armmp_*.deb >/dev/null 2>&1; then
    if ! dpkg --print-foreign-architectures | grep -qx armhf; then
        say "adding the armhf architecture to apt (for apt-get download)"
        $sudo dpkg --add-architecture armhf
    fi
    # A mirror in mid-sync can fail one index; the armhf kernel package is in the main one.
    $sudo apt-get update -qq >&2 || say "apt-get update reported errors; trying anyway"
    package=$(apt-cache depends linux-image-armmp:armhf | awk '/Depends: linux-image-.*-armmp/ {print $2; exit}')
    package=${package%:armhf}
    [ -n "$package" ] || { say "no linux-image-*-armmp package found"; exit 1; }
    say "downloading $package (apt-get download)"
    apt-get download "$package:armhf" >&2
fi
if [ ! -f vmlinuz ]; then
    rm -rf extract && mkdir extract
    dpkg-deb -x linux-image-*-armmp_*.deb extract
    cp extract/boot/vmlinuz-* vmlinuz
fi
if [ ! -f initramfs.cpio ] || [ "$here/init.c" -nt initramfs.cpio ] || [ "$0" -nt initramfs.cpio ]; then
    say "building the static init"
    arm-linux-gnueabihf-gcc -static -O2 -o init "$here/init.c"
    rm -rf root && mkdir -p root/lib/modules && cp init root/init
    # The network card's drivers, which Debian builds as modules (init loads them).
    [ -d extract ] || { mkdir extract && dpkg-deb -x linux-image-*-armmp_*.deb extract; }
    for module in net/core/failover drivers/net/net_failover drivers/net/virtio_net drivers/virtio/virtio_mmio; do
        file=$(ls extract/lib/modules/*/kernel/$module.ko*)
        case "$file" in
            *.xz) xz -dc "$file" > "root/lib/modules/$(basename "$module").ko" ;;
            *) cp "$file" "root/lib/modules/$(basename "$module").ko" ;;
        esac
    done
    (cd root && find . | cpio -o -H newc --quiet) > initramfs.cpio
fi
if [ ! -f virt-pmu.dtb ] || [ "$0" -nt virt-pmu.dtb ]; then
    # QEMU's virt machine leaves its 32-bit PMU node empty, so Linux finds no PMU and perf
    # cannot count instructions. Describe it (Cortex-A7 PMU, PPI 7) in QEMU's own device
    # tree for the peer's machine (the options of LINUX_PEER_MACHINE in qemu/src/lib.rs).
    say "writing the device tree with the PMU"
    qemu-system-arm -nodefaults -M virt,dumpdtb=virt.dtb -cpu cortex-a7 -m 512M -display none >&2
    dtc -q -I dtb -O dts virt.dtb |
        sed 's/^\tpmu {$/\tpmu {\n\t\tcompatible = "arm,cortex-a7-pmu";\n\t\tinterrupts = <0x01 0x07 0x104>;/' |
        dtc -q -I dts -O dtb -o virt-pmu.dtb -
    grep -q cortex-a7-pmu virt-pmu.dtb || { say "could not describe the PMU"; exit 1; }
fi
say "kernel, initramfs and device tree ready in target/bench/linux"
