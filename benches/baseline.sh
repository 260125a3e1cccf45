#!/usr/bin/env bash
# The baseline that matters (issue 12): the appliance against the deployment guilds run today,
# through the same WireGuard client, as ratios measured in one run.
#
#   sudo benches/baseline.sh          # as root; prints a markdown results block on stdout
#
# Two network namespaces joined by a veth pair (192.168.77.1 client, 192.168.77.2 server):
#   client side: one wireguard-go interface (10.88.88.2, the address `peer add` gave it) and
#                wrk; the same process and keys for both servers;
#   server side: (a) `appliance serve` on UDP 51820 (its own WireGuard, TCP/IP and hyper), or
#                (b) wireguard-go (UDP 51821, kernel interface 10.88.88.1/24) + kernel TCP +
#                examples/baseline_server.rs (hyper, bound to 10.88.88.1:8888) answering the
#                bodies the appliance itself answered on /api/v1/health and
#                /api/v1/openapi.json (fetched through the tunnel at start).
# Both servers run all the time; the client picks one by moving AllowedIPs 10.88.88.0/24 to
# that peer (`wg set`), then warms up with one request. Rounds alternate baseline, appliance.
# Figures per round: req/s of `wrk -t2 -c64` on /api/v1/health (serve runs with
# --max-connections-per-peer 128, so wrk measures serving), MB/s (wrk's MiB) of
# `wrk -t2 -c4` on /api/v1/openapi.json, CPU of the server side (appliance; wireguard-go +
# baseline_server), and the load average. Then the appliance is restarted with the default
# per-peer cap (32) and the same health wrk measures the over-cap case: total req/s, non-2xx
# (429) replies, socket errors. Then fairness (issue 12): a second client peer in a third
# namespace (192.168.78.1, its own wireguard-go) opens 4x the default per-peer cap (128
# connections) while the first peer's `wrk -t1 -c8` on /api/v1/health runs; its req/s against
# the same wrk alone, per round (goal: >= 0.8). Last, VmRSS/VmHWM of the appliance.
#
# Build: `cargo build --profile bench` (release code with symbols, for `perf record`; its output
# is target/release, shared with `cargo bench`) of the appliance and the example.
#
# Bounds and safety: traffic goes only between the two namespaces this script creates (the
# veth and the tunnel inside them); every command expected to finish runs under `timeout`; a
# watchdog ends the script after MAX_RUNTIME_S; the EXIT trap kills every process in both
# namespaces, deletes them and the temp dir (KEEP_TMP=1 keeps the logs; a failure keeps them).
#
# Knobs (environment): ROUNDS (3), WRK_DURATION (10s), BULK_CONNS (4), PROFILE (bench),
# MAX_RUNTIME_S (900), KEEP_TMP (0), SKIP_BUILD=1 (use the binaries already built), PERF=1 records `perf record -g` of the appliance during
# the first appliance health run into $TMP/perf.data (implies KEEP_TMP=1).
# BEFORE_BIN=PATH: another appliance binary (say, main's) measured in every round too, on the
# same data directory and flags (serve restarts with it, then with the binary under test), so
# before and after alternate in one run: its rows are its own ratios against the same-round
# baseline, and after/before per round; with PERF=1 its profile goes to $TMP/perf-before.data.
# The load-independent figure: server CPU time per health request (µs: CPU ticks of the server
# side during the run over wrk's request count), for every server.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

knobs ROUNDS=3 WRK_DURATION=10s BULK_CONNS=4 PROFILE=bench MAX_RUNTIME_S=900 KEEP_TMP=0 PERF=0 \
  BEFORE_BIN=
WRK_CONNS=64
[ "$PERF" = 1 ] && KEEP_TMP=1

TUN_IP=10.88.88.1
PORT=8888
APP_UDP=51820
BASE_UDP=51821
C_IP=192.168.77.1
S_IP=192.168.77.2

require_root
require_tools "iproute2 wireguard-tools wireguard-go wrk curl" ip wg wireguard-go wrk curl

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --profile $PROFILE --bin appliance --example baseline_server"
  timeout 3600 cargo build -q --profile "$PROFILE" --bin appliance --example baseline_server >&2
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$PROFILE; [ "$PROFILE" = bench ] && OUT=release
BIN=$TARGET/$OUT/appliance
BASE_BIN=$TARGET/$OUT/examples/baseline_server
[ -x "$BIN" ] && [ -x "$BASE_BIN" ] || die "the build did not produce $BIN and $BASE_BIN"
if [ -n "$BEFORE_BIN" ]; then
  [ -x "$BEFORE_BIN" ] || die "BEFORE_BIN=$BEFORE_BIN is not an executable"
  cmp -s "$BIN" "$BEFORE_BIN" && die "BEFORE_BIN is the same binary as $BIN: nothing to compare"
fi

NSC=apl-bc-$$
NSS=apl-bs-$$
NSC2=apl-bd-$$
bench_tmp apl-baseline
APP_PID=
WATCHDOG=
CLK_TCK=$(getconf CLK_TCK)

nsc() { in_ns "$NSC" "$@"; }
nss() { in_ns "$NSS" "$@"; }
nsc2() { in_ns "$NSC2" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_watchdog
  kill_ns "$NSC" "$NSS" "$NSC2"
  rm -f /var/run/wireguard/wgc$$.sock /var/run/wireguard/wgs$$.sock /var/run/wireguard/wgd$$.sock
  finish_tmp "$rc" "$TMP"/*.log
  exit "$rc"
}
trap_cleanup
start_watchdog "$MAX_RUNTIME_S"

# ---------------------------------------------------------------------------------------------
# Two namespaces and a veth between them

new_ns "$NSC"
new_ns "$NSS"
timeout 10 ip link add "vc$$" netns "$NSC" type veth peer name "vs$$" netns "$NSS"
timeout 10 ip -n "$NSC" addr add "$C_IP/24" dev "vc$$"
timeout 10 ip -n "$NSS" addr add "$S_IP/24" dev "vs$$"
timeout 10 ip -n "$NSC" link set "vc$$" up
timeout 10 ip -n "$NSS" link set "vs$$" up

RUN_BIN=$BIN
start_appliance() { # start_appliance [SERVE ARGS...]: (re)starts serve ($RUN_BIN), waits for control.sock
  if [ -n "$APP_PID" ]; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
  rm -f "$DATA/control.sock"
  ip netns exec "$NSS" env RUST_LOG=warn NO_COLOR=1 "$RUN_BIN" --data-dir "$DATA" serve \
    --listen "$S_IP:$APP_UDP" "$@" </dev/null >>"$TMP/serve.log" 2>&1 &
  APP_PID=$!
  wait_control_sock "$DATA" "$APP_PID"
}

nss 30 "$BIN" --data-dir "$DATA" init --endpoint "$S_IP:$APP_UDP" --listen-port "$APP_UDP" \
  >>"$TMP/init.log" 2>&1 || die "appliance init failed"
start_appliance --max-connections-per-peer 128
( umask 077; nss 30 "$BIN" --data-dir "$DATA" peer add bench --role viewer \
    >"$TMP/peer.conf" 2>"$TMP/peer.log" ) || die "appliance peer add failed"
conf() { # conf KEY: the first value of KEY in the printed wg-quick config
  awk -F' = ' -v k="$1" '$1 == k { print $2; exit }' "$TMP/peer.conf"
}
( umask 077
  conf PrivateKey >"$TMP/client.key"
  conf PresharedKey >"$TMP/psk"
  wg genkey >"$TMP/base.key" )
APP_PUB=$(conf PublicKey)
C_ADDR=$(conf Address)
[ -n "$APP_PUB" ] && [ -s "$TMP/client.key" ] && [ -s "$TMP/psk" ] && [ -n "$C_ADDR" ] \
  || die "could not read keys and address from the printed config (see $TMP/peer.conf)"
C_PUB=$(wg pubkey <"$TMP/client.key")
BASE_PUB=$(wg pubkey <"$TMP/base.key")

# Userspace WireGuard on both sides (foreground processes, killed with their namespace).
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1
ip netns exec "$NSC" wireguard-go -f "wgc$$" >>"$TMP/wg-client.log" 2>&1 &
ip netns exec "$NSS" wireguard-go -f "wgs$$" >>"$TMP/wg-server.log" 2>&1 &
for _ in $(seq 100); do
  [ -S "/var/run/wireguard/wgc$$.sock" ] && [ -S "/var/run/wireguard/wgs$$.sock" ] && break
  sleep 0.05
done
nsc 10 wg set "wgc$$" private-key "$TMP/client.key" \
  peer "$APP_PUB" preshared-key "$TMP/psk" endpoint "$S_IP:$APP_UDP" allowed-ips "$TUN_IP/32" \
  peer "$BASE_PUB" preshared-key "$TMP/psk" endpoint "$S_IP:$BASE_UDP"
timeout 10 ip -n "$NSC" addr add "$C_ADDR" dev "wgc$$"
timeout 10 ip -n "$NSC" link set "wgc$$" mtu 1420 up
timeout 10 ip -n "$NSC" route add 10.88.88.0/24 dev "wgc$$" 2>/dev/null || true
nss 10 wg set "wgs$$" private-key "$TMP/base.key" listen-port "$BASE_UDP" \
  peer "$C_PUB" preshared-key "$TMP/psk" allowed-ips "${C_ADDR%/*}/32"
timeout 10 ip -n "$NSS" addr add "$TUN_IP/24" dev "wgs$$"
timeout 10 ip -n "$NSS" link set "wgs$$" mtu 1420 up

use_server() { # use_server app|before|base: route the tunnel subnet to that peer, wait for a 200
  local pub=$APP_PUB code=000 want=
  [ "$1" = base ] && pub=$BASE_PUB
  # The appliance runs the binary under test (app) or BEFORE_BIN (before).
  case $1 in app) want=$BIN ;; before) want=$BEFORE_BIN ;; esac
  if [ -n "$want" ] && [ "$RUN_BIN" != "$want" ]; then
    RUN_BIN=$want
    start_appliance --max-connections-per-peer 128
  fi
  nsc 10 wg set "wgc$$" peer "$pub" allowed-ips 10.88.88.0/24
  for _ in $(seq 100); do
    code=$(nsc 5 curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 \
      "http://$TUN_IP:$PORT/api/v1/health" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "no 200 from the $1 server through the tunnel (last HTTP $code)"
}

use_server app
nsc 10 curl -sSf --max-time 5 -o "$TMP/health.json" "http://$TUN_IP:$PORT/api/v1/health" \
  || die "cannot fetch /api/v1/health"
nsc 10 curl -sSf --max-time 5 -o "$TMP/openapi.json" "http://$TUN_IP:$PORT/api/v1/openapi.json" \
  || die "cannot fetch /api/v1/openapi.json"
ip netns exec "$NSS" "$BASE_BIN" "$TUN_IP:$PORT" "/api/v1/health=$TMP/health.json" \
  "/api/v1/openapi.json=$TMP/openapi.json" >>"$TMP/baseline-server.log" 2>&1 &
BASE_SRV_PID=$!
sleep 0.3
use_server base

# ---------------------------------------------------------------------------------------------
# Figures

pid_of() { # pid_of NS COMM
  local p
  for p in $(timeout 10 ip netns pids "$1"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && { echo "$p"; return; }
  done
}
to_mib() { # wrk's "53.01MB" (binary units) -> MiB
  awk -v s="$1" 'BEGIN { n = s + 0; u = s; sub(/^[0-9.]+/, "", u);
    m = (u == "KB") ? 1 / 1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : 1 / 1048576;
    printf "%.1f", n * m }'
}
load1() { cut -d' ' -f1 /proc/loadavg; }
WGS_PID=$(pid_of "$NSS" wireguard-go)

# run_wrk NAME CONNS PATH: sets W_rps W_mib W_non2xx W_err W_cpu (server side, % of one core)
run_wrk() {
  local name=$1 conns=$2 path=$3 out=$TMP/wrk-$1-$RANDOM.txt c0 c1 t0 t1
  c0=$(server_ticks); t0=$(date +%s%N)
  nsc 60 wrk -t2 -c"$conns" -d"$WRK_DURATION" --timeout 5s "http://$TUN_IP:$PORT$path" \
    >"$out" 2>&1 || { cat "$out" >&2; die "wrk $name failed"; }
  t1=$(date +%s%N); c1=$(server_ticks)
  W_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  W_mib=$(to_mib "$(awk '/^Transfer\/sec:/ { print $2 }' "$out")")
  W_non2xx=$(awk '/Non-2xx/ { print $NF }' "$out"); W_non2xx=${W_non2xx:-0}
  W_total=$(awk '/requests in/ { print $1 }' "$out")
  W_err=$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print }' "$out")
  W_cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) \
    'BEGIN { printf "%.0f", 100 * d / hz / (ns / 1e9) }')
  W_us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="${W_total:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", 1e6 * d / hz / n; else print "nan" }')
  [ -n "$W_rps" ] || die "could not parse wrk output for $name: $(cat "$out")"
  log "$name: $W_rps req/s, $W_mib MiB/s, non-2xx $W_non2xx of $W_total${W_err:+, socket errors $W_err}, server CPU $W_cpu% ($W_us µs/request), load $(load1)"
}
SERVER=base
server_ticks() {
  if [ "$SERVER" != base ]; then cpu_ticks "$APP_PID"
  else echo $(( $(cpu_ticks "$WGS_PID") + $(cpu_ticks "$BASE_SRV_PID") )); fi
}

h_app=() h_base=() b_app=() b_base=() cpu_h_app=() cpu_h_base=() loads=() rounds_txt=""
us_app=() us_base=() h_before=() b_before=() cpu_h_before=() us_before=()
SERVERS="base app"
[ -n "$BEFORE_BIN" ] && SERVERS="base before app"
for round in $(seq "$ROUNDS"); do
  for SERVER in $SERVERS; do
    use_server "$SERVER"
    loads+=("$(load1)")
    PERF_PID=
    if [ "$SERVER" != base ] && [ "$PERF" = 1 ] && [ "$round" = 1 ]; then
      pdata=$TMP/perf.data
      [ "$SERVER" = before ] && pdata=$TMP/perf-before.data
      perf record -g -o "$pdata" -p "$APP_PID" -- sleep 8 >/dev/null 2>&1 &
      PERF_PID=$!
    fi
    run_wrk "$SERVER-health" "$WRK_CONNS" /api/v1/health
    case $SERVER in
      app) h_app+=("$W_rps"); cpu_h_app+=("$W_cpu"); us_app+=("$W_us") ;;
      before) h_before+=("$W_rps"); cpu_h_before+=("$W_cpu"); us_before+=("$W_us") ;;
      base) h_base+=("$W_rps"); cpu_h_base+=("$W_cpu"); us_base+=("$W_us") ;;
    esac
    [ -n "$PERF_PID" ] && { wait "$PERF_PID" || true; }
    run_wrk "$SERVER-openapi" "$BULK_CONNS" /api/v1/openapi.json
    case $SERVER in
      app) b_app+=("$W_mib") ;;
      before) b_before+=("$W_mib") ;;
      base) b_base+=("$W_mib") ;;
    esac
  done
  rounds_txt+="round $round: health ${h_base[-1]} / ${h_app[-1]} req/s, openapi ${b_base[-1]} / ${b_app[-1]} MiB/s${BEFORE_BIN:+ (before: ${h_before[-1]} req/s, ${b_before[-1]} MiB/s)}; "
done

# The default per-peer cap: wrk's 64 connections from one peer against 32 (+4 headroom).
RUN_BIN=$BIN
start_appliance
SERVER=app
use_server app
run_wrk app-health-default-cap "$WRK_CONNS" /api/v1/health
CAP_RPS=$W_rps CAP_NON2XX=$W_non2xx CAP_TOTAL=$W_total CAP_ERR=${W_err:-none} CAP_CPU=$W_cpu

# Fairness: a second peer (third namespace, own wireguard-go) opens 4x the default cap.
FAIR_VICTIM_CONNS=8
FAIR_HOG_CONNS=$((4 * 32))
( umask 077; nss 30 "$BIN" --data-dir "$DATA" peer add bench2 --role viewer \
    >"$TMP/peer2.conf" 2>>"$TMP/peer.log" ) || die "appliance peer add bench2 failed"
conf2() { awk -F' = ' -v k="$1" '$1 == k { print $2; exit }' "$TMP/peer2.conf"; }
( umask 077; conf2 PrivateKey >"$TMP/client2.key"; conf2 PresharedKey >"$TMP/psk2" )
C2_ADDR=$(conf2 Address)
timeout 10 ip netns add "$NSC2"
timeout 10 ip link add "vd$$" netns "$NSC2" type veth peer name "vt$$" netns "$NSS"
timeout 10 ip -n "$NSC2" addr add 192.168.78.1/24 dev "vd$$"
timeout 10 ip -n "$NSS" addr add 192.168.78.2/24 dev "vt$$"
timeout 10 ip -n "$NSC2" link set lo up
timeout 10 ip -n "$NSC2" link set "vd$$" up
timeout 10 ip -n "$NSS" link set "vt$$" up
timeout 10 ip -n "$NSC2" route add "$S_IP/32" via 192.168.78.2
ip netns exec "$NSC2" wireguard-go -f "wgd$$" >>"$TMP/wg-client2.log" 2>&1 &
for _ in $(seq 100); do [ -S "/var/run/wireguard/wgd$$.sock" ] && break; sleep 0.05; done
nsc2 10 wg set "wgd$$" private-key "$TMP/client2.key" \
  peer "$APP_PUB" preshared-key "$TMP/psk2" endpoint "$S_IP:$APP_UDP" allowed-ips 10.88.88.0/24
timeout 10 ip -n "$NSC2" addr add "$C2_ADDR" dev "wgd$$"
timeout 10 ip -n "$NSC2" link set "wgd$$" mtu 1420 up
timeout 10 ip -n "$NSC2" route add 10.88.88.0/24 dev "wgd$$" 2>/dev/null || true
code=000
for _ in $(seq 100); do
  code=$(nsc2 5 curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 \
    "http://$TUN_IP:$PORT/api/v1/health" || true)
  [ "$code" = 200 ] && break
  sleep 0.1
done
[ "$code" = 200 ] || die "no 200 for the second peer through the tunnel (last HTTP $code)"
victim_rps() { # victim_rps: req/s of the first peer's wrk -t1 -c8 on health
  local out=$TMP/wrk-fair-$RANDOM.txt
  nsc 60 wrk -t1 -c"$FAIR_VICTIM_CONNS" -d"$WRK_DURATION" --timeout 5s \
    "http://$TUN_IP:$PORT/api/v1/health" >"$out" 2>&1 || { cat "$out" >&2; die "wrk fairness failed"; }
  awk '/^Requests\/sec:/ { print $2 }' "$out"
}
beside_b() { # beside_b CONNS TAG: A's req/s while peer B runs wrk with CONNS connections
  local conns=$1 tag=$2
  nsc2 60 wrk -t1 -c"$conns" -d"$(( ${WRK_DURATION%s} + 2 ))s" --timeout 5s \
    "http://$TUN_IP:$PORT/api/v1/health" >"$TMP/wrk-$tag.txt" 2>&1 &
  local pid=$!
  sleep 1
  victim_rps
  wait "$pid" || true
}
b_summary() { # b_summary TAG: "N req/s, M non-2xx" of B's wrk
  local rps non2xx
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk-$1.txt")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk-$1.txt")
  echo "${rps:-?} req/s, ${non2xx:-0} non-2xx"
}
# A alone; A beside B using exactly its cap (32 connections, all admitted: plain competing
# load); A beside B opening 4x its cap (the 96 extra connections must be refused cheaply).
fair_alone=() fair_atcap=() fair_hogged=() fair_txt=""
for round in $(seq "$ROUNDS"); do
  fair_alone+=("$(victim_rps)")
  fair_atcap+=("$(beside_b 32 atcap-$round)")
  fair_hogged+=("$(beside_b "$FAIR_HOG_CONNS" hog-$round)")
  fair_txt+="round $round: A ${fair_alone[-1]} alone, ${fair_atcap[-1]} beside B at its cap (B $(b_summary atcap-$round)), ${fair_hogged[-1]} beside B at 4x (B $(b_summary hog-$round)); "
  log "fairness round $round: ${fair_alone[-1]} alone, ${fair_atcap[-1]} beside B at cap, ${fair_hogged[-1]} beside B at 4x, load $(load1)"
done
F_A=$(printf '%s\n' "${fair_alone[@]}" | median); F_H=$(printf '%s\n' "${fair_hogged[@]}" | median)
F_C=$(printf '%s\n' "${fair_atcap[@]}" | median)

sleep 1
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$APP_PID/status")
HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$APP_PID/status")

H_A=$(printf '%s\n' "${h_app[@]}" | median); H_B=$(printf '%s\n' "${h_base[@]}" | median)
B_A=$(printf '%s\n' "${b_app[@]}" | median); B_B=$(printf '%s\n' "${b_base[@]}" | median)
C_A=$(printf '%s\n' "${cpu_h_app[@]}" | median); C_B=$(printf '%s\n' "${cpu_h_base[@]}" | median)
U_A=$(printf '%s\n' "${us_app[@]}" | median); U_B=$(printf '%s\n' "${us_base[@]}" | median)
per_round_ratio() { # per_round_ratio APP[@] BASE[@] -> "r1 r2 ..."
  local -n a=$1 b=$2; local i out=""
  for i in "${!a[@]}"; do out+="$(ratio "${a[$i]}" "${b[$i]}") "; done
  echo "${out% }"
}
OPENAPI_BYTES=$(stat -c %s "$TMP/openapi.json")
HEALTH_BYTES=$(stat -c %s "$TMP/health.json")

cat <<EOF

### Two namespaces, wireguard-go client ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown), profile $PROFILE, ROUNDS=$ROUNDS, medians; load average (1 min) at each run: ${loads[*]})

| figure | appliance | baseline: wireguard-go + kernel TCP + hyper (same run) | ratio (median; per round) |
| --- | ---: | ---: | --- |
| \`GET /api/v1/health\` ($HEALTH_BYTES B), \`wrk -t2 -c$WRK_CONNS -d$WRK_DURATION\`, req/s, cap 128 | $H_A | $H_B | **$(ratio "$H_A" "$H_B")**; $(per_round_ratio h_app h_base) |
| \`GET /api/v1/openapi.json\` ($OPENAPI_BYTES B), \`wrk -t2 -c$BULK_CONNS\`, MiB/s | $B_A | $B_B | **$(ratio "$B_A" "$B_B")**; $(per_round_ratio b_app b_base) |
| server-side CPU during the health run, % of one core | $C_A | $C_B (wireguard-go + hyper) | $(ratio "$C_A" "$C_B") |
| server CPU time per health request, µs (lower is better) | $U_A | $U_B (wireguard-go + hyper) | $(ratio "$U_A" "$U_B"); $(per_round_ratio us_app us_base) |
| default per-peer cap (32), 64 connections: req/s of all replies; 429s of all replies; socket errors | $CAP_RPS; $CAP_NON2XX of $CAP_TOTAL; $CAP_ERR (server CPU $CAP_CPU%) | — | — |
| fairness: peer A \`wrk -t1 -c$FAIR_VICTIM_CONNS\` req/s while peer B opens $FAIR_HOG_CONNS connections (4× cap 32), against A alone (goal ≥ 0.8) | $F_H | $F_A (A alone) | **$(ratio "$F_H" "$F_A")**; $(per_round_ratio fair_hogged fair_alone) |
| fairness, cost of the over-cap connections only: A beside B at 4× cap, against A beside B using exactly its cap (32) | $F_H | $F_C (B at cap) | **$(ratio "$F_H" "$F_C")**; $(per_round_ratio fair_hogged fair_atcap) |
| appliance VmRSS / VmHWM after the load | $((RSS_KB / 1024)) MiB / $((HWM_KB / 1024)) MiB | — | — |

Per round (baseline / appliance): $rounds_txt

Fairness per round: $fair_txt
EOF
if [ -n "$BEFORE_BIN" ]; then
  H_P=$(printf '%s\n' "${h_before[@]}" | median); B_P=$(printf '%s\n' "${b_before[@]}" | median)
  U_P=$(printf '%s\n' "${us_before[@]}" | median); C_P=$(printf '%s\n' "${cpu_h_before[@]}" | median)
  cat <<EOF

Before and after in the same run (before: \`$BEFORE_BIN\`, measured in each round right before the binary under test):

| figure | before | after | baseline | before / baseline (median; per round) | after / baseline (median; per round) | after / before, per round |
| --- | ---: | ---: | ---: | --- | --- | --- |
| health req/s | $H_P | $H_A | $H_B | **$(ratio "$H_P" "$H_B")**; $(per_round_ratio h_before h_base) | **$(ratio "$H_A" "$H_B")**; $(per_round_ratio h_app h_base) | $(per_round_ratio h_app h_before) |
| openapi MiB/s | $B_P | $B_A | $B_B | **$(ratio "$B_P" "$B_B")**; $(per_round_ratio b_before b_base) | **$(ratio "$B_A" "$B_B")**; $(per_round_ratio b_app b_base) | $(per_round_ratio b_app b_before) |
| server CPU µs per health request | $U_P | $U_A | $U_B | $(ratio "$U_P" "$U_B"); $(per_round_ratio us_before us_base) | $(ratio "$U_A" "$U_B"); $(per_round_ratio us_app us_base) | $(per_round_ratio us_app us_before) |
| server CPU during health, % of one core | $C_P | $C_A | $C_B | — | — | — |
EOF
fi
