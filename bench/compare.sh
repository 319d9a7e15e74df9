#!/usr/bin/env bash
# Comparison harness: measures `cortex bench` next to likwid-bench, mbw and numpy's OpenBLAS
# dgemm on this machine, in one run, and prints cortex/peer ratios against the issue's goals.
#
# Installs what it needs (idempotently): Debian packages likwid, mbw, python3-venv; a venv
# under ~/.cache/cortex-bench-venv with numpy (whose wheel bundles OpenBLAS).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bench/compare.sh [options]

Runs N interleaved rounds of: cortex bench -o json (full), cortex bench --quick --threads 1
(for the single-thread copy), likwid-bench peakflops (the best kernel the CPU has) and stream
(every variant: normal and non-temporal stores), mbw (memcpy, single thread), numpy dgemm
(OpenBLAS, same n and threads). Each metric is the median over the rounds, so drifting
background load hits every tool alike. Then prints every figure and the ratios cortex/peer:

  all-core f64 GFLOP/s   vs likwid peakflops         goal >= 0.90
  triad GB/s             vs likwid stream (best)     goal >= 0.95
  GEMM GFLOP/s           vs numpy dgemm              goal >= 1.00
  copy GB/s (1 thread)   vs mbw memcpy               (no goal; mbw is single-threaded)

options:
  --cortex PATH     the cortex binary (default: target/release/cortex, built if missing)
  --build           run `cargo build --release -p cortex` first, even if the binary exists
  --data-dir DIR    directory for cortex's disk test (default: a temporary dir under target/)
  --runs N          interleaved rounds; each metric is the median over them (default 3)
  --out DIR         keep raw outputs here (default: target/bench-compare/<timestamp>)
  --wait-idle SECS  first wait (at most SECS) until the 1-minute load average is below 0.5
  --no-install      do not install packages or create the venv
  -h, --help        this help

Figures are medians. The machine should be otherwise idle: the load average is printed first.
USAGE
}

repo=$(cd "$(dirname "$0")/.." && pwd)
cortex=""
build=0
data_dir=""
runs=3
out=""
install=1
wait_idle=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cortex) cortex=$2; shift ;;
        --build) build=1 ;;
        --data-dir) data_dir=$2; shift ;;
        --runs) runs=$2; shift ;;
        --out) out=$2; shift ;;
        --wait-idle) wait_idle=$2; shift ;;
        --no-install) install=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

venv="${HOME}/.cache/cortex-bench-venv"
target="${CARGO_TARGET_DIR:-$repo/target}"

# ---- install (idempotent) ---------------------------------------------------------------
if [[ $install == 1 ]]; then
    missing=()
    for p in likwid mbw python3-venv; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "==> installing: ${missing[*]}" >&2
        if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "==> creating $venv" >&2
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
        echo "==> pip install numpy" >&2
        "$venv/bin/pip" install -q numpy >&2
    fi
fi
for tool in likwid-bench mbw "$venv/bin/python"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found (run without --no-install)" >&2; exit 1; }
done

if [[ -z "$cortex" ]]; then
    cortex="$target/release/cortex"
    if [[ $build == 1 || ! -x "$cortex" ]]; then
        echo "==> cargo build --release -p cortex" >&2
        (cd "$repo" && cargo build --release -p cortex >&2)
    fi
fi
[[ -x "$cortex" ]] || { echo "error: no cortex binary at $cortex" >&2; exit 1; }

out=${out:-"$target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$out"
cleanup_dir=""
if [[ -z "$data_dir" ]]; then
    data_dir=$(mktemp -d "$target/bench-compare-data.XXXXXX")
    cleanup_dir=$data_dir
fi
trap '[[ -n "$cleanup_dir" ]] && rm -rf "$cleanup_dir"' EXIT

if [[ $wait_idle -gt 0 ]]; then
    deadline=$((SECONDS + wait_idle))
    while (( SECONDS < deadline )) && ! awk '{ exit !($1 < 0.5) }' /proc/loadavg; do
        sleep 5
    done
    echo "==> load average now: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi

threads=$(nproc)
flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx512f; then
    peak=peakflops_avx512_fma; peak_sp=peakflops_sp_avx512_fma; streams=(stream_avx512 stream_mem_avx512 stream_avx stream_mem_avx)
elif has avx2 && has fma; then
    peak=peakflops_avx_fma; peak_sp=peakflops_sp_avx_fma; streams=(stream_avx stream_mem_avx)
elif has avx; then
    peak=peakflops_avx; peak_sp=peakflops_sp_avx; streams=(stream_avx stream_mem_avx)
else
    peak=peakflops_sse; peak_sp=peakflops_sp_sse; streams=(stream_sse stream_mem_sse)
fi

{
    echo "machine:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $threads CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel:   $(uname -r)"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
    echo "cortex:   $cortex"
    echo "likwid:   $(likwid-bench -h 2>&1 | grep -m1 -i version || dpkg -s likwid | awk '/^Version/ {print $2}')"
    echo "numpy:    $("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
} | tee "$out/machine.txt" >&2

# Everything runs in interleaved rounds (cortex, likwid, mbw, numpy, then again), so a change
# in background load hits every tool alike; each metric is the median over the rounds.
vals="$out/values"
mkdir -p "$vals"
put() { echo "$2" >>"$vals/$1"; } # metric, value
jget() { # file, python expression over `r` (the report)
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); v=$2; print('nan' if v is None else v)" "$1"
}
likwid() { # test, working set, key (MFlops/s or MByte/s) -> prints the figure
    likwid-bench -t "$1" -W "N:$2:$threads" 2>&1 | tee -a "$out/likwid-$1.txt" |
        awk -F: -v key="$3" '$1 == key { gsub(/[ \t]/, "", $2); v = $2 } END { print v }'
}
max() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
l1=$((threads * 16))kB

for round in $(seq "$runs"); do
    echo "==> round $round/$runs: cortex bench (full)" >&2
    "$cortex" bench -o json --data-dir "$data_dir" >"$out/cortex-$round.json" 2>"$out/cortex-$round.stderr"
    r="$out/cortex-$round.json"
    put c_f64 "$(jget "$r" "(r['cpu']['f64_all_cores'] or {}).get('median')")"
    put c_f32 "$(jget "$r" "(r['cpu']['f32_all_cores'] or {}).get('median')")"
    put c_triad "$(jget "$r" "(r['memory']['triad'] or {}).get('median')")"
    put c_copy "$(jget "$r" "(r['memory']['copy'] or {}).get('median')")"
    put c_gemm "$(jget "$r" "(r['gemm']['f64'] or {}).get('median')")"
    gemm_n=$(jget "$r" "r['gemm']['n']")
    array_bytes=$(jget "$r" "r['memory']['array_bytes']")

    echo "==> round $round/$runs: cortex bench --quick --threads 1 (single-thread copy)" >&2
    "$cortex" bench --quick --threads 1 -o json --data-dir "$data_dir" >"$out/cortex-1t-$round.json" 2>/dev/null
    put c_copy1 "$(jget "$out/cortex-1t-$round.json" "(r['memory']['copy'] or {}).get('median')")"

    # likwid peakflops: the better of an L1-resident and a 2 MB working set.
    echo "==> round $round/$runs: likwid-bench $peak, $peak_sp, ${streams[*]}" >&2
    put l_peak "$(max "$(likwid "$peak" "$l1" MFlops/s)" "$(likwid "$peak" 2MB MFlops/s)")"
    put l_peak_sp "$(max "$(likwid "$peak_sp" "$l1" MFlops/s)" "$(likwid "$peak_sp" 2MB MFlops/s)")"
    # likwid stream: far beyond the caches (machine.md: 2 GB), each variant kept.
    for s in "${streams[@]}"; do
        put "l_$s" "$(likwid "$s" 2GB MByte/s)"
    done

    mbw_mib=$(( (array_bytes / 1048576) > 256 ? array_bytes / 1048576 : 256 ))
    echo "==> round $round/$runs: mbw -n 10 -t0/-t2 $mbw_mib" >&2
    m0=$(mbw -q -n 10 -t0 "$mbw_mib" | tee -a "$out/mbw.txt" | awk '/^AVG/ { for (i = 1; i <= NF; i++) if ($i == "Copy:") print $(i + 1) }')
    m2=$(mbw -q -n 10 -t2 "$mbw_mib" | tee -a "$out/mbw.txt" | awk '/^AVG/ { for (i = 1; i <= NF; i++) if ($i == "Copy:") print $(i + 1) }')
    put mbw "$(max "$m0" "$m2")"

    echo "==> round $round/$runs: numpy dgemm n=$gemm_n, OPENBLAS_NUM_THREADS=$threads" >&2
    put np_gemm "$(OPENBLAS_NUM_THREADS=$threads "$venv/bin/python" - "$gemm_n" <<'PY' 2>>"$out/numpy.txt" | tee -a "$out/numpy.txt" | tail -1
import statistics, sys, time
import numpy as np
n = int(sys.argv[1])
rng = np.random.default_rng(1)
a, b = rng.random((n, n)), rng.random((n, n))
c = np.empty((n, n))
for _ in range(2):
    np.matmul(a, b, out=c)
ts = []
for _ in range(10):
    t = time.perf_counter(); np.matmul(a, b, out=c); ts.append(time.perf_counter() - t)
try:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    print(f"blas: {blas.get('name')} {blas.get('version')}", file=sys.stderr)
except Exception as e:  # older numpy
    print(f"blas: unknown ({e})", file=sys.stderr)
print(2 * n**3 / statistics.median(ts) / 1e9)
PY
)"
done

# ---- report ------------------------------------------------------------------------------
python3 - "$out" "$peak" "$peak_sp" "${streams[@]}" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys
out, peak, peak_sp, streams = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def vals(name):
    try:
        return [float(x) for x in open(f"{out}/values/{name}").read().split() if x != "nan"]
    except FileNotFoundError:
        return []
def med(name, scale=1.0):
    v = [x * scale for x in vals(name)]
    return (statistics.median(v), min(v), max(v)) if v else (float("nan"),) * 3
r = json.load(open(f"{out}/cortex-1.json"))
def fig(f):
    return f"{f['median']:7.1f}  [{f['min']:.1f}..{f['max']:.1f}, cv {100*f['cv']:.1f}%, n={f['repeats']}]" if f else "-"
print()
print(f"cortex bench, round 1 (medians [min..max, cv, repeats]); {r['host']['threads']} threads, ISA {r['cpu']['isa']}:")
for k in ("f64_one_core", "f64_all_cores", "f32_one_core", "f32_all_cores"):
    print(f"  cpu {k:<15} {fig(r['cpu'][k])} GFLOP/s")
print(f"  gemm f64 n={r['gemm']['n']:<8} {fig(r['gemm']['f64'])} GFLOP/s")
for k in ("copy", "scale", "add", "triad"):
    print(f"  memory {k:<12} {fig(r['memory'][k])} GB/s")
for k in ("seq_write", "seq_read", "rand_read_4k"):
    f = r["disk"][k]
    print(f"  disk {k:<14} {fig(f)} {f['unit'] if f else r['disk'].get('note') or ''}")
stream_best = max(streams, key=lambda s: med(f"l_{s}")[0])
rows = [
    # name, cortex metric, peer metric, peer scale to cortex units, peer label, goal
    ("all-core f64 GFLOP/s", "c_f64", "l_peak", 1e-3, f"likwid {peak}", 0.90),
    ("all-core f32 GFLOP/s", "c_f32", "l_peak_sp", 1e-3, f"likwid {peak_sp}", None),
    ("triad GB/s", "c_triad", f"l_{stream_best}", 1e-3, f"likwid {stream_best} (best variant)", 0.95),
]
rows += [("triad GB/s", "c_triad", f"l_{s}", 1e-3, f"likwid {s}", None) for s in streams if s != stream_best]
rows += [
    (f"GEMM f64 GFLOP/s (n={r['gemm']['n']})", "c_gemm", "np_gemm", 1.0, "numpy OpenBLAS dgemm", 1.00),
    # mbw reports MiB copied per second; STREAM counts read + write: x 2 x 1.048576 / 1000.
    ("copy GB/s, 1 thread", "c_copy1", "mbw", 2 * 1.048576 / 1000, "mbw memcpy/mcblock (1 thread)", None),
    ("copy GB/s, all threads", "c_copy", "mbw", 2 * 1.048576 / 1000, "mbw (1 thread: informative)", None),
]
n = len(vals("c_f64"))
print()
print(f"over {n} interleaved round(s): medians [min..max across rounds]; 'ratio' is the median of")
print("the per-round ratios (each pairs measurements taken seconds apart), 'r(med)' the ratio of medians")
print(f"{'metric':<26} {'cortex':>22} {'peer':>22}  {'ratio':>6} {'r(med)':>6}  {'goal':>6}  peer")
for name, c, p, scale, label, goal in rows:
    cm, cmin, cmax = med(c)
    pm, pmin, pmax = med(p, scale)
    pairs = [a / (b * scale) for a, b in zip(vals(c), vals(p)) if b]
    ratio = statistics.median(pairs) if pairs else float("nan")
    rmed = cm / pm if pm else float("nan")
    g = f">={goal:.2f}" if goal else "-"
    status = "" if goal is None else ("  ok" if ratio >= goal else "  MISS")
    print(f"{name:<26} {cm:7.1f} [{cmin:6.1f}..{cmax:6.1f}] {pm:7.1f} [{pmin:6.1f}..{pmax:6.1f}]  {ratio:6.3f} {rmed:6.3f}  {g:>6}  {label}{status}")
PY
echo "raw outputs: $out" >&2
