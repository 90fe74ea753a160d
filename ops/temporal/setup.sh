#!/bin/sh
# ACCI's namespace and search attributes (the arguments, each a Keyword), once the Temporal
# server at $TEMPORAL_ADDRESS answers. Safe to re-run: what exists already is left as it is.
set -eu
: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS names the Temporal frontend (host:port)}"
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
RETENTION=${TEMPORAL_NAMESPACE_RETENTION:-72h}
ATTEMPTS=${TEMPORAL_SETUP_ATTEMPTS:-90}

retry() { # what, command...
  what=$1
  shift
  attempt=1
  until "$@"; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
      echo "temporal-setup: gave up waiting for $what" >&2
      exit 1
    fi
    echo "temporal-setup: waiting for $what ($attempt/$ATTEMPTS)"
    attempt=$((attempt + 1))
    sleep 2
  done
}

namespace() {
  temporal operator namespace describe -n "$NAMESPACE" >/dev/null 2>&1 ||
    temporal operator namespace create -n "$NAMESPACE" --retention "$RETENTION"
}

# A namespace just created takes a moment to reach every server role: until then registering an
# attribute fails, and is tried again.
attribute() { # name
  temporal operator search-attribute list -n "$NAMESPACE" 2>/dev/null | grep -qw "$1" ||
    temporal operator search-attribute create -n "$NAMESPACE" --name "$1" --type Keyword
}

retry "the Temporal server at $TEMPORAL_ADDRESS" temporal operator cluster health
retry "namespace $NAMESPACE" namespace
for name in "$@"; do
  retry "search attribute $name" attribute "$name"
done
echo "temporal-setup: namespace $NAMESPACE has search attributes: $*"
