#!/bin/bash
# A rolling update of three machines, one reboot at a time (scenarios U1, U2,
# L2): an update server offers a signed 766.3.0 to the stable channel, each
# machine's update engine installs it into its inactive slot, and locksmithd
# (REBOOT_STRATEGY=etcd-lock, semaphore max 1) lets one machine at a time
# reboot. A "reboot" is simulated: locksmithd's --reboot-command hook records
# the request, and this script plays the machine going down and booting the
# new slot (engine and locksmithd stopped, /run cleared, /usr's release file
# swapped, both started again); after the reboot locksmithd gives the slot
# back and the next machine takes it.
#
# Usage: ./rolling-update.sh [WORKDIR]   (default /tmp/keelson-examples/rolling-update)
# Needs keelson, keelctl and kvctl on PATH. Addresses can be moved with
# STORE_IP, STORE_PORT, PEER_PORT and SERVER_PORT.
set -euo pipefail

W=${1:-/tmp/keelson-examples/rolling-update}
STORE_IP=${STORE_IP:-127.0.0.10}
STORE=http://$STORE_IP:${STORE_PORT:-2379}
PEER=http://$STORE_IP:${PEER_PORT:-2380}
SERVER_LISTEN=$STORE_IP:${SERVER_PORT:-8470}

rm -rf "$W"
mkdir -p "$W"
cd "$W"
: > timeline
: > reboot-requests

pids=()
cleanup() {
  for p in "${pids[@]}" "${engine[@]:-}" "${smith[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
declare -A engine smith

log() { echo "$*" | tee -a timeline; }
until_ok() { # until_ok WHAT COMMAND...: retries for up to 60 s
  local what=$1; shift
  for _ in $(seq 1 300); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $what" >&2
  exit 1
}

# 1. The cluster's store, where locksmith keeps its semaphore.
keelson kv --name store --data-dir "$W/store" \
  --listen-client-urls "$STORE" --advertise-client-urls "$STORE" \
  --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
  --initial-cluster "store=$PEER" 2> store.log &
pids+=($!)
until_ok "the store" kvctl --endpoints "$STORE" set /ready yes

# 2. The update server, with 766.3.0 signed by a key of our own.
keelctl update keygen --dir keys --name release
head -c 1048576 /dev/urandom > update.gz      # stands in for the USR image
keelctl update sign --key keys/release.key --release 766.3.0 update.gz
keelson update-server --listen "$SERVER_LISTEN" --data-dir srv > server.out 2> server.log &
pids+=($!)
until_ok "the update server" grep -q "^listening on " server.out
SERVER=$(sed -n 's/^listening on //p' server.out | head -n1)
keelctl update server --server "$SERVER" upload update.gz
# Safe mode (on by default, as in CoreUpdate) would let one canary machine
# update first and hold the rest back; the rollout here is locksmith's job.
keelctl update server --server "$SERVER" group create stable --safe-mode=false
keelctl update server --server "$SERVER" promote stable 766.3.0

# 3. One reboot at a time: a three-member cluster tolerates one failure.
keelctl locksmith --endpoint "$STORE" set-max 1

# 4. Three machines on 723.3.0, each with its A/B slots in a directory and the
# release key trusted.
boot() { # boot I ACTIVE: start machine I's update engine and locksmithd
  local i=$1 root=$W/core-0$1
  rm -f "$root/var/run/update-engine.sock"
  keelson update-engine --root "$root" --slots "dir:$root/slots" --active "$2" \
    --first-check-delay 3600 2>> "core-0$i.engine.log" &
  engine[$i]=$!
  until_ok "core-0$i's update engine" test -S "$root/var/run/update-engine.sock"
  keelson locksmith --root "$root" --endpoint "$STORE" --fleet-endpoint "" \
    --reboot-command "echo $i >> $W/reboot-requests" 2>> "core-0$i.locksmith.log" &
  smith[$i]=$!
}
for i in 1 2 3; do
  root=$W/core-0$i
  mkdir -p "$root/etc/coreos" "$root/usr/share/coreos" "$root/slots" \
    "$root/etc/keelson/update-keys"
  printf '%s\n' "$(printf "$i%.0s" $(seq 32))" > "$root/etc/machine-id"
  echo COREOS_RELEASE_VERSION=723.3.0 > "$root/usr/share/coreos/release"
  printf 'GROUP=stable\nSERVER=%s/v1/update/\nREBOOT_STRATEGY=etcd-lock\n' "$SERVER" \
    > "$root/etc/coreos/update.conf"
  cp keys/release.pub "$root/etc/keelson/update-keys/"
  truncate -s 4M "$root/slots/usr-a.img" "$root/slots/usr-b.img"
  echo '{"a":{"priority":2,"tries":0,"successful":true},"b":{"priority":1,"tries":0,"successful":false}}' \
    > "$root/slots/slots.json"
  boot "$i" a
done

# 5. Every machine checks at once, as after the release reached the channel.
for i in 1 2 3; do
  keelctl update --root "$W/core-0$i" check-for-update
done
log "all three machines asked for 766.3.0"

# 6. Play the machines' reboots as locksmithd asks for them.
holder() { # the machine IDs holding the reboot lock, one a line
  keelctl locksmith --endpoint "$STORE" status | sed -n '/^MACHINE ID$/,$p' | tail -n +2
}
handled=0
deadline=$((SECONDS + 150))
while [ "$handled" -lt 3 ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "timed out waiting for reboots" >&2; exit 1; }
  requests=$(wc -l < reboot-requests)
  if [ "$requests" -le "$handled" ]; then sleep 0.2; continue; fi
  handled=$((handled + 1))
  i=$(sed -n "${handled}p" reboot-requests)
  id=$(cat "$W/core-0$i/etc/machine-id")
  holders=$(holder | tr '\n' ' ')
  log "core-0$i reboots; lock holders: $holders"
  [ "$holders" = "$id " ] || log "VIOLATION: core-0$i reboots while the holders are: $holders"
  # The machine goes down: its daemons stop and /run is a fresh tmpfs; it
  # comes up from the new slot, whose /usr says 766.3.0.
  kill "${engine[$i]}" "${smith[$i]}"
  wait "${engine[$i]}" "${smith[$i]}" 2> /dev/null || true
  rm -rf "$W/core-0$i/run" "$W/core-0$i/var/run"
  echo COREOS_RELEASE_VERSION=766.3.0 > "$W/core-0$i/usr/share/coreos/release"
  boot "$i" boot
  log "core-0$i is up again"
done

# 7. The last machine gives the lock back once it is up.
until_ok "the lock to be free" sh -c "keelctl locksmith --endpoint $STORE status | grep -qx 'Available: 1'"
log "all machines rebooted; lock released"
for i in 1 2 3; do
  st=$(keelctl update --root "$W/core-0$i" status | tr '\n' ' ')
  slot=$(grep -o 'running from USR-[AB]' "core-0$i.engine.log" | tail -n 1)
  log "core-0$i: $(cat "$W/core-0$i/usr/share/coreos/release"), $slot, $st"
done
keelctl locksmith --endpoint "$STORE" status | tee -a timeline
