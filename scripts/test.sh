#!/usr/bin/env bash
# The one test gate: installs what the suite needs (idempotently), then runs the format check,
# clippy with -D warnings, and the whole test suite. `.ci/run` calls exactly this.
#
# With CI=true a missing capability fails the run instead of skipping (see docs/testing.md).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/test.sh [--no-install] [-- <extra cargo test args>]

  --no-install   do not install system packages or toolchain components
  -h, --help     this help

Environment:
  CI=true            strict mode: tests that lack a capability fail instead of skipping
  CARGO_TARGET_DIR   build cache (CI default: /var/tmp/cortex-target, outside the clone)
  XDG_CACHE_HOME     where the MCP tests' Python venv lives (default ~/.cache/cortex-test-venv)
                     and the browser test's playwright-core (~/.cache/cortex-test-browser)
USAGE
}

install=1
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-install) install=0 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."

# Debian packages the suite uses. Keep sorted; one reason each.
packages=(
    busybox-static    # workload tests: a 2 MB rootfs for nspawn and Podman
    ca-certificates   # cargo fetches crates over TLS
    chromium          # status page test: headless Chromium driven by playwright-core (tests/browser)
    curl              # PXE tests: HTTP Range requests and a second TFTP client (tftp://)
    e2fsprogs         # image tests: mkfs.ext4 -L cortex-data for the appliance's persistent data disk
    iproute2          # `ip netns`: multi-host cluster tests, each node in its own namespace; `tc` shapes their link (tests/bench_net.rs)
    iperf3            # tests/bench_net.rs: the reference figure over the same shaped link as `cortex bench net`
    ipxe              # PXE tests: Debian's undionly.kpxe / ipxe.efi / snponly.efi, served by default
    nftables          # `nft`: partitions on the test bridge (network-namespace tests)
    openssh-client    # image tests: ssh-keygen + ssh into the appliance with a key given at boot
    ovmf              # image tests: UEFI firmware for booting the disk image in qemu
    podman            # Podman executor tests (REST API via `podman system service`)
    procps            # `kill`, `ps`: the harness signals and inspects cortex processes
    prometheus        # `promtool check metrics` on a coordinator's /metrics (tests/metrics.rs)
    python3-venv      # MCP tests: a venv for the official Python MCP SDK (`mcp` on PyPI)
    qemu-system-x86   # image tests: the appliance boots in qemu (TCG) and joins a coordinator
    qemu-utils        # image tests: qemu-img overlays over the disk image
    runc              # Podman's runtime here (crun refuses cgroup v1 hybrid)
    systemd-container # `systemd-nspawn`: the nspawn executor
    tftp-hpa          # PXE tests: an RFC 1350 TFTP client (`tftp`) fetches from `cortex pxe serve`
)

find_missing() {
    missing=()
    for p in "${packages[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
}

if [[ $install == 1 ]]; then
    find_missing
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "==> installing: ${missing[*]}"
        if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
        apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"; }
        $SUDO apt-get update -qq
        if ! apt_install "${missing[@]}"; then
            # Seen on a machine image with a backported qemu-utils (10.x): bookworm's
            # qemu-system-x86 (7.2) cannot sit beside it, and apt gives up on the whole set
            # ("held broken packages"). One at a time, apt replaces the backported package.
            echo "==> apt could not install these in one go; installing them one at a time"
            for p in "${missing[@]}"; do
                dpkg -s "$p" >/dev/null 2>&1 || apt_install "$p"
            done
        fi
        # An install may have removed a package that was here before (qemu-system-x86 removes
        # that backported qemu-utils, and with it qemu-img): check the whole list again.
        find_missing
        if [[ ${#missing[@]} -gt 0 ]]; then
            echo "==> installing what an earlier install removed: ${missing[*]}"
            apt_install "${missing[@]}"
        fi
    fi
    for c in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
            echo "==> rustup component add $c"
            rustup component add "$c"
        fi
    done
fi

# The MCP tests (tests/mcp.rs) drive the server with the official Python SDK, from a venv
# outside the clone; they find it through CORTEX_TEST_PYTHON.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/cortex-test-venv"
if [[ $install == 1 ]] && ! "$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null; then
    echo "==> python venv with the MCP SDK: $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'mcp>=2.3,<3'
fi
if [[ -x "$venv/bin/python" ]]; then
    export CORTEX_TEST_PYTHON="$venv/bin/python"
fi

# The status page's browser test (tests/status_page.rs) drives Debian's chromium with
# playwright-core from npm, installed outside the clone (never a downloaded browser). Node.js
# comes from apt only when the machine has none (Debian's is 18; playwright-core 1.56 needs 18+).
browser="${XDG_CACHE_HOME:-$HOME/.cache}/cortex-test-browser"
if [[ $install == 1 ]]; then
    if ! command -v npm >/dev/null; then
        echo "==> installing: nodejs npm"
        if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    if ! cmp -s tests/browser/package-lock.json "$browser/package-lock.json" \
        || [[ ! -f "$browser/node_modules/playwright-core/package.json" ]]; then
        echo "==> playwright-core for the browser test: $browser"
        mkdir -p "$browser"
        cp tests/browser/package.json tests/browser/package-lock.json "$browser/"
        (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    fi
fi
if [[ -d "$browser/node_modules" ]]; then
    export CORTEX_TEST_NODE_MODULES="$browser/node_modules"
fi

if [[ "${CI:-}" == "true" && -z "${CARGO_TARGET_DIR:-}" ]]; then
    export CARGO_TARGET_DIR=/var/tmp/cortex-target
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The appliance image for tests/image.rs (real qemu boots): built once here (release binary,
# mkosi 24.3 from bookworm-backports; see docs/image.md), reused by every boot test.
echo "==> appliance image: scripts/build-image.sh"
image_args=()
[[ $install == 1 ]] || image_args+=(--no-install)
scripts/build-image.sh "${image_args[@]}"
export CORTEX_IMAGE_DIR="$PWD/out"

echo "==> cargo test"
# --no-fail-fast: one failing binary must not hide the others' results.
set +e  # a failing run must still print the summary below
cargo test --workspace --locked --no-fail-fast "${extra[@]}" 2>&1 | tee /tmp/cortex-test.log
status=${PIPESTATUS[0]}
set -e

# One summary line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' /tmp/cortex-test.log
exit "$status"
