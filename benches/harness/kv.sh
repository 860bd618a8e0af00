#!/usr/bin/env bash
# Side-by-side benchmark: `keelson kv` vs Debian's etcd 3.4.23, v2 HTTP API.
# See benches/README.md. Usage:
#
#   benches/harness/kv.sh [--quick] [--memory] [--etcd-only] [--no-doc] [--build]
#                         [extra kv_bench.py flags, e.g. --duration 5 --rounds 3]
#
#   (default)   full throughput mode: 3 rounds, 10 s per wrk run (~12 min),
#               writes benches/results/kv-throughput.json, the plot, BENCHMARKS.md
#   --quick     1 round, 3 s per run (~1.5 min); writes kv-quick.json only
#   --memory    1M keys x 100 B: RSS vs raw bytes and restart time (~5-15 min);
#               writes benches/results/kv-memory.json and BENCHMARKS.md
#   --etcd-only both slots run etcd: checks the harness without a keelson build
#               (writes kv-etcd-only-*.json, never BENCHMARKS.md)
#   --no-doc    do not touch BENCHMARKS.md
#   --build     run `cargo build --release -p keelson-cli --bin keelson` first
#
# Installs what it needs from Debian (wrk, util-linux's taskset, etcd-server),
# idempotently. Servers listen on 127.0.0.1 only; every wrk run is bounded by
# -d; every process started here is killed on exit, success or not.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
results="$root/benches/results"
py=/usr/bin/python3
command_line="benches/harness/kv.sh${*:+ $*}"

mode=throughput quick=0 doc=1 build=0 etcd_only=0
passthrough=()
for a in "$@"; do
    case "$a" in
        --quick) quick=1; passthrough+=("$a") ;;
        --memory) mode=memory; passthrough+=("$a") ;;
        --etcd-only) etcd_only=1; passthrough+=("$a") ;;
        --no-doc) doc=0 ;;
        --build) build=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exec "$py" "$here/kv_bench.py" --help ;;
        *) passthrough+=("$a") ;;
    esac
done

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
[ -x "$py" ] || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    echo "kv.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's etcd-server package starts a system etcd on :2379; we never use
# it (our servers take free loopback ports), but stop it to keep core 0 quiet.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi

if [ "$(nproc)" -lt 2 ]; then
    echo "kv.sh: needs 2 cores (server on core 0, wrk on core 1); nproc=$(nproc)" >&2
    exit 1
fi

if [ "$build" = 1 ]; then
    (cd "$root" && cargo build --release -p keelson-cli --bin keelson)
fi

# kv_bench.py kills its own children on any exit; this trap is the backstop:
# kv_bench.py runs in its own process group (setsid), which holds every
# server and wrk it starts, and the trap kills that group and nothing else.
bench_pid=
cleanup() {
    if [ -n "$bench_pid" ]; then
        kill -TERM -- "-$bench_pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$bench_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$results"
if [ "$etcd_only" = 1 ]; then
    # A harness check must not overwrite the published Keelson figures.
    out="$results/kv-etcd-only-$mode.json"
    doc=0
elif [ "$mode" = memory ]; then
    out="$results/kv-memory.json"
elif [ "$quick" = 1 ]; then
    out="$results/kv-quick.json"
    doc=0
else
    out="$results/kv-throughput.json"
fi

echo "kv.sh: uptime before: $(uptime)" >&2
setsid "$py" "$here/kv_bench.py" --out "$out" --command "$command_line" ${passthrough[@]+"${passthrough[@]}"} &
bench_pid=$!
wait "$bench_pid"
bench_pid=
echo "kv.sh: uptime after: $(uptime)" >&2

if [ "$doc" = 1 ]; then
    "$py" "$here/kv_report.py" --results "$results" --doc "$root/BENCHMARKS.md"
else
    "$py" "$here/kv_report.py" --results "$results" --only "$out"
fi
