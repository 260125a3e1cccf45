#!/usr/bin/env bash
# End-to-end performance of the appliance through a real wireguard-go client, each figure next
# to a baseline measured in the same run (STYLE.md rule 11: ratios, not absolute numbers).
#
#   sudo benches/tunnel.sh            # as root; prints a markdown results block on stdout
#
# What it does: `cargo build --release --bin appliance` (unless BIN names a binary); creates its
# own network namespace (loopback only); inside it runs `appliance init --endpoint
# 127.0.0.1:PORT --listen-port PORT`, `appliance serve` (RUST_LOG=warn), `appliance peer add`,
# writes the printed config to <iface>.conf and brings it up with `wg-quick up`
# (WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go). Then it measures:
#   a. ms from the start of `wg-quick up` to the first HTTP 200 of /api/v1/health (5 down/up
#      cycles, median);
#   b. requests/s of `wrk -t2 -c64 -d10s` on /api/v1/health through the tunnel, against the same
#      wrk on nginx (Debian nginx-light, one worker, same body) over the namespace's loopback;
#   c. ICMP echo round trips/s of `ping -f -c 20000 -s 1392` (1392 = 1420 MTU - 20 IP - 8 ICMP,
#      the largest echo that fits the tunnel) through the tunnel, against the same flood ping on
#      127.0.0.1 (one echo in flight, so this is a round-trip rate), and the same with
#      `-l PING_PRELOAD` echoes in flight (closer to a packet throughput); and bytes/s of wrk on
#      the dashboard `GET /` (~0.7-1 KB), against nginx serving the same bytes;
#   d. the appliance's CPU time over IDLE_S seconds of idle after the load (want ~0);
#   e. the appliance's VmRSS / VmHWM after the load.
# Tunnel and baseline runs alternate, ROUNDS times each; the medians are compared.
#
# Bounds and safety: traffic goes only to 127.0.0.1 and 10.88.88.1 inside the namespace this
# script creates; every command expected to finish runs under `timeout`, the two servers
# (`appliance serve`, nginx) are stopped by the trap, and a watchdog ends the script after
# MAX_RUNTIME_S; the EXIT trap runs `wg-quick down`, stops every process in the namespace,
# deletes it and removes the temp dir (KEEP_TMP=1 keeps the logs; a failure always keeps them).
# `serve` gets `--max-connections-per-peer 2*64` where it has that flag, so that wrk's 64
# connections from one peer measure serving, not the per-peer cap's 429s.
#
# Knobs (environment): BIN (the appliance binary; default: the release build), ROUNDS (3),
# WRK_DURATION (10s), UP_REPS (5), PING_COUNT (20000), PING_SIZE (1392), PING_PRELOAD (32),
# IDLE_S (10), MAX_RUNTIME_S (900), KEEP_TMP (0).
# Missing tools are installed from Debian with apt-get (nginx comes from nginx-light).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

knobs ROUNDS=3 WRK_DURATION=10s UP_REPS=5 PING_COUNT=20000 PING_SIZE=1392 PING_PRELOAD=32 \
  IDLE_S=10 MAX_RUNTIME_S=900 KEEP_TMP=0
WRK_THREADS=2
WRK_CONNS=64

APPLIANCE_IP=10.88.88.1
API_PORT=8888
WG_PORT=51820          # inside our own namespace: cannot clash with the host's
NGINX_PORT=8080        # idem, loopback of our namespace only

RATIO_DECIMALS=3

require_root

# ---------------------------------------------------------------------------------------------
# Prerequisites (Debian packages only)

declare -A pkg_of=(
  [ip]=iproute2 [wg]=wireguard-tools [wg-quick]=wireguard-tools [wireguard-go]=wireguard-go
  [curl]=curl [ping]=iputils-ping [wrk]=wrk [nginx]=nginx-light [pgrep]=procps
)
missing=()
for tool in "${!pkg_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "installing from Debian: ${missing[*]}"
  timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  timeout 600 env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
release_bin

# ---------------------------------------------------------------------------------------------
# Our namespace, temp dir, and the cleanup that removes them

one_ns_run tunnel wgb
APP_PID=
NGINX_PID=
WATCHDOG=
NS_CREATED=0
CLK_TCK=$(getconf CLK_TCK)

nsx() { in_ns "$NS" "$@"; } # nsx SECONDS PROGRAM ARGS...: run bounded inside our namespace
wg_quick() { wg_quick_in "$NS" "$CONF" "$TMP/wg.log" "$1"; } # wg_quick up|down

cleanup() {
  local rc=$?
  set +e
  stop_watchdog
  if [ "$NS_CREATED" = 1 ]; then
    wg_quick_down_if_up
    stop_pid "$APP_PID"
    stop_pid "$NGINX_PID"
    kill_ns "$NS"
  fi
  rm -f "/var/run/wireguard/$IFACE.sock"
  finish_tmp "$rc" "$TMP"/serve.log "$TMP"/wg.log "$TMP"/nginx.err
  exit "$rc"
}
trap_cleanup
start_watchdog "$MAX_RUNTIME_S"

new_ns "$NS"
NS_CREATED=1

# ---------------------------------------------------------------------------------------------
# Helpers for the figures

to_bytes() { # wrk's "1.23MB" (binary units) -> bytes
  awk -v s="$1" 'BEGIN { n = s + 0; u = s; sub(/^[0-9.]+/, "", u);
    m = (u == "KB") ? 1024 : (u == "MB") ? 1048576 : (u == "GB") ? 1073741824 : 1;
    printf "%.0f", n * m }'
}
host_busy() { # "busy total" jiffies of all CPUs from /proc/stat (busy = all but idle + iowait)
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
children_ms() { # sets CHILD_MS: user+sys CPU ms of this shell's finished children (bash `times`,
  # 2nd line). Not in $(...): a subshell would report its own children, none.
  times >"$TMP/times.txt"
  CHILD_MS=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /m|s/); n += a[1] * 60 + a[2] }
    printf "%.0f", n * 1000 }' "$TMP/times.txt")
}
wg_go_pid() {
  local p
  for p in $(timeout 10 ip netns pids "$NS"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = wireguard-go ] && { echo "$p"; return; }
  done
  echo ""
}

# run_wrk NAME URL: runs wrk, stores requests/s, bytes/s and errors in R_rps, R_bps, R_err.
# When TRACK_CPU=1 it also records the CPU used by the appliance and wireguard-go meanwhile.
run_wrk() {
  local name=$1 url=$2 out=$TMP/wrk-$1-$RANDOM.txt a0 g0 a1 g1 t0 t1 w0 w1 h0 h1 wgpid secs
  wgpid=$(wg_go_pid)
  a0=$(cpu_ticks "$APP_PID")
  g0=0; [ -n "$wgpid" ] && g0=$(cpu_ticks "$wgpid")
  h0=$(host_busy)
  children_ms; w0=$CHILD_MS
  t0=$(now_ns)
  nsx 60 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --timeout 5s "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk $name failed"; }
  t1=$(now_ns)
  children_ms; w1=$CHILD_MS
  h1=$(host_busy)
  a1=$(cpu_ticks "$APP_PID")
  g1=0; [ -n "$wgpid" ] && g1=$(cpu_ticks "$wgpid")
  R_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  R_bps=$(to_bytes "$(awk '/^Transfer\/sec:/ { print $2 }' "$out")")
  R_err=$(awk '/Socket errors:|Non-2xx/ { printf "%s; ", $0 }' "$out")
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  R_cpu_app=$(awk -v d=$((a1 - a0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * d / hz / s }')
  R_cpu_wg=$(awk -v d=$((g1 - g0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * d / hz / s }')
  R_cpu_wrk=$(awk -v d=$((w1 - w0)) -v s="$secs" 'BEGIN { printf "%.0f", d / 10 / s }')
  # Whole machine, all processes (other people's builds included): 100% per core.
  R_cpu_host=$(echo "$h0 $h1" | awk '{ printf "%.0f", 100 * ($3 - $1) / ($4 - $2) * '"$(nproc)"' }')
  log "wrk $name: ${R_rps} req/s, ${R_bps} B/s${R_err:+, $R_err} (CPU %: appliance ${R_cpu_app}, wireguard-go ${R_cpu_wg}, wrk ${R_cpu_wrk}, whole host ${R_cpu_host} of $(( $(nproc) * 100 )))"
  [ -n "$R_rps" ] || die "could not parse wrk output for $name: $(cat "$out")"
}

# run_ping NAME IP [PING ARGS...]: flood ping; stores echo replies/s in P_pps, loss in P_loss.
run_ping() {
  local name=$1 ip=$2 out=$TMP/ping-$1-$RANDOM.txt a0 a1
  shift 2
  a0=$(cpu_ticks "$APP_PID")
  nsx 120 ping -n -q -f -c "$PING_COUNT" -s "$PING_SIZE" -w 100 "$@" "$ip" >"$out" 2>&1 || true
  a1=$(cpu_ticks "$APP_PID")
  P_pps=$(awk '/packets transmitted/ { for (i = 1; i <= NF; i++) { if ($i == "received,") r = $(i - 1);
      if ($i == "time") t = $(i + 1) } sub(/ms/, "", t); if (t > 0) printf "%.0f", r / (t / 1000) }' "$out")
  P_loss=$(awk '/packets transmitted/ { for (i = 1; i <= NF; i++) if ($i == "packet" && $(i + 1) == "loss,") print $(i - 1) }' "$out")
  P_rtt=$(awk -F'[/ ]' '/^rtt/ { print $8 }' "$out")
  [ -n "$P_pps" ] || { cat "$out" >&2; die "ping $name produced no statistics"; }
  log "ping $name: ${P_pps} replies/s, loss ${P_loss}, avg rtt ${P_rtt} ms (appliance CPU $((a1 - a0)) ticks)"
}

# ---------------------------------------------------------------------------------------------
# Appliance, peer, tunnel

log "namespace $NS, interface $IFACE, temp dir $TMP"
nsx 30 "$BIN" --data-dir "$DATA" init --endpoint "127.0.0.1:$WG_PORT" --listen-port "$WG_PORT" \
  >>"$TMP/init.log" 2>&1 || { cat "$TMP/init.log" >&2; die "appliance init failed"; }
# wrk opens WRK_CONNS connections from one peer; where `serve` caps connections per peer (default
# 32 since the API gate landed), raise the cap with headroom for slots still being released, so
# the figure is the served rate, not the 429 path.
SERVE_ARGS=()
if "$BIN" serve --help 2>/dev/null | grep -q -- '--max-connections-per-peer'; then
  SERVE_ARGS=(--max-connections-per-peer $((2 * WRK_CONNS)))
fi
# `ip netns exec` execs the program: $! is the appliance's own pid. The EXIT trap stops it.
ip netns exec "$NS" env RUST_LOG=warn NO_COLOR=1 "$BIN" --data-dir "$DATA" serve "${SERVE_ARGS[@]}" \
  </dev/null >"$TMP/serve.log" 2>&1 &
APP_PID=$!
wait_control_sock "$DATA" "$APP_PID"

( umask 077; nsx 30 "$BIN" --data-dir "$DATA" peer add bench --role viewer >"$CONF" 2>"$TMP/peer.log" ) \
  || { cat "$TMP/peer.log" >&2; die "appliance peer add failed"; }
grep -q '^\[Peer\]' "$CONF" || die "peer add printed no wg-quick config"

HEALTH=http://$APPLIANCE_IP:$API_PORT/api/v1/health
DASH=http://$APPLIANCE_IP:$API_PORT/

# a. wg-quick up -> first 200, UP_REPS times (the first is the very first handshake).
up_ms=() wgq_ms=()
for rep in $(seq "$UP_REPS"); do
  if [ "$rep" -gt 1 ]; then
    wg_quick down || die "wg-quick down failed (see $TMP/wg.log)"
    sleep 1
  fi
  t0=$(now_ns)
  wg_quick up || die "wg-quick up failed (see $TMP/wg.log)"
  t_up=$(now_ns)
  code=000
  deadline=$((t0 + 30000000000))
  while [ "$(now_ns)" -lt "$deadline" ]; do
    code=$(nsx 5 curl -s -o /dev/null -w '%{http_code}' --connect-timeout 0.5 --max-time 1 "$HEALTH" || true)
    [ "$code" = 200 ] && break
    sleep 0.01
  done
  t1=$(now_ns)
  [ "$code" = 200 ] || die "no 200 from $HEALTH within 30 s of wg-quick up"
  up_ms+=("$(( (t1 - t0) / 1000000 ))")
  wgq_ms+=("$(( (t_up - t0) / 1000000 ))")
  log "up #$rep: first 200 after ${up_ms[-1]} ms (wg-quick up itself took ${wgq_ms[-1]} ms)"
done
UP_MED=$(printf '%s\n' "${up_ms[@]}" | median)
WGQ_MED=$(printf '%s\n' "${wgq_ms[@]}" | median)

# ---------------------------------------------------------------------------------------------
# Baseline server: nginx on our namespace's loopback, same bodies as the appliance

mkdir -p "$TMP/www"
HEALTH_BODY=$(nsx 10 curl -sSf --max-time 5 "$HEALTH") || die "cannot fetch health"
# The dashboard must answer 200 to be worth loading; otherwise that row is reported as skipped.
DASH_CODE=$(nsx 10 curl -sS --max-time 5 -o "$TMP/www/index.html" -w '%{http_code}' "$DASH" || true)
DASH_BYTES=$(stat -c %s "$TMP/www/index.html" 2>/dev/null || echo 0)
[ "$DASH_CODE" = 200 ] || log "warning: GET / answered HTTP $DASH_CODE ($DASH_BYTES B), not 200: skipping the dashboard rows"
HEALTH_BYTES=${#HEALTH_BODY}
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $TMP/nginx-tmp;
  default_type text/html;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $TMP/www;
    index index.html;
    location = /api/v1/health {
      default_type application/json;
      return 200 '$HEALTH_BODY';
    }
  }
}
EOF
ip netns exec "$NS" nginx -e "$TMP/nginx.err" -p "$TMP" -c "$TMP/nginx.conf" \
  </dev/null >>"$TMP/nginx.err" 2>&1 &
NGINX_PID=$!
BASE=http://127.0.0.1:$NGINX_PORT
for _ in $(seq 50); do
  [ "$(nsx 5 curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/api/v1/health" || true)" = 200 ] && break
  sleep 0.1
done
[ "$(nsx 5 curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/")" = 200 ] \
  || die "nginx baseline did not come up (see $TMP/nginx.err)"

# ---------------------------------------------------------------------------------------------
# b, c: load, tunnel and baseline alternating

rps_tun=() rps_base=() dash_tun=() dash_base=() ping_tun=() ping_base=() pl_tun=() pl_base=()
cpu_app=() cpu_wg=() cpu_wrk=() cpu_host=() cpu_wrk_base=() errs=""
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS"
  run_wrk base-health "$BASE/api/v1/health";  rps_base+=("$R_rps"); cpu_wrk_base+=("$R_cpu_wrk")
  run_wrk tun-health "$HEALTH";               rps_tun+=("$R_rps")
  cpu_app+=("$R_cpu_app"); cpu_wg+=("$R_cpu_wg"); cpu_wrk+=("$R_cpu_wrk"); cpu_host+=("$R_cpu_host")
  errs+="${R_err}"
  if [ "$DASH_CODE" = 200 ]; then
    run_wrk base-dash "$BASE/";               dash_base+=("$R_bps")
    run_wrk tun-dash "$DASH";                 dash_tun+=("$R_bps")
    errs+="${R_err}"
  fi
  run_ping base 127.0.0.1;                    ping_base+=("$P_pps")
  run_ping tun "$APPLIANCE_IP";               ping_tun+=("$P_pps"); PING_LOSS_TUN=$P_loss
  run_ping base-preload 127.0.0.1 -l "$PING_PRELOAD"; pl_base+=("$P_pps")
  run_ping tun-preload "$APPLIANCE_IP" -l "$PING_PRELOAD"; pl_tun+=("$P_pps"); PL_LOSS_TUN=$P_loss
done
RPS_T=$(printf '%s\n' "${rps_tun[@]}" | median)
RPS_B=$(printf '%s\n' "${rps_base[@]}" | median)
DASH_T=$(printf '%s\n' "${dash_tun[@]}" | median)
DASH_B=$(printf '%s\n' "${dash_base[@]}" | median)
PING_T=$(printf '%s\n' "${ping_tun[@]}" | median)
PING_B=$(printf '%s\n' "${ping_base[@]}" | median)
PL_T=$(printf '%s\n' "${pl_tun[@]}" | median)
PL_B=$(printf '%s\n' "${pl_base[@]}" | median)
CPU_APP=$(printf '%s\n' "${cpu_app[@]}" | median)
CPU_WG=$(printf '%s\n' "${cpu_wg[@]}" | median)
CPU_WRK=$(printf '%s\n' "${cpu_wrk[@]}" | median)
CPU_WRK_BASE=$(printf '%s\n' "${cpu_wrk_base[@]}" | median)
CPU_HOST=$(printf '%s\n' "${cpu_host[@]}" | median)

# d, e: idle CPU and memory after the load
sleep 1
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$APP_PID/status")
HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$APP_PID/status")
THREADS=$(awk '/^Threads:/ { print $2 }' "/proc/$APP_PID/status")
i0=$(cpu_ticks "$APP_PID")
hb0=$(host_busy)
sleep "$IDLE_S"
hb1=$(host_busy)
i1=$(cpu_ticks "$APP_PID")
# Everything else on the machine meanwhile (other people's builds make every figure noisier).
HOST_IDLE_BUSY=$(echo "$hb0 $hb1" | awk '{ printf "%.0f", 100 * ($3 - $1) / ($4 - $2) * '"$(nproc)"' }')
IDLE_TICKS=$((i1 - i0))
IDLE_MS=$(( IDLE_TICKS * 1000 / CLK_TCK ))

mb() { awk -v b="$1" 'BEGIN { if (b == "nan") print "n/a"; else printf "%.2f", b / 1048576 }'; }
if [ "$DASH_CODE" = 200 ]; then
  DASH_ROW="| GET / dashboard ($DASH_BYTES B body), wrk, MB/s | $(mb "$DASH_T") | $(mb "$DASH_B") (nginx, loopback) | $(ratio "$DASH_T" "$DASH_B") |"
else
  DASH_ROW="| GET / dashboard, wrk, MB/s | not measured: GET / answered HTTP $DASH_CODE ($DASH_BYTES B) | | |"
fi
PING_IP_BYTES=$((PING_SIZE + 28))
PING_MB_T=$(mb "$(( ${PING_T%.*} * PING_IP_BYTES ))")
PING_MB_B=$(mb "$(( ${PING_B%.*} * PING_IP_BYTES ))")
PL_MB_T=$(mb "$(( ${PL_T%.*} * PING_IP_BYTES ))")
PL_MB_B=$(mb "$(( ${PL_B%.*} * PING_IP_BYTES ))")

cat <<EOF

### Tunnel end to end ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git describe --always --dirty --abbrev=7 2>/dev/null || echo 'unknown: not a git checkout'), ROUNDS=$ROUNDS, medians)

| figure | appliance via wireguard-go | baseline (same namespace, same session) | ratio |
| --- | ---: | ---: | ---: |
| /api/v1/health, wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION, req/s | $RPS_T | $RPS_B (nginx, loopback) | $(ratio "$RPS_T" "$RPS_B") |
$DASH_ROW
| flood ping -s $PING_SIZE ($PING_IP_BYTES B IP packets), echo round trips/s | $PING_T | $PING_B (127.0.0.1) | $(ratio "$PING_T" "$PING_B") |
| same, MB/s each direction | $PING_MB_T | $PING_MB_B | $(ratio "$PING_T" "$PING_B") |
| flood ping with -l $PING_PRELOAD in flight, echo round trips/s | $PL_T | $PL_B (127.0.0.1) | $(ratio "$PL_T" "$PL_B") |
| same, MB/s each direction | $PL_MB_T | $PL_MB_B | $(ratio "$PL_T" "$PL_B") |

| figure | value |
| --- | ---: |
| wg-quick up start -> first 200, median of $UP_REPS (ms) | $UP_MED (each: ${up_ms[*]}) |
| of which wg-quick up itself (ms) | $WGQ_MED (each: ${wgq_ms[*]}) |
| CPU during tunnel health wrk, % of one core: appliance / wireguard-go / wrk / whole host (of $(( $(nproc) * 100 ))) | $CPU_APP / $CPU_WG / $CPU_WRK / $CPU_HOST |
| wrk's own CPU against the nginx baseline, % of one core | $CPU_WRK_BASE |
| appliance CPU over ${IDLE_S} s idle after load | $IDLE_TICKS ticks = $IDLE_MS ms |
| whole host busy meanwhile (other processes), % of $(( $(nproc) * 100 )) | $HOST_IDLE_BUSY |
| appliance VmRSS after load / VmHWM (peak) / threads (serve ${SERVE_ARGS[*]:-with defaults}) | $((RSS_KB / 1024)) MiB / $((HWM_KB / 1024)) MiB / $THREADS |
| health body bytes; tunnel flood ping loss, last round (plain / -l $PING_PRELOAD) | $HEALTH_BYTES; $PING_LOSS_TUN / $PL_LOSS_TUN |

Per round, tunnel / baseline: health req/s ${rps_tun[*]} / ${rps_base[*]}; dashboard B/s ${dash_tun[*]} / ${dash_base[*]}; ping/s ${ping_tun[*]} / ${ping_base[*]}; ping -l $PING_PRELOAD /s ${pl_tun[*]} / ${pl_base[*]}.
wrk errors: ${errs:-none}
EOF
