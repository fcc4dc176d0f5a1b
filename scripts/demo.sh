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
  if running; then
    # Instances outlive the daemon (it adopts them when it comes back); the demo's are stopped with it.
    export STRATA_TOKEN=$(cat "$DIR/admin.token")
    for name in $(bin/strata --json instance list demo 2>/dev/null | node -e "for (const i of JSON.parse(require('fs').readFileSync(0)).items) if (i.state === 'running' || i.state === 'paused') console.log(i.name)"); do
      bin/strata --reason "demo stop" instance stop "demo/$name" --force >/dev/null || true
    done
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    # Wait until it is gone, so that a demo started right after does not mistake it for a running one.
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"; echo "strata: stopped"
  else
    echo "strata: not running"
  fi
  exit 0
fi

mkdir -p "$DIR"
if ! running; then
  nohup bin/strata up --data-dir "$DIR" --api-listen "$LISTEN" --listen "http://${STRATA_GATEWAY:-127.0.0.1:8080}" >>"$DIR/strata.log" 2>&1 &
  echo $! > "$PIDFILE"
fi
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  running || { echo "strata: the daemon did not start; see $DIR/strata.log" >&2; tail -5 "$DIR/strata.log" >&2; exit 1; }
  sleep 0.1
done
export STRATA_TOKEN=$(cat "$DIR/admin.token")

# The demo: tenant `demo` with a site at each level this machine offers, all
# served by the gateway on $GATEWAY by name.
GATEWAY=${STRATA_GATEWAY:-127.0.0.1:8080}
cli() { bin/strata --reason "demo setup" "$@"; }
cli tenant show demo >/dev/null 2>&1 || cli tenant create demo --instances 10 --vcpus 8 --memory 8192 --sites 20 >/dev/null
cli user show demo-admin >/dev/null 2>&1 || cli user create demo-admin --role tenant-admin --tenant demo >/dev/null
# Docroots are keyed by the tenant's id (a later tenant of the same name starts empty).
DOCROOT="$DIR/docroots/$(bin/strata --json tenant show demo | node -e "console.log(JSON.parse(require('fs').readFileSync(0)).id)")/www"
mkdir -p "$DOCROOT"
[[ -f $DOCROOT/index.html ]] || echo '<h1>demo: a static docroot served by the gateway</h1>' > "$DOCROOT/index.html"
site() { cli site show demo "$1" >/dev/null 2>&1 || cli site add demo "$@" >/dev/null; }
site www.demo.localhost --static www
available() { bin/strata --json info | node -e "const i=JSON.parse(require('fs').readFileSync(0));process.exit(i.levels.some(l=>l.level==='$1'&&l.available)?0:1)"; }
site_instance() { bin/strata --json site show demo "$1" 2>/dev/null | node -e "try{const s=JSON.parse(require('fs').readFileSync(0));if(s.target&&s.target.instance)console.log(s.target.instance)}catch{}" || true; }
launch() { # NAME LEVEL HOST PORT [launch flags…]
  local name=$1 level=$2 host=$3 port=$4; shift 4
  available "$level" || { echo "  ($level level not available here: skipped)"; return 0; }
  # After a hot recovery the site names the guard's replacement (web-r1 …): keep that one running.
  local routed; routed=$(site_instance "$host")
  [[ -n $routed ]] && name=$routed
  if cli instance show "demo/$name" >/dev/null 2>&1; then
    cli --json instance show "demo/$name" | grep -q '"state": *"running"' || cli instance start "demo/$name" >/dev/null
  else
    cli instance launch "demo/$name" --level "$level" "$@" >/dev/null
  fi
  site "$host" --instance "$name" --port "$port"
}
launch api env api.demo.localhost 80 --source "$PWD/examples/hello-env.js"
launch web os web.demo.localhost 8080 --source busybox --memory 64
launch vm vm vm.demo.localhost 80 --memory 128
launch arm emu arm.demo.localhost 80 --memory 128 --config arch=aarch64

echo
echo "Sites on http://$GATEWAY (curl -H 'Host: NAME' http://$GATEWAY/):"
for host in www api web vm arm; do
  out=$(curl -fs --max-time 10 --retry 20 --retry-delay 1 --retry-all-errors -H "Host: $host.demo.localhost" "http://$GATEWAY/" | head -c 120 | tr '\n' ' ')
  printf '  %-22s %s\n' "$host.demo.localhost" "${out:-(no answer)}"
done

# The guard catching and undoing a tamper: deface the static site and the
# container's page (from the host side, as an attacker who got past the tenant
# boundary would); the guard sees the write (inotify + the signed checksum DB),
# raises the alert, and the visitor gets the clean content back — the docroot
# from its known-good copies, the container by a replacement restored from its
# known-good snapshot, with the site's route swapped and the defaced instance
# frozen for forensics.
echo
echo "The guard catches and undoes a tamper:"
serve() { curl -s --max-time 2 -H "Host: $1" "http://$GATEWAY/" | head -c 100 | tr '\n' ' '; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
until_served() { # HOST TEXT: polls the gateway until HOST answers TEXT
  for _ in $(seq 1 200); do [[ $(serve "$1") == "$2" ]] && return 0; sleep 0.02; done; return 1
}
sleep 2 # the guard baselines an instance a second after it starts, with a known-good snapshot
clean=$(serve www.demo.localhost)
t0=$(date +%s%N)
cp "$DOCROOT/index.html" "$DIR/.demo-index.html"
echo '<h1>defaced</h1>' > "$DOCROOT/index.html"
if until_served www.demo.localhost "$clean"; then
  echo "  www.demo.localhost  defaced index.html → clean again through the gateway after $(ms_since "$t0") ms"
else
  echo "  www.demo.localhost  still defaced: see bin/strata guard alerts"; cp "$DIR/.demo-index.html" "$DOCROOT/index.html"
fi
web=$(site_instance web.demo.localhost)
if [[ -n $web ]] && bin/strata --json instance show "demo/$web" 2>/dev/null | grep -q '"state": *"running"'; then
  id=$(bin/strata --json instance show "demo/$web" | node -e "console.log(JSON.parse(require('fs').readFileSync(0)).id)")
  page=/run/strata/os/rootfs/$id/www/index.html
  if [[ -f $page ]]; then
    clean=$(serve web.demo.localhost)
    t0=$(date +%s%N)
    echo 'defaced' > "$page"
    if until_served web.demo.localhost "$clean"; then
      now=$(site_instance web.demo.localhost)
      echo "  web.demo.localhost  defaced /www/index.html in demo/$web → clean again after $(ms_since "$t0") ms, served by demo/$now"
      echo "                      demo/$web is $(bin/strata --json instance show "demo/$web" | node -e "console.log(JSON.parse(require('fs').readFileSync(0)).state)"), kept for forensics; the demo removes it so it can run again"
      sleep 1; cli instance delete "demo/$web" >/dev/null 2>&1 || true
    else
      echo "  web.demo.localhost  still defaced: see bin/strata guard alerts"
    fi
  fi
fi
echo "  what the guard recorded (bin/strata guard alerts --tenant demo):"
bin/strata guard alerts --tenant demo --limit 4 | sed 's/^/    /'

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
