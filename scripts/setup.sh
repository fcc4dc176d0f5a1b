#!/usr/bin/env bash
# Installs everything Strata needs on Debian 12 (as root): Debian packages, npm
# packages, and the build. Idempotent, and quick when already done: each step
# checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh

# Debian packages the build needs; each level's step in setup.d adds its own.
apt_ensure build-essential python3 sqlite3 ca-certificates curl

# npm packages: reinstall only when the lockfile changed since the last install.
stamp=node_modules/.strata-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  say "installing npm packages (native modules build from source; this takes a few minutes)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The build (incremental).
say "building"
npx --no-install tsc -p tsconfig.json
chmod +x bin/strata 2>/dev/null || true

# Each level or feature that needs more (Debian packages, built-in images, kernel
# facilities) has its own idempotent step here, run in name order.
for step in scripts/setup.d/*.sh; do
  [[ -e $step ]] || continue
  bash "$step"
done
