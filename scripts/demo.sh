#!/usr/bin/env bash
# Brings Strata up in the background with a demo, or stops it (`demo.sh stop`).
# Data in $STRATA_DATA_DIR (default /var/lib/strata), API on $STRATA_LISTEN
# (default 127.0.0.1:8470), daemon log in DIR/strata.log.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${STRATA_DATA_DIR:-/var/lib/strata}
LISTEN=${STRATA_LISTEN:-127.0.0.1:8470}
URL="http://$LISTEN"
PIDFILE="$DIR/strata.pid"
export STRATA_URL="$URL"

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [[ ${1:-} == stop ]]; then
  if running; then kill -TERM "$(cat "$PIDFILE")"; echo "strata: stopped"; else echo "strata: not running"; fi
  exit 0
fi

mkdir -p "$DIR"
if ! running; then
  nohup bin/strata up --data-dir "$DIR" --api-listen "$LISTEN" >>"$DIR/strata.log" 2>&1 &
  echo $! > "$PIDFILE"
fi
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  running || { echo "strata: the daemon did not start; see $DIR/strata.log" >&2; tail -5 "$DIR/strata.log" >&2; exit 1; }
  sleep 0.1
done
export STRATA_TOKEN=$(cat "$DIR/admin.token")

# The demo: a tenant with an admin user and a site. Levels add a demo instance each as they land.
bin/strata tenant show demo >/dev/null 2>&1 || bin/strata tenant create demo --instances 10 --vcpus 8 --memory 8192 --sites 20 >/dev/null
bin/strata user show demo-admin >/dev/null 2>&1 || bin/strata user create demo-admin --role tenant-admin --tenant demo >/dev/null
bin/strata site show demo www.demo.localhost >/dev/null 2>&1 || bin/strata --reason "demo setup" site add demo www.demo.localhost --static www >/dev/null

cat <<MSG

Strata is up: $URL  (pid $(cat "$PIDFILE"), log $DIR/strata.log)
Provider-admin token: $DIR/admin.token  (the CLI finds it; or export STRATA_TOKEN=\$(cat $DIR/admin.token))

  bin/strata info
  bin/strata tenant list
  bin/strata tenant create acme
  bin/strata audit verify

Stop it with: bash scripts/demo.sh stop
MSG
bin/strata info
