#!/usr/bin/env bash
# Builds the Cortex appliance image with mkosi 24.3: the release `cortex` binary (stripped),
# then `Format=uki` (UKI + kernel + whole-rootfs initrd, for netboot and -kernel/-initrd) and
# `Format=disk` (bootable GPT raw, UEFI; plus qcow2). Outputs in out/ (git-ignored):
#   out/vmlinuz  out/initrd  out/cortex.efi  out/cortex-disk.raw  out/cortex-disk.qcow2  out/SHA256SUMS
# See docs/image.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/build-image.sh [--no-install] [--skip-cargo] [--only uki|disk] [--check-reproducible]

  --no-install          do not install mkosi and the host tools (apt, bookworm-backports)
  --skip-cargo          use the already built target/release/cortex
  --only FORMAT         build only the netboot/UKI outputs (uki) or only the disk image (disk)
  --check-reproducible  build twice from a clean state with SOURCE_DATE_EPOCH from the commit
                        and compare the digests of every artifact; fails listing the ones that differ
USAGE
}

install=1 cargo=1 only="" check=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-install) install=0 ;;
        --skip-cargo) cargo=0 ;;
        --only) shift; only="${1:-}"; [[ $only == uki || $only == disk ]] || { echo "--only: uki or disk, got '$only'" >&2; exit 2; } ;;
        --check-reproducible) check=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
top=$PWD
SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo

if [[ $install == 1 ]]; then
    # mkosi 24.3 and systemd-repart/ukify tools from bookworm-backports (docs/image.md: why).
    if [[ ! -f /etc/apt/sources.list.d/backports.list ]] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
        $SUDO apt-get update -qq
    fi
    bpo=(mkosi systemd-boot systemd-boot-efi python3-pefile mtools dosfstools cpio zstd bubblewrap
         debian-archive-keyring uidmap e2fsprogs kmod)
    missing=()
    for p in "${bpo[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ! mkosi --version 2>/dev/null | grep -q '^mkosi 24\.'; then missing+=(mkosi); fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "==> installing from bookworm-backports: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports "${bpo[@]}"
    fi
    # qemu-img for the qcow2 (whichever suite's qemu the machine already has).
    if ! command -v qemu-img >/dev/null; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-utils
    fi
fi
mkosi --version | grep -q '^mkosi 24\.' || { echo "mkosi 24.x is required (got: $(mkosi --version 2>&1))" >&2; exit 1; }

# SOURCE_DATE_EPOCH: the commit's time, so two builds of one commit agree.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

target="${CARGO_TARGET_DIR:-$top/target}"
build_binary() {
    if [[ $cargo == 1 ]]; then
        echo "==> cargo build --release --bin cortex"
        # Panic locations in the binary carry source paths: the clone's, cargo's registry
        # (under $CARGO_HOME) and generated code under the target dir. Mapped to fixed
        # prefixes, the binary does not depend on where the clone or $HOME is.
        local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
        RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$top=/cortex --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$target=/target" \
            cargo build --release --locked --bin cortex
    fi
    [[ -x $target/release/cortex ]] || { echo "no $target/release/cortex (drop --skip-cargo)" >&2; exit 1; }
    rm -rf out/stage && mkdir -p out/stage/usr/local/bin
    strip --strip-all -o out/stage/usr/local/bin/cortex "$target/release/cortex"
    touch -d "@$SOURCE_DATE_EPOCH" out/stage/usr/local/bin/cortex
}

one_build() {
    local t0 t1
    mkdir -p out/mkosi
    rm -f out/SHA256SUMS
    if [[ $only != disk ]]; then
        rm -f out/vmlinuz out/initrd out/cortex.efi out/mkosi/cortex*
        t0=$(date +%s.%N)
        echo "==> mkosi --format=uki"
        mkosi --force --format=uki --output=cortex build
        t1=$(date +%s.%N)
        echo "uki build: $(echo "$t1 - $t0" | bc) s"
        mv out/mkosi/cortex.efi out/cortex.efi
        mv out/mkosi/cortex.vmlinuz out/vmlinuz
        mv out/mkosi/cortex.initrd out/initrd
    fi
    if [[ $only != uki ]]; then
        rm -f out/cortex-disk.raw out/cortex-disk.qcow2 out/mkosi/cortex-disk*
        t0=$(date +%s.%N)
        echo "==> mkosi --format=disk"
        mkosi --force --format=disk --compress-output=no --kernel-modules-initrd=yes \
            --kernel-command-line=root=PARTLABEL=root-x86-64 --output=cortex-disk build
        t1=$(date +%s.%N)
        echo "disk build: $(echo "$t1 - $t0" | bc) s"
        mv out/mkosi/cortex-disk.raw out/cortex-disk.raw
        qemu-img convert -f raw -O qcow2 out/cortex-disk.raw out/cortex-disk.qcow2
    fi
    # Digests of what this run built (with --only, not of older artifacts left in out/).
    local built=()
    [[ $only == disk ]] || built+=(vmlinuz initrd cortex.efi)
    [[ $only == uki ]] || built+=(cortex-disk.raw)
    (cd out && sha256sum "${built[@]}" > SHA256SUMS)
    ls -l out/
}

build_binary
if [[ $check == 0 ]]; then
    one_build
    exit 0
fi

echo "==> reproducibility check, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
rm -rf mkosi.cache out/mkosi
only_was=$only
one_build
# The first build's artifacts stay in out/first/ to be compared when they differ.
rm -rf out/first && mkdir -p out/first
(cd out && mv $(awk '{print $2}' SHA256SUMS) SHA256SUMS first/)
rm -rf mkosi.cache out/mkosi
only=$only_was
one_build
if diff -u out/first/SHA256SUMS out/SHA256SUMS; then
    echo "reproducible: every artifact is bit-identical over two clean builds"
    rm -rf out/first
else
    echo "NOT reproducible; differing artifacts (the first build's are in out/first/):" >&2
    diff out/first/SHA256SUMS out/SHA256SUMS | sed -n 's/^> [0-9a-f]*  /  /p' >&2
    exit 1
fi
