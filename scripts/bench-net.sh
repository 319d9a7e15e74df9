#!/usr/bin/env bash
# `cortex bench net` next to iperf3 over the same link: two network namespaces on a bridge, a
# coordinator (c1) in one and a worker (w2) in the other, then per link setting
#   shaped     tbf at RATE Mbit/s on both bridge ports (default 50)
#   unshaped   the bare veth/bridge path (CPU-bound: it measures the machine, not a NIC)
# RUNS runs of `cortex bench net --peer w2` from c1's namespace (median of 500 ms samples, each
# way) and of iperf3 (-t SECONDS -O 1, receiver's mean; -R for the other way), one after the
# other. Prints every run and the median of the runs.
#
#   scripts/bench-net.sh [--runs N] [--seconds S] [--rate MBIT]
#
# Needs root, iproute2 (ip, tc), iperf3, and target/release/cortex (or CORTEX_BIN=).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3 seconds=5 rate=50
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) shift; runs="$1" ;;
        --seconds) shift; seconds="$1" ;;
        --rate) shift; rate="$1" ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
cortex="${CORTEX_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/cortex}"
[[ -x $cortex ]] || { echo "no $cortex: cargo build --release -p cortex (or CORTEX_BIN=)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces)" >&2; exit 1; }

p="cxbn$$"  hub="${p}h"  ip1=10.231.77.1  ip2=10.231.77.2
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$p-1" 2>/dev/null || true
    ip netns del "$p-2" 2>/dev/null || true
    ip netns del "$hub" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$hub"
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
for i in 1 2; do
    ip netns add "$p-$i"
    ip link add eth0 netns "$p-$i" type veth peer name "p$i" netns "$hub"
    ip -n "$hub" link set "p$i" master br0 up
    ip -n "$p-$i" link set lo up
    ip -n "$p-$i" addr add "10.231.77.$i/24" dev eth0
    ip -n "$p-$i" link set eth0 up
done
in_ns() { local i=$1; shift; nsenter --net="/run/netns/$p-$i" -- "$@"; }

export HOME=$work/home CORTEX_CONFIG_ROOT=$work/root CORTEX_CMDLINE_FILE=$work/cmdline CORTEX_BENCH__ON_START=false
mkdir -p "$HOME" "$CORTEX_CONFIG_ROOT"; : > "$CORTEX_CMDLINE_FILE"
in_ns 1 "$cortex" -o json up --data-dir "$work/c1" --grpc-addr "$ip1:7071" --http-addr "$ip1:7070" \
    --node-name c1 > "$work/c1.out" 2> "$work/c1.err" &
pids+=($!)
export CORTEX_SERVER=$ip1:7071 CORTEX_TOKEN_FILE=$work/c1/admin.token CORTEX_CA_FILE=$work/c1/ca.crt
for _ in $(seq 100); do in_ns 1 "$cortex" status >/dev/null 2>&1 && break; sleep 0.2; done
token=$(in_ns 1 "$cortex" token create --auto-approve --uses 1)
(unset CORTEX_SERVER CORTEX_TOKEN_FILE CORTEX_CA_FILE
 exec nsenter --net="/run/netns/$p-2" -- "$cortex" -o json agent --data-dir "$work/w2" --token "$token" \
    --node-name w2 --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0) > "$work/w2.out" 2> "$work/w2.err" &
pids+=($!)
for _ in $(seq 150); do [[ -s $work/w2.out ]] && break; sleep 0.2; done
[[ -s $work/w2.out ]] || { echo "w2 did not join:"; tail "$work/w2.err"; exit 1; }
echo "machine: $(nproc) CPUs; load before: $(uptime | sed 's/.*load average: //')"
echo "cortex $("$cortex" --version | awk '{print $2}'), $(iperf3 --version | head -1)"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

iperf() {  # $1: "" or -R; prints the receiver's Mbit/s
    in_ns 2 iperf3 -s -1 -B "$ip2" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.5
    in_ns 1 iperf3 -c "$ip2" -t "$seconds" -O 1 -J $1 |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6, 1))'
    wait "$srv" 2>/dev/null || true
}

for setting in shaped unshaped; do
    if [[ $setting == shaped ]]; then
        for i in 1 2; do ip netns exec "$hub" tc qdisc replace dev "p$i" root tbf rate "${rate}mbit" burst 64kb latency 100ms; done
        label="shaped to $rate Mbit/s (tbf)"
    else
        for i in 1 2; do ip netns exec "$hub" tc qdisc del dev "p$i" root 2>/dev/null || true; done
        label="unshaped veth + bridge"
    fi
    echo
    echo "== $label, $seconds s each way, $runs runs"
    : > "$work/cs"; : > "$work/cr"; : > "$work/is"; : > "$work/ir"
    for r in $(seq "$runs"); do
        json=$(in_ns 1 "$cortex" -o json bench net --peer w2 --seconds "$seconds" --from c1 2>/dev/null)
        read -r cs cr cvs cvr < <(python3 -c 'import json,sys
d=json.load(sys.stdin); f=lambda k: d[k]["figure"]
print(round(f("send")["median"],1), round(f("receive")["median"],1), round(100*f("send")["cv"],1), round(100*f("receive")["cv"],1))' <<<"$json")
        is=$(iperf "") ; ir=$(iperf -R)
        echo "$cs" >> "$work/cs"; echo "$cr" >> "$work/cr"; echo "$is" >> "$work/is"; echo "$ir" >> "$work/ir"
        printf '  run %d: cortex send %8s (cv %s%%)  receive %8s (cv %s%%) | iperf3 send %8s  receive %8s Mbit/s\n' \
            "$r" "$cs" "$cvs" "$cr" "$cvr" "$is" "$ir"
    done
    printf '  median: cortex send %8s  receive %8s | iperf3 send %8s  receive %8s Mbit/s\n' \
        "$(median < "$work/cs")" "$(median < "$work/cr")" "$(median < "$work/is")" "$(median < "$work/ir")"
done
echo
echo "load after: $(uptime | sed 's/.*load average: //')"
