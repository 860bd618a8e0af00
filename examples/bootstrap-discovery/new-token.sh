#!/bin/sh
# Makes the discovery token the cloud-configs name, for a cluster of 3, the
# way https://discovery.etcd.io/new?size=3 did: the size goes under
# _etcd/registry/<token>/_config/ of the discovery store.
set -e
DISCOVERY=${DISCOVERY:-http://127.0.0.1:4001}
TOKEN=${1:-book-token}
curl -sS -f -X PUT "$DISCOVERY/v2/keys/_etcd/registry/$TOKEN/_config/size" -d value=3
echo
echo "discovery URL: $DISCOVERY/v2/keys/_etcd/registry/$TOKEN"
