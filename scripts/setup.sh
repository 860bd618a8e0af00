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
)

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

echo "setup: ok"
