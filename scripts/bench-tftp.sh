#!/usr/bin/env bash
# TFTP throughput: `cortex pxe serve` against dnsmasq's built-in TFTP server, serving the same
# file in the same run to the same client (curl, blksize 1468), everything on 127.0.0.1.
# Runs alternate between the servers so drift on a shared VM hits both alike; each file is
# checked byte-identical once. Not a test: it measures. Results go in docs/benchmarks.md.
#
# dnsmasq's TFTP listens on port 69 only, so this needs root and a free 127.0.0.1:69.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench-tftp.sh [--binary PATH] [--size MB | --file PATH] [--runs N] [--blksize B]

  --binary PATH   the cortex binary (default: target/release/cortex; build it first with
                  `cargo build --release -p cortex`)
  --size MB       size of the random test file (default 100)
  --file PATH     serve this file instead (e.g. a real initrd)
  --runs N        transfers per server (default 5); the median is reported
  --blksize B     TFTP block size the client asks for (default 1468)
USAGE
}

binary=target/release/cortex
size=100
file=
runs=5
blksize=1468
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary=$2; shift ;;
        --size) size=$2; shift ;;
        --file) file=$2; shift ;;
        --runs) runs=$2; shift ;;
        --blksize) blksize=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
[[ -x $binary ]] || { echo "no cortex binary at $binary (cargo build --release -p cortex)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "needs root: dnsmasq's TFTP server only listens on port 69" >&2; exit 1; }
need=()
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v curl >/dev/null || need+=(curl)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "==> installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

work=$(mktemp -d /tmp/bench-tftp.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/root"
if [[ -n $file ]]; then
    cp "$file" "$work/root/initrd"
else
    head -c "$((size * 1024 * 1024))" /dev/urandom >"$work/root/initrd"
fi
bytes=$(stat -c %s "$work/root/initrd")

# cortex pxe serve on an OS-picked port; its JSON line says which.
CORTEX_LOG=warn "$binary" -o json pxe serve --artifacts "$work/root" --join 127.0.0.1:7071 \
    --http-addr 127.0.0.1:0 --tftp-addr 127.0.0.1:0 >"$work/cortex.json" 2>"$work/cortex.log" &
pids+=($!)

# dnsmasq: TFTP only (--port=0 turns DNS off), default multi-port mode, in the foreground.
dnsmasq --keep-in-foreground --port=0 --enable-tftp --tftp-root="$work/root" \
    --listen-address=127.0.0.1 --bind-interfaces --user=root --group=root \
    --pid-file="$work/dnsmasq.pid" --log-facility="$work/dnsmasq.log" --quiet-tftp \
    --conf-file=/dev/null &
pids+=($!)

for _ in $(seq 100); do [[ -s $work/cortex.json ]] && break; sleep 0.1; done
cortex_port=$(sed -n 's/.*"tftp_addr":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/cortex.json")
[[ -n $cortex_port ]] || { echo "cortex pxe serve did not start:" >&2; cat "$work/cortex.log" >&2; exit 1; }
sleep 0.5

fetch() { # port out -> "seconds"
    curl -sS --tftp-blksize "$blksize" --max-time 600 -o "$2" -w '%{time_total}' "tftp://127.0.0.1:$1/initrd"
}

for server in "cortex:$cortex_port" "dnsmasq:69"; do
    name=${server%%:*} port=${server#*:}
    fetch "$port" "$work/check" >/dev/null
    cmp -s "$work/check" "$work/root/initrd" || { echo "$name served different bytes" >&2; exit 1; }
done
rm -f "$work/check"

declare -A times
for i in $(seq "$runs"); do
    for server in "cortex:$cortex_port" "dnsmasq:69"; do
        name=${server%%:*} port=${server#*:}
        t=$(fetch "$port" /dev/null)
        times[$name]+="$t "
        printf '  run %d  %-8s %6.2f s  %7.1f MB/s\n' "$i" "$name" "$t" "$(awk -v b="$bytes" -v t="$t" 'BEGIN { print b / t / 1e6 }')"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf 'TFTP, %d bytes, blksize %d, 127.0.0.1, curl, median of %d:\n' "$bytes" "$blksize" "$runs"
for name in cortex dnsmasq; do
    m=$(echo "${times[$name]}" | median)
    printf '  %-8s %6.2f s  %7.1f MB/s\n' "$name" "$m" "$(awk -v b="$bytes" -v t="$m" 'BEGIN { print b / t / 1e6 }')"
done
