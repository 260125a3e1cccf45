#!/usr/bin/env bash
# Durable job creates the way a user makes them (issue 12: ">= 5,000/s with 16 concurrent
# callers through group commit"): HTTP POST /api/v1/jobs through a real wireguard-go tunnel,
# each 201 sent only once the job is on disk.
#
#   sudo benches/creates.sh           # as root; prints a markdown results block on stdout
#
# What it does: one network namespace (loopback only) with `appliance serve` in it and a
# wireguard-go client (`peer add bench --role officer`, brought up with wg-quick); then wrk
# -t2 -cCONNS posts jobs (a unique name each, `every 24h`, a webhook that never fires while
# the bench runs) for DURATION, ROUNDS times. `serve` runs with `--write-rate 1000000` (its
# per-peer write limit, 10/s by default, would otherwise measure the limiter). Every reply must
# be a 201: any other status, or fewer jobs in `appliance status --json` than wrk counted
# replies, fails the run. Figures per round: creates/s, the appliance's CPU per create (µs,
# from /proc ticks), the CPU the rest of the box spent per create meanwhile (the client: wrk,
# wireguard-go and their kernel work), how busy the box was, the creates per group commit (from
# /metrics; n/a for a binary without those counters), and the disk's fdatasync/s just
# before (a 4 KiB write + fdatasync loop in the data directory: the commit's own cost on this
# disk, for reading the rates).
# BEFORE_BIN=PATH: another appliance binary (say, main's) measured in every round too, on the
# same data directory, alternating with the binary under test, so rounds compare in one run.
#
# Bounds and safety: traffic goes only to 10.88.88.1 inside the namespace this script creates;
# every command expected to finish runs under `timeout`; a watchdog ends the script after
# MAX_RUNTIME_S; the EXIT trap runs `wg-quick down`, stops every process in the namespace,
# deletes it and removes the temp dir (KEEP_TMP=1 keeps the logs; a failure always keeps them).
#
# Knobs (environment): BIN (the appliance binary; default: the release build), ROUNDS (3),
# DURATION (10s), CONNS (16), BEFORE_BIN, MAX_RUNTIME_S (900), KEEP_TMP (0).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

knobs ROUNDS=3 DURATION=10s CONNS=16 BEFORE_BIN= MAX_RUNTIME_S=900 KEEP_TMP=0
APPLIANCE_IP=10.88.88.1
WG_PORT=51820 # inside our own namespace: cannot clash with the host's

require_root
require_tools "iproute2 wireguard-tools wireguard-go wrk curl" ip wg wg-quick wireguard-go wrk curl
release_bin
if [ -n "$BEFORE_BIN" ]; then
  [ -x "$BEFORE_BIN" ] || die "BEFORE_BIN=$BEFORE_BIN is not an executable"
  cmp -s "$BIN" "$BEFORE_BIN" && die "BEFORE_BIN is the same binary as $BIN: nothing to compare"
fi

one_ns_run creates wgc
APP_PID=
WATCHDOG=
NS_CREATED=0
CLK_TCK=$(getconf CLK_TCK)
nsx() { in_ns "$NS" "$@"; }
wg_quick() { wg_quick_in "$NS" "$CONF" "$TMP/wg.log" "$1"; }

stop_app() {
  stop_pid "$APP_PID"
  APP_PID=
}

cleanup() {
  local rc=$?
  set +e
  stop_watchdog
  if [ "$NS_CREATED" = 1 ]; then
    wg_quick_down_if_up
    stop_app
    kill_ns "$NS"
  fi
  rm -f "/var/run/wireguard/$IFACE.sock"
  finish_tmp "$rc" "$TMP"/serve-*.log "$TMP"/wg.log
  exit "$rc"
}
trap_cleanup
start_watchdog "$MAX_RUNTIME_S"
new_ns "$NS"
NS_CREATED=1

HEALTH=http://$APPLIANCE_IP:8888/api/v1/health

start_app() { # start_app BINARY NAME: serve from BINARY until the tunnel answers health
  ip netns exec "$NS" env RUST_LOG=warn NO_COLOR=1 "$1" --data-dir "$DATA" serve \
    --write-rate 1000000 </dev/null >>"$TMP/serve-$2.log" 2>&1 &
  APP_PID=$!
  wait_control_sock "$DATA" "$APP_PID"
}

wait_health() {
  local deadline=$(($(now_ns) + 30000000000)) code=000
  while [ "$(now_ns)" -lt "$deadline" ]; do
    code=$(nsx 5 curl -s -o /dev/null -w '%{http_code}' --connect-timeout 0.5 --max-time 1 "$HEALTH" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.05
  done
  die "no 200 from $HEALTH within 30 s"
}

fsync_rate() { # fdatasync/s of 200 4 KiB writes in the data directory (python3: one process)
  python3 - "$DATA" <<'EOF'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
t = time.monotonic()
for _ in range(200):
    os.pwrite(fd, b"\x5a" * 4096, 0)
    os.fdatasync(fd)
print(f"{200 / (time.monotonic() - t):.0f}")
os.close(fd)
os.unlink(p)
EOF
}

box_ticks() { # "busy total": the box's CPU ticks, busy (not idle or iowait) and all, from /proc/stat
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}

group_commits() { # "commits changes" from the server's /metrics (0 0 where a binary has none)
  nsx 10 curl -s --max-time 5 "http://$APPLIANCE_IP:8888/metrics" | awk '
    $1 == "appliance_store_group_commits_total" { c = $2 }
    $1 == "appliance_store_group_commit_changes_total" { n = $2 }
    END { print c + 0, n + 0 }'
}

job_count() {
  nsx 30 "$BIN" --data-dir "$DATA" status --json | python3 -c \
    'import json, sys; s = json.load(sys.stdin); print(s["jobs"]["total"] if isinstance(s["jobs"], dict) else s["jobs"])'
}

cat >"$TMP/create.lua" <<'EOF'
-- Each wrk thread posts jobs named bench-<round>-<thread>-<n>: unique across the run.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  prefix = args[1]
  n = 0
end
function request()
  n = n + 1
  local body = string.format(
    '{"name":"bench-%s-%d-%d","trigger":{"every":"24h"},' ..
    '"action":{"webhook":{"url":"https://discord.com/api/webhooks/1/bench"}}}', prefix, tid, n)
  return wrk.format("POST", "/api/v1/jobs", {["Content-Type"] = "application/json"}, body)
end
EOF

# ---------------------------------------------------------------------------------------------

log "namespace $NS, interface $IFACE, temp dir $TMP"
nsx 30 "$BIN" --data-dir "$DATA" init --endpoint "127.0.0.1:$WG_PORT" --listen-port "$WG_PORT" \
  >>"$TMP/init.log" 2>&1 || { cat "$TMP/init.log" >&2; die "appliance init failed"; }
start_app "$BIN" after
( umask 077; nsx 30 "$BIN" --data-dir "$DATA" peer add bench --role officer >"$CONF" 2>"$TMP/peer.log" ) \
  || { cat "$TMP/peer.log" >&2; die "appliance peer add failed"; }
wg_quick up || die "wg-quick up failed (see $TMP/wg.log)"
wait_health

BINS=(after)
[ -n "$BEFORE_BIN" ] && BINS=(after before)
declare -A RATES CPUS RESTS
counted=0
ROWS=""
for round in $(seq "$ROUNDS"); do
  for which in "${BINS[@]}"; do
    bin=$BIN
    [ "$which" = before ] && bin=$BEFORE_BIN
    if [ "$bin" != "$BIN" ] || [ -z "$APP_PID" ]; then
      stop_app
      start_app "$bin" "$which"
      wait_health
    fi
    syncs=$(fsync_rate)
    out=$TMP/wrk-$round-$which.txt
    a0=$(cpu_ticks "$APP_PID")
    b0=$(box_ticks)
    g0=$(group_commits)
    nsx 120 wrk -t2 -c"$CONNS" -d"$DURATION" --timeout 10s -s "$TMP/create.lua" \
      "http://$APPLIANCE_IP:8888" -- "$round$which" >"$out" 2>&1 \
      || { cat "$out" >&2; die "wrk failed"; }
    a1=$(cpu_ticks "$APP_PID")
    b1=$(box_ticks)
    g1=$(group_commits)
    rate=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
    n=$(awk '/requests in/ { print $1 }' "$out")
    if grep -q -E 'Non-2xx|Socket errors' "$out"; then
      cat "$out" >&2
      die "round $round ($which): a reply other than 201, or a socket error"
    fi
    counted=$((counted + n))
    cpu=$(awk -v d=$((a1 - a0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.0f", 1e6 * d / hz / n }')
    # Everything else the box did meanwhile (wrk, wireguard-go, their kernel work), and how busy
    # it was: the rate is the box's CPU divided by the CPU of a create, both sides counted.
    rest=$(echo "$b0 $b1" | awk -v a=$((a1 - a0)) -v hz="$CLK_TCK" -v n="$n" \
      '{ printf "%.0f", 1e6 * ($3 - $1 - a) / hz / n }')
    busy=$(echo "$b0 $b1" | awk '{ printf "%.0f", 100 * ($3 - $1) / ($4 - $2) }')
    batch=$(echo "$g0 $g1" | awk '{ if ($3 > $1) printf "%.1f", ($4 - $2) / ($3 - $1); else print "n/a" }')
    RATES[$which]+="$rate "
    CPUS[$which]+="$cpu "
    RESTS[$which]+="$rest "
    ROWS+="| $round | $which | $rate | $cpu | $rest | $busy | $batch | $syncs |"$'\n'
    log "round $round $which: $rate creates/s ($n in $DURATION, $cpu µs appliance CPU each, $rest µs the rest of the box, $busy % busy, $batch creates per commit), disk $syncs fdatasync/s"
    [ "$bin" = "$BIN" ] || stop_app
  done
done
[ -n "$APP_PID" ] || { start_app "$BIN" after; wait_health; }
jobs=$(job_count)
log "jobs stored: $jobs; 201s wrk counted: $counted"
[ "$jobs" -ge "$counted" ] || die "only $jobs jobs stored for $counted acknowledged creates"

med() { tr ' ' '\n' | grep -v '^$' | median; }
echo "### Durable creates through the tunnel ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "\`sudo benches/creates.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS${BEFORE_BIN:+ BEFORE_BIN=$BEFORE_BIN}); every reply a 201; $jobs jobs stored for $counted counted 201s."
echo
echo "| round | binary | creates/s | appliance CPU µs per create | rest of the box (client) µs per create | box busy % | creates per commit | disk fdatasync/s before |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s' "$ROWS"
for which in "${BINS[@]}"; do
  echo "| median | $which | $(echo "${RATES[$which]}" | med) | $(echo "${CPUS[$which]}" | med) | $(echo "${RESTS[$which]}" | med) | | | |"
done
if [ -n "$BEFORE_BIN" ]; then
  echo
  echo "after / before (medians): $(ratio "$(echo "${RATES[after]}" | med)" "$(echo "${RATES[before]}" | med)")"
fi
