#!/usr/bin/env bash
# Boot timings of the appliance under qemu (TCG unless real KVM), one VM at a time, against a
# coordinator running on this host. Per boot, from qemu's start ("power-on", host clock):
#   kernel       "Linux version" on the serial console
#   agent start  systemd's "Starting … Cortex agent" on the console
#   PENDING      the node is pending on the coordinator (CLI polled every 0.5 s)
#   figures      its quick self-benchmark figures are on the pending record (then approved)
#   READY        after `cortex node approve` (approve → READY)
# and, from the guest's own clock (journald's console lines carry the guest's monotonic time):
#   in-guest agent start → PENDING: systemd[1] "Starting … Cortex agent" to the agent's log line
#   of the coordinator's pending answer (the join request → that answer in brackets); and
#   agent start → figures sent: the first poll that carried the quick self-benchmark (on by
#   default; it runs beside the join request).
# Prints one line per boot and the medians per mode.
#
#   scripts/bench-boot.sh [--boots N] [--mode direct|disk|pxe]... [--no-bench]
#
#   direct  qemu -kernel out/vmlinuz -initrd out/initrd (config on the kernel command line)
#   disk    out/cortex-disk.raw under OVMF through a throwaway overlay (config as the cortex.toml
#           SMBIOS credential: the UKI's command line is fixed)
#   pxe     qemu's iPXE ROM, DHCP from qemu's user network whose boot file is
#           http://HOST/boot.ipxe served by `cortex pxe serve` (no proxyDHCP: tests/image_pxe.rs
#           covers the L2 path); kernel + initrd over HTTP
#           `cortex pxe serve`'s scripts put console=tty0 last, so /dev/console (where journald
#           forwards) is the screen; cortex-console-mirror copies the journal to the serial
#           port (short-monotonic lines: the same in-guest clock)
#   --no-bench  cortex.bench.on_start=false in the guest (direct and pxe only): no quick
#               self-benchmark beside the join request
# Needs out/ from scripts/build-image.sh and target/release/cortex (or CORTEX_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
boots=3 modes=() bench_word=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --boots) shift; boots="$1" ;;
        --mode) shift; [[ $1 == direct || $1 == disk || $1 == pxe ]] || { echo "--mode: direct, disk or pxe" >&2; exit 2; }; modes+=("$1") ;;
        --no-bench) bench_word="cortex.bench.on_start=false" ;;
        [0-9]*) boots="$1" ;;  # the old positional BOOTS
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[[ ${#modes[@]} -gt 0 ]] || modes=(direct)
cortex="${CORTEX_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/cortex}"
[[ -x $cortex ]] || { echo "no $cortex: cargo build --release (or CORTEX_BIN=)" >&2; exit 1; }
unset CORTEX_BIN  # cortex reads every CORTEX_* variable as configuration
for m in "${modes[@]}"; do
    case $m in
        direct|pxe) need=(out/vmlinuz out/initrd) ;;
        disk) need=(out/cortex-disk.raw /usr/share/OVMF/OVMF_CODE_4M.fd) ;;
    esac
    for f in "${need[@]}"; do [[ -f $f ]] || { echo "$f missing (scripts/build-image.sh; apt-get install ovmf)" >&2; exit 1; }; done
done
ip=$(ip -4 -o route get 192.0.2.255 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
work=$(mktemp -d)
coord_pid="" pxe_pid="" qpid=""
cleanup() {
    for p in $qpid $pxe_pid $coord_pid; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
echo "machine load before: $(uptime)"
export HOME=$work/home CORTEX_CONFIG_ROOT=$work/root CORTEX_CMDLINE_FILE=$work/cmdline CORTEX_BENCH__ON_START=false
mkdir -p "$HOME" "$CORTEX_CONFIG_ROOT"; : > "$CORTEX_CMDLINE_FILE"
port=$((20000 + RANDOM % 20000))
"$cortex" -o json up --data-dir "$work/coord" --grpc-addr "$ip:$port" --http-addr 127.0.0.1:0 --node-name coord \
    > "$work/up.json" 2> "$work/coord.log" &
coord_pid=$!
for _ in $(seq 120); do [[ -s $work/up.json ]] && break; sleep 0.5; done
[[ -s $work/up.json ]] || { echo "the coordinator did not start:" >&2; cat "$work/coord.log" >&2; exit 1; }
export CORTEX_SERVER=$ip:$port CORTEX_TOKEN_FILE=$work/coord/admin.token CORTEX_CA_FILE=$work/coord/ca.crt
token=$("$cortex" token create --ttl 2h --uses 1000)
if [[ -e /sys/module/kvm_intel || -e /sys/module/kvm_amd ]]; then accel=(-accel kvm -cpu host); else accel=(-accel tcg,thread=multi -cpu max); fi

now() { date +%s.%N; }
since() { echo "$1 - $2" | bc -l | xargs printf '%.1f'; }
# The id of a PENDING node not in the file $1 (ids of nodes seen before this boot).
new_pending() {
    "$cortex" -o json node list 2>/dev/null | python3 -c '
import json, sys
seen = set(open(sys.argv[1]).read().split())
for n in json.load(sys.stdin).get("nodes", []):
    if n.get("state") == "pending" and str(n.get("id")) not in seen:
        print(n["id"]); break' "$1" 2>/dev/null || true
}
all_ids() { "$cortex" -o json node list | python3 -c 'import json, sys; [print(n["id"]) for n in json.load(sys.stdin)["nodes"]]'; }
state() { "$cortex" -o json node show "$1" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin).get("state", ""))' 2>/dev/null || true; }
# "yes" once the node's record carries a measured f64 all-core figure.
has_figures() { "$cortex" -o json node show "$1" 2>/dev/null | python3 -c 'import json, sys; print("yes" if ((json.load(sys.stdin).get("bench") or {}).get("cpu_f64_gflops_all") or 0) > 0 else "")' 2>/dev/null || true; }
# In-guest seconds (journald's "[ 12.345678] " console prefix) of the first line matching $2.
guest_t() { { grep -a -m1 -E "$2" "$1" || true; } | sed -n 's/^[^[]*\[ *\([0-9]*\.[0-9]*\)\].*/\1/p'; }
median() { printf '%s\n' "$@" | { grep -v '^-$' || true; } | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

if [[ " ${modes[*]} " == *" pxe "* ]]; then
    hport=$((20000 + RANDOM % 20000)) tport=$((20000 + RANDOM % 20000))
    "$cortex" pxe serve --artifacts out --join "$ip:$port" --token "$token" \
        --http-addr "$ip:$hport" --tftp-addr "127.0.0.1:$tport" > "$work/pxe.out" 2> "$work/pxe.log" &
    pxe_pid=$!
    for _ in $(seq 60); do curl -sf "http://$ip:$hport/boot.ipxe" >/dev/null && break; sleep 0.5; done
fi

summary=()
for mode in "${modes[@]}"; do
    declare -a K=() A=() P=() R=() G=() GB=() GJ=()
    for i in $(seq "$boots"); do
        name=bench-$mode-$i console=$work/console-$mode-$i.log
        all_ids > "$work/seen"
        case $mode in
            direct)
                args=(-kernel out/vmlinuz -initrd out/initrd
                      -append "console=ttyS0 systemd.firstboot=off cortex.join=$ip:$port cortex.token=$token cortex.node_name=$name $bench_word"
                      -netdev user,id=n0 -device virtio-net-pci,netdev=n0) ;;
            disk)
                cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
                rm -f "$work/overlay.qcow2"
                qemu-img create -q -f qcow2 -F raw -b "$PWD/out/cortex-disk.raw" "$work/overlay.qcow2"
                cred=$(printf 'join = ["%s"]\ntoken = "%s"\nnode_name = "%s"\n' "$ip:$port" "$token" "$name" | base64 -w0)
                args=(-machine q35
                      -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
                      -drive if=pflash,format=raw,unit=1,file="$work/vars.fd"
                      -drive if=virtio,format=qcow2,file="$work/overlay.qcow2"
                      -smbios "type=11,value=io.systemd.credential.binary:cortex.toml=$cred"
                      -netdev user,id=n0 -device virtio-net-pci,netdev=n0) ;;
            pxe)
                args=(-boot n -netdev "user,id=n0,bootfile=http://$ip:$hport/boot.ipxe"
                      -device virtio-net-pci,netdev=n0) ;;
        esac
        t0=$(now)
        qemu-system-x86_64 "${accel[@]}" -smp 2 -m 2048 -display none -monitor none -no-reboot \
            -serial "file:$console" "${args[@]}" 2> "$work/qemu.err" &
        qpid=$!
        tk="" ta="" tp="" id=""
        deadline=$(( $(date +%s) + 480 ))
        while [[ -z $tp ]]; do
            if (( $(date +%s) >= deadline )) || ! kill -0 $qpid 2>/dev/null; then
                echo "$mode boot $i: no PENDING within 480 s (or qemu exited); qemu: $(cat "$work/qemu.err"); console tail:" >&2
                tail -40 "$console" >&2; exit 1
            fi
            [[ -z $tk ]] && grep -qa "Linux version" "$console" 2>/dev/null && tk=$(now)
            [[ -z $ta ]] && grep -qaE "Starting.*Cortex agent" "$console" 2>/dev/null && ta=$(now)
            id=$(new_pending "$work/seen")
            [[ -n $id ]] && tp=$(now)
            sleep 0.5
        done
        # The approver waits for the figures (they follow the request by the quick benchmark's
        # run); without the benchmark there are none to wait for.
        tf=""
        if [[ -z $bench_word ]]; then
            until [[ -n $(has_figures "$id") ]]; do
                (( $(date +%s) < deadline + 120 )) || { echo "$mode boot $i: no figures on the pending record within 120 s of the deadline" >&2; tail -30 "$console" >&2; exit 1; }
                sleep 0.5
            done
            tf=$(now)
        fi
        "$cortex" node approve "$id" >/dev/null
        ta2=$(now)
        until [[ $(state "$id") == ready ]]; do
            (( $(date +%s) < deadline + 120 )) || { echo "$mode boot $i: not READY 120 s after approval" >&2; tail -30 "$console" >&2; exit 1; }
            sleep 0.5
        done
        tr=$(now)
        sleep 2  # the console lines of the last steps
        kill $qpid; wait $qpid 2>/dev/null || true; qpid=""
        cp "$console" "/tmp/bench-boot-console-$mode-$i.log"
        if [[ -n $tk ]]; then K[i]=$(since "$tk" "$t0"); else K[i]=-; fi; if [[ -n $ta ]]; then A[i]=$(since "$ta" "$t0"); else A[i]=-; fi; P[i]=$(since "$tp" "$t0")
        if [[ -n $tf ]]; then F[i]=$(since "$tf" "$t0"); else F[i]=-; fi
        R[i]=$(since "$tr" "$ta2")
        # In-guest: systemd starting the unit → the agent's log line with the pending answer.
        gs=$(guest_t "$console" 'systemd\[1\]: Starting .*Cortex agent')
        gb=$(guest_t "$console" "cortex\\[[0-9]+\\]: .*benchmark's figures went with the join request")
        gj=$(guest_t "$console" 'cortex\[[0-9]+\]: cortex: asking to join')
        gp=$(guest_t "$console" 'cortex\[[0-9]+\]: .*waiting for approval')
        if [[ -n $gs && -n $gp ]]; then G[i]=$(since "$gp" "$gs"); else G[i]=-; fi
        if [[ -n $gs && -n $gb ]]; then GB[i]=$(since "$gb" "$gs"); else GB[i]=-; fi
        if [[ -n $gj && -n $gp ]]; then GJ[i]=$(since "$gp" "$gj"); else GJ[i]=-; fi
        echo "$mode boot $i: kernel ${K[i]} s, agent start ${A[i]} s, PENDING ${P[i]} s, figures ${F[i]} s, approve → READY ${R[i]} s; in-guest agent start → PENDING ${G[i]} s (join request → pending answer ${GJ[i]} s), agent start → figures sent ${GB[i]} s"
    done
    line="$mode, median over $boots boots (host clock from power-on): kernel $(median "${K[@]}") s, agent start $(median "${A[@]}") s, PENDING $(median "${P[@]}") s, figures $(median "${F[@]}") s; approve → READY $(median "${R[@]}") s; in-guest agent start → PENDING $(median "${G[@]}") s (join request → pending $(median "${GJ[@]}") s), agent start → figures sent $(median "${GB[@]}") s"
    echo "$line"
    summary+=("$line")
done
echo "---"
printf '%s\n' "${summary[@]}"
echo "machine load after: $(uptime)"
echo "consoles kept in /tmp/bench-boot-console-*.log"
