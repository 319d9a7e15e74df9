#!/usr/bin/env bash
# Boots the appliance disk image in qemu under UEFI (OVMF), serial console on this terminal.
# TCG unless the host has real KVM (/sys/module/kvm_intel or kvm_amd; see docs/image.md).
#   scripts/boot-vm.sh out/cortex-disk.raw [extra qemu args...]
# The disk is used through a throwaway overlay: the image file is never modified.
set -euo pipefail
disk="${1:-}"
[[ -n $disk && -f $disk ]] || { echo "usage: scripts/boot-vm.sh <disk.raw|disk.qcow2> [qemu args...]" >&2; exit 2; }
shift
fmt=raw; [[ $disk == *.qcow2 ]] && fmt=qcow2
code=/usr/share/OVMF/OVMF_CODE_4M.fd vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[[ -f $code ]] || { echo "OVMF not found at $code (apt-get install ovmf)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$vars" "$tmp/vars.fd"
qemu-img create -q -f qcow2 -F "$fmt" -b "$(realpath "$disk")" "$tmp/overlay.qcow2"
if [[ -e /sys/module/kvm_intel || -e /sys/module/kvm_amd ]]; then
    accel=(-accel kvm -cpu host)
else
    accel=(-accel tcg,thread=multi -cpu max)
fi
qemu-system-x86_64 "${accel[@]}" -machine q35 -smp 2 -m "${MEM:-2048}" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$code" \
    -drive if=pflash,format=raw,unit=1,file="$tmp/vars.fd" \
    -drive if=virtio,format=qcow2,file="$tmp/overlay.qcow2" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -nographic "$@"
