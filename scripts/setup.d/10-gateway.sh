#!/usr/bin/env bash
# The gateway's benchmark anchors: nginx (with the stream module, for the
# passthrough bench) and the wrk load generator; pebble for the ACME tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

APT_UPDATED=0
apt_ensure nginx libnginx-mod-stream wrk curl
# pebble (+ pebble-challtestsrv, its mock DNS): the ACME test server the ACME tests run on loopback.
apt_ensure pebble
# Only the benchmarks start nginx, with configs of their own.
if ((APT_UPDATED)); then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
