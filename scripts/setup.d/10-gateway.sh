#!/usr/bin/env bash
# The gateway's benchmark anchors: nginx (with the stream module, for the
# passthrough bench) and the wrk load generator. Idempotent.
set -euo pipefail
pkgs=(nginx libnginx-mod-stream wrk curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only the benchmarks start nginx, with configs of their own.
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
