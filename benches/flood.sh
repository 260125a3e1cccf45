#!/usr/bin/env bash
# Handshake floods (issue 13 item 9): how much of its request rate a working peer keeps while
# someone floods the appliance's UDP port, and how long a fresh `wg-quick up` takes meanwhile.
#
#   sudo benches/flood.sh            # as root; prints a markdown results block on stdout
#
# In its own network namespace (loopback only): `appliance init/serve` on 127.0.0.1:PORT,
# `peer add`, and the printed config brought up with wg-quick (wireguard-go). The working peer
# runs `wrk -t1 -c8 -d WRK_DURATION` on /api/v1/health through the tunnel. Each round measures
# it without a flood and under each flood of benches/flood.py (garbage, initiations with a bad
# mac1, initiations with a valid mac1 and random contents, i.e. the X25519 work of random keys),
# sent from 127.0.0.2 to the appliance's port as fast as one Python process can. Reported: the
# median rate under each flood as a ratio to the median rate without one, each round's own
# ratio, and the appliance's CPU time during each wrk run (% of one core, median: what the
# flood costs the appliance itself, as opposed to the machine). Then, during a
# valid-mac1 flood, ms from `wg-quick up` of a fresh interface (down first) to the first HTTP 200.
#
# Bounds and safety: traffic goes only to 127.0.0.1/127.0.0.2 and 10.88.88.1 inside the
# namespace this script creates; everything runs under `timeout`; the EXIT trap stops every
# process in the namespace and deletes it; a watchdog ends the script after MAX_RUNTIME_S.
#
# Knobs (environment): BIN (the appliance binary; default: `cargo build --release`),
# ROUNDS (2), WRK_DURATION (8s), UP_REPS (3), MAX_RUNTIME_S (600), KEEP_TMP (0).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

knobs ROUNDS=2 WRK_DURATION=8s UP_REPS=3 MAX_RUNTIME_S=600 KEEP_TMP=0
WG_PORT=51820
HEALTH=http://10.88.88.1:8888/api/v1/health

require_root
require_tools "iproute2 wireguard-tools wireguard-go wrk curl python3" \
  ip wg-quick wireguard-go wrk curl python3

release_bin

one_ns_run flood wgf
APP_PID=
NS_CREATED=0

nsx() { in_ns "$NS" "$@"; }
wg_quick() { wg_quick_in "$NS" "$CONF" "$TMP/wg.log" "$1"; }

cleanup() {
  local rc=$?
  set +e
  stop_watchdog
  if [ "$NS_CREATED" = 1 ]; then
    ip -n "$NS" link show "$IFACE" >/dev/null 2>&1 && wg_quick down
    kill_ns "$NS"
  fi
  rm -f "/var/run/wireguard/$IFACE.sock"
  finish_tmp "$rc" "$TMP"/serve.log "$TMP"/wg.log
  exit "$rc"
}
trap_cleanup
start_watchdog "$MAX_RUNTIME_S"

new_ns "$NS"
NS_CREATED=1

nsx 30 "$BIN" --data-dir "$DATA" init --endpoint "127.0.0.1:$WG_PORT" --listen-port "$WG_PORT" \
  >>"$TMP/init.log" 2>&1 || { cat "$TMP/init.log" >&2; die "appliance init failed"; }
ip netns exec "$NS" env RUST_LOG=warn NO_COLOR=1 "$BIN" --data-dir "$DATA" serve \
  </dev/null >"$TMP/serve.log" 2>&1 &
APP_PID=$!
wait_control_sock "$DATA" "$APP_PID"
( umask 077; nsx 30 "$BIN" --data-dir "$DATA" peer add worker --role viewer >"$CONF" 2>"$TMP/peer.log" ) \
  || { cat "$TMP/peer.log" >&2; die "appliance peer add failed"; }
SERVER_KEY=$(awk -F' = ' '/^PublicKey/ { print $2; exit }' "$CONF")
[ -n "$SERVER_KEY" ] || die "no server PublicKey in the printed config"
wg_quick up || die "wg-quick up failed (see $TMP/wg.log)"

try_health() { # try_health: succeeds at the first 200 from $HEALTH, fails after 30 s
  local t0 code deadline
  t0=$(now_ns); deadline=$((t0 + 30000000000)); code=000
  while [ "$(now_ns)" -lt "$deadline" ]; do
    code=$(nsx 5 curl -s -o /dev/null -w '%{http_code}' --connect-timeout 0.5 --max-time 1 "$HEALTH" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.01
  done
  return 1
}
wait_health() { try_health || die "no 200 from $HEALTH within 30 s"; }
wait_health

start_flood() { # start_flood MODE SECONDS: sets FLOOD_PID, output in $TMP/flood-MODE.out
  ip netns exec "$NS" timeout -k 5 $(( $2 + 10 )) python3 "$ROOT/benches/flood.py" --mode "$1" \
    --target "127.0.0.1:$WG_PORT" --source 127.0.0.2 --server-key "$SERVER_KEY" \
    --seconds "$2" >"$TMP/flood-$1.out" 2>&1 &
  FLOOD_PID=$!
  sleep 1
}
flood_rate() { awk '/^SENT/ { printf "%.0f", $2 / $3 }' "$TMP/flood-$1.out"; }

run_wrk() { # run_wrk: requests/s of the working peer into R_rps
  local out=$TMP/wrk-$RANDOM.txt
  nsx 60 wrk -t1 -c8 -d"$WRK_DURATION" --timeout 5s "$HEALTH" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
  R_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  [ -n "$R_rps" ] || die "could not parse wrk output: $(cat "$out")"
}

declare -A rates=() sent=() cpu=() per_round=()
TCK=$(getconf CLK_TCK)
FLOOD_PID=
MODES=(none garbage badmac validmac)
secs=${WRK_DURATION%s}
for round in $(seq "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    if [ "$mode" != none ]; then start_flood "$mode" $((secs + 2)); fi
    c0=$(cpu_ticks "$APP_PID")
    run_wrk
    cpu[$mode]="${cpu[$mode]:-} $(( ($(cpu_ticks "$APP_PID") - c0) * 100 / TCK / secs ))"
    if [ "$mode" != none ]; then
      wait "$FLOOD_PID" || true
      sent[$mode]="${sent[$mode]:-} $(flood_rate "$mode")"
    fi
    rates[$mode]="${rates[$mode]:-} $R_rps"
    if [ "$mode" = none ]; then
      round_base=$R_rps
    else
      per_round[$mode]="${per_round[$mode]:-} $(ratio "$R_rps" "$round_base")"
    fi
    log "round $round, flood $mode: $R_rps req/s${FLOOD_PID:+ (flood sent $(flood_rate "$mode") datagrams/s)}"
    FLOOD_PID=
    wait_health
  done
done

# A fresh handshake during a valid-mac1 flood: wg-quick down, up, first 200.
up_ms=()
for rep in $(seq "$UP_REPS"); do
  start_flood validmac 40
  wg_quick down || die "wg-quick down failed"
  t0=$(now_ns)
  wg_quick up || die "wg-quick up failed"
  if try_health; then up_ms+=("$(( ($(now_ns) - t0) / 1000000 ))"); else up_ms+=(">30000"); fi
  log "fresh handshake #$rep during the valid-mac1 flood: first 200 after ${up_ms[-1]} ms"
  kill -TERM "$FLOOD_PID" 2>/dev/null || true
  wait "$FLOOD_PID" 2>/dev/null || true
  sleep 1
  wait_health
done
# The same without a flood, for comparison.
base_up=()
for rep in $(seq "$UP_REPS"); do
  wg_quick down || die "wg-quick down failed"
  t0=$(now_ns)
  wg_quick up || die "wg-quick up failed"
  wait_health
  base_up+=("$(( ($(now_ns) - t0) / 1000000 ))")
  sleep 1
done

med() { printf '%s\n' $1 | median; }
BASE=$(med "${rates[none]}")
echo "| flood | flood datagrams/s (median) | working peer req/s (median; runs) | ratio to no flood | per round | appliance CPU, % of a core (median) |"
echo "| --- | ---: | --- | ---: | --- | ---: |"
echo "| none | — | $BASE (${rates[none]# }) | 1.00 | | $(med "${cpu[none]}") |"
for mode in garbage badmac validmac; do
  m=$(med "${rates[$mode]}")
  echo "| $mode | $(med "${sent[$mode]}") | $m (${rates[$mode]# }) | $(ratio "$m" "$BASE") | ${per_round[$mode]# } | $(med "${cpu[$mode]}") |"
done
echo
echo "Fresh \`wg-quick up\` to first 200: during the valid-mac1 flood ${up_ms[*]} ms (median $(printf '%s\n' "${up_ms[@]}" | sed 's/>//' | median)); without a flood ${base_up[*]} ms (median $(printf '%s\n' "${base_up[@]}" | median))."
echo "Binary: $BIN ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo -dirty)); load average $(cut -d' ' -f1-3 /proc/loadavg)."
