#!/usr/bin/env bash
# TCP throughput across the overlay (vxlan, udp batched, udp one packet per
# system call) against the plain veth path, in one run (issue 6, reference
# netoverlay.md §14.4). Two hosts in network namespaces on a bridge that also
# lives in a namespace, `keelson kv` as the store, `keelson overlay` per host,
# a container namespace behind each host; iperf3 client and server pinned with
# taskset to different cores; median of ROUNDS runs of DURATION seconds.
#
#   benches/harness/overlay.sh [--keelson PATH] [--duration S] [--rounds N] [--no-doc]
#
# Needs root, iproute2, iperf3, taskset (util-linux), iptables, python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
keelson="${KEELSON_BIN:-$repo/target/release/keelson}"
duration=5
rounds=5
doc=1
while [ $# -gt 0 ]; do
    case "$1" in
        --keelson) keelson=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --no-doc) doc=0; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for tool in ip iperf3 taskset iptables python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 1; }
done
[ -x "$keelson" ] || { echo "$keelson missing: cargo build --release -p keelson-cli --bin keelson" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }

tag="kb$$"
work=$(mktemp -d)
pids=()
namespaces=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ((i=${#namespaces[@]}-1; i>=0; i--)); do ip netns del "${namespaces[$i]}" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

ns() { ip netns add "$tag-$1"; namespaces+=("$tag-$1"); ip -n "$tag-$1" link set lo up; }
attach() { # short addr
    ns "$1"
    ip link add eth0 netns "$tag-$1" type veth peer name "p$1" netns "$tag-sw"
    ip -n "$tag-sw" link set "p$1" master br0 up
    ip -n "$tag-$1" addr add "$2/24" dev eth0
    ip -n "$tag-$1" link set eth0 up
}
wait_for() { # what cmd...
    local what=$1; shift
    for _ in $(seq 1 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    echo "timed out waiting for $what" >&2; exit 1
}

kv_url=http://10.88.0.1:2379
ns sw
ip -n "$tag-sw" link add br0 type bridge
ip -n "$tag-sw" link set br0 up
attach kv 10.88.0.1
attach h1 10.88.0.11
attach h2 10.88.0.12
ip netns exec "$tag-kv" "$keelson" kv --name kv --data-dir "$work/kv" \
    --listen-client-urls $kv_url --advertise-client-urls $kv_url \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster kv=http://127.0.0.1:2380 >"$work/kv.log" 2>&1 &
pids+=($!)
put_config() {
    ip netns exec "$tag-kv" python3 - "$kv_url" "$1" <<'EOF'
import sys, urllib.parse, urllib.request
url, doc = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url + "/v2/keys/coreos.com/network/config",
    data=urllib.parse.urlencode({"value": doc}).encode(), method="PUT")
urllib.request.urlopen(req, timeout=5).read()
EOF
}
wait_for "keelson kv" put_config '{"Network":"10.1.0.0/16"}'

# One iperf3 measurement: server in namespace $1 on core 1, client in $2 on
# core 0 towards $3; prints Gbit/s received.
iperf() {
    ip netns exec "$1" taskset -c 1 iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
    local srv=$! ok=0
    for _ in $(seq 1 40); do
        sleep 0.25
        if ip netns exec "$2" taskset -c 0 iperf3 -c "$3" -t "$duration" -J >"$work/iperf.json" 2>/dev/null; then
            ok=1; break
        fi
    done
    wait "$srv" 2>/dev/null || true
    [ $ok = 1 ] || { echo "iperf3 $2 -> $3 failed" >&2; exit 1; }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$work/iperf.json"
}

# Starts the overlay with backend $1 (extra daemon flags in $2), builds the
# containers, and leaves their addresses in c1/c2.
overlay_up() {
    put_config "{\"Network\":\"10.1.0.0/16\",\"Backend\":{\"Type\":\"$1\"}}"
    for i in 1 2; do
        rm -rf "$work/h$i"
        ip netns exec "$tag-h$i" "$keelson" overlay --etcd-endpoints $kv_url --iface eth0 \
            --root "$work/h$i" $2 >"$work/h$i-$1.log" 2>&1 &
        pids+=($!)
    done
    for i in 1 2; do
        wait_for "subnet.env of h$i ($1)" test -s "$work/h$i/run/flannel/subnet.env"
        # shellcheck disable=SC1090
        . "$work/h$i/run/flannel/subnet.env"
        local gw=${FLANNEL_SUBNET%/*} len=${FLANNEL_SUBNET#*/}
        local ip=${gw%.*}.2
        ns "c$i$1"
        ip -n "$tag-h$i" link add kbr0 type bridge
        ip -n "$tag-h$i" addr add "$gw/$len" dev kbr0
        ip -n "$tag-h$i" link set kbr0 mtu "$FLANNEL_MTU" up
        ip link add eth0 netns "$tag-c$i$1" mtu "$FLANNEL_MTU" type veth peer name "v$i" netns "$tag-h$i" mtu "$FLANNEL_MTU"
        ip -n "$tag-h$i" link set "v$i" master kbr0 up
        ip -n "$tag-c$i$1" addr add "$ip/$len" dev eth0
        ip -n "$tag-c$i$1" link set eth0 up
        ip -n "$tag-c$i$1" route add default via "$gw"
        eval "c$i=$ip"
    done
    wait_for "ping across $1" ip netns exec "$tag-c1$1" ping -c1 -W1 "$c2"
}

overlay_down() { # backend
    for i in 1 2; do
        kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
    done
    for i in 1 2; do
        ip netns exec "$tag-h$i" "$keelson" overlay --etcd-endpoints $kv_url --iface eth0 \
            --root "$work/h$i" --teardown >>"$work/h$i-$1.log" 2>&1 || true
        ip -n "$tag-h$i" link del kbr0 2>/dev/null || true
        ip netns del "$tag-c$i$1"
        unset 'namespaces[-1]'
    done
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A results
modes=(veth vxlan udp udp1)
for m in "${modes[@]}"; do
    case $m in
        veth) ;;
        vxlan) overlay_up vxlan "" ;;
        udp) overlay_up udp "--udp-batch 64" ;;
        udp1) overlay_up udp "--udp-batch 1" ;;
    esac
    runs=()
    for _ in $(seq 1 "$rounds"); do
        if [ "$m" = veth ]; then
            runs+=("$(iperf "$tag-h2" "$tag-h1" 10.88.0.12)")
        else
            b=${m%1}
            runs+=("$(iperf "$tag-c2$b" "$tag-c1$b" "$c2")")
        fi
    done
    results[$m]=$(median "${runs[@]}")
    echo "$m: runs ${runs[*]} Gbit/s; median ${results[$m]}" >&2
    case $m in
        vxlan) overlay_down vxlan ;;
        udp|udp1) overlay_down udp ;;
    esac
done

load=$(uptime)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
pct() { python3 -c "import sys; print('%.0f%%' % (100 * float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
v=${results[veth]}; x=${results[vxlan]}; u=${results[udp]}; u1=${results[udp1]}
section=$(cat <<EOF
## netoverlay

TCP throughput between two hosts (network namespaces on a bridge), single
stream, container to container across the overlay against host to host on the
plain veth underlay, all in one run. \`keelson kv\` is the store, \`keelson
overlay\` the daemon on each host; iperf3 server pinned to core 1, client to
core 0 (the udp daemon's data path is not pinned and competes with them);
median of $rounds runs of ${duration} s each.

\`\`\`sh
$(printf 'benches/harness/overlay.sh --keelson %s --duration %s --rounds %s' "${keelson#"$repo"/}" "$duration" "$rounds")
\`\`\`

Machine: $(nproc) cores ($cpu), shared with other work; load at the end: \`${load# }\`.

| path | Gbit/s (median) | ratio | target |
|---|---|---|---|
| plain veth | $v | 1.00 of veth | baseline |
| vxlan (\`flannel.1\`) | $x | $(pct "$x" "$v") of veth | ≥ 90% of veth |
| udp, batched (\`recvmmsg\`/\`sendmmsg\`, 64 per call) | $u | $(pct "$u" "$v") of veth; $(ratio "$u" "$u1")x one-packet mode | ≥ 20% of veth, ≥ 3x one-packet mode |
| udp, one packet per system call (\`--udp-batch 1\`, upstream's design) | $u1 | $(pct "$u1" "$v") of veth | |
EOF
)
echo "$section"
if [ "$doc" = 1 ]; then
    python3 - "$repo/BENCHMARKS.md" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read()
m = re.search(r"^## netoverlay\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[: m.start()] + section + ("\n" if text[m.end():] else "") + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
EOF
    echo "updated BENCHMARKS.md" >&2
fi
