#!/usr/bin/env bash
# Installs, idempotently, every system package Keelson's tests need, and
# nothing else. Safe to run on every test run: when everything is present it
# only checks and exits.
#
#   etcd-server, etcd-client, python3-etcd   the reference etcd 3.4.23 for differential tests
#   golang-go, golang-github-coreos-go-systemd-dev
#                                            go-systemd's unit package, the oracle for fleet's unit hash
#   gdisk                                    sgdisk, to build GPT disk images for the updater's A/B slots
#   iproute2, iptables, iputils-ping         network namespaces, veth, VXLAN and routes for overlay/cluster tests
#   iperf3                                   overlay throughput benchmark
#   docker.io, docker-registry, busybox-static, curl
#                                            a Docker engine for the book's container units, fed
#                                            `busybox` from a local registry (no Internet needed)
#
# It then makes sure, also idempotently, that a registry on 127.0.0.1:5000 and
# dockerd (with that registry as its mirror) are running, and that the
# registry holds `library/busybox`, so that `docker pull busybox` works offline.
set -euo pipefail

packages=(
  etcd-server
  etcd-client
  python3-etcd
  golang-go
  golang-github-coreos-go-systemd-dev
  gdisk
  iproute2
  iptables
  iputils-ping
  iperf3
  docker.io
  docker-registry
  busybox-static
  curl
)

# --- Docker configuration, written before the packages so that a dockerd an
# init script may start on install already uses it. ---

registry_addr=127.0.0.1:5000
registry_config=/etc/keelson/registry.yml
docker_config=/etc/docker/daemon.json
docker=/usr/bin/docker # Debian's client; another may come first on PATH

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to $*" >&2
    exit 1
  fi
}

# Debian's /etc/docker/registry/config.yml requires htpasswd auth, which
# dockerd's mirror support cannot use: Keelson runs the registry with its own.
registry_yml="version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/keelson-registry
  delete:
    enabled: true
http:
  addr: $registry_addr
"
registry_config_changed=0
if [ "$(cat "$registry_config" 2>/dev/null)" != "${registry_yml%$'\n'}" ]; then
  need_root "write $registry_config"
  mkdir -p "$(dirname "$registry_config")"
  printf '%s' "$registry_yml" >"$registry_config"
  registry_config_changed=1
fi

# registry-mirrors sends `docker pull busybox` to the local registry; keys
# already in daemon.json are kept (merged with python3, which a fresh machine
# may not have yet, but then it has no daemon.json either).
if [ ! -e "$docker_config" ]; then
  need_root "write $docker_config"
  mkdir -p "$(dirname "$docker_config")"
  printf '{\n  "registry-mirrors": ["http://%s"],\n  "insecure-registries": ["%s"]\n}\n' \
    "$registry_addr" "$registry_addr" >"$docker_config"
elif ! grep -q "\"http://$registry_addr\"" "$docker_config" ||
  ! grep -q "\"insecure-registries\"" "$docker_config"; then
  need_root "update $docker_config"
  python3 - "$docker_config" "$registry_addr" <<'PY'
import json, os, sys
path, addr = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        cfg = json.load(f)
except FileNotFoundError:
    cfg = {}
for key, value in (("registry-mirrors", "http://" + addr), ("insecure-registries", addr)):
    cfg[key] = [v for v in cfg.get(key, []) if v != value] + [value]
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
PY
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian etcd package may start a system etcd on the default ports; the
# tests start their own on free ports, so a system one is only in the way.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

# --- The registry and dockerd: started only if not already answering. ---

# Wait up to $1 seconds for command "$4..." to succeed while process $3
# lives; otherwise print the tail of log $2 and fail.
wait_for() {
  local secs=$1 log=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "setup: '$*' still failing after ${secs}s or its process exited; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

registry_ok() {
  curl -fs -m 2 -o /dev/null "http://$registry_addr/v2/"
}

registry_pidfile=/run/keelson-registry.pid
registry_log=/var/log/keelson-registry.log
if [ "$registry_config_changed" = 1 ] && [ -s "$registry_pidfile" ]; then
  # Ours, with an old configuration: the registry does not reload it.
  pid=$(cat "$registry_pidfile")
  if grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do
      [ -e "/proc/$pid" ] || break
      sleep 0.1
    done
  fi
fi
if ! registry_ok; then
  need_root "start the registry"
  # An init script may have started Debian's registry (with auth) on our port.
  if [ -x /etc/init.d/docker-registry ]; then
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
  echo "setup: starting docker-registry on $registry_addr (log: $registry_log)"
  setsid docker-registry serve "$registry_config" >>"$registry_log" 2>&1 </dev/null &
  echo $! >"$registry_pidfile"
  wait_for 20 "$registry_log" "$(cat "$registry_pidfile")" registry_ok
fi

docker_mirror_ok() {
  "$docker" info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null | grep -q "$registry_addr"
}

docker_log=/var/log/keelson-dockerd.log
if ! docker_mirror_ok; then
  need_root "start dockerd"
  if "$docker" info >/dev/null 2>&1 && [ -s /run/docker.pid ]; then
    # Running, but started before daemon.json named the mirror: dockerd
    # reloads registry-mirrors and insecure-registries on SIGHUP.
    echo "setup: reloading dockerd's configuration"
    dockerd_pid=$(cat /run/docker.pid)
    kill -HUP "$dockerd_pid"
  else
    echo "setup: starting dockerd (log: $docker_log)"
    setsid dockerd >>"$docker_log" 2>&1 </dev/null &
    dockerd_pid=$!
  fi
  wait_for 60 "$docker_log" "$dockerd_pid" docker_mirror_ok
fi

# dockerd loads br_netfilter and sets FORWARD's policy to DROP: frames crossing
# the Linux bridges that the cluster, overlay and fault tests build between
# network namespaces would then go through iptables and be dropped. Those
# bridges are the tests' own wiring, not routed traffic: keep bridged frames
# out of iptables, as on a host without Docker (Docker's own NAT and port
# publishing are routed, and keep working).
if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" != 0 ]; then
  need_root "set net.bridge.bridge-nf-call-iptables"
  sysctl -q -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
fi

# --- busybox: a root built from busybox-static, imported and pushed to the
# registry as library/busybox, unless the registry has it already. ---

busybox_in_registry() {
  curl -fs -m 5 -o /dev/null \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry_addr/v2/library/busybox/manifests/latest"
}

busybox_built=0
if ! busybox_in_registry; then
  need_root "build the busybox image"
  echo "setup: building library/busybox from busybox-static"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  image="$registry_addr/library/busybox:latest"
  tar -C "$root" -c . | "$docker" import --change 'CMD ["sh"]' - "$image" >/dev/null
  "$docker" push -q "$image" >/dev/null
  "$docker" rmi "$image" >/dev/null
  rm -rf "$root"
  trap - EXIT
  busybox_built=1
fi

# The units say `docker pull busybox`: it must go through the mirror.
if [ "$busybox_built" = 1 ] || ! "$docker" image inspect busybox >/dev/null 2>&1; then
  "$docker" pull -q busybox >/dev/null
fi

echo "setup: ok"
