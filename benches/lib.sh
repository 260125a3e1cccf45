# The shell preamble the namespace benchmarks share (baseline.sh, flood.sh, tunnel.sh):
# logging, prerequisite checks, running bounded commands inside a network namespace,
# userspace wg-quick, the watchdog and cleanup pieces, and the arithmetic of the figures.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # the script's first command
#
# Sourcing it sets `set -euo pipefail`, moves to the repository root (ROOT) and defines BENCH
# (the script's name for log lines) and functions; nothing else runs, nothing is created. Each
# script still owns its namespaces, its temp dir and its EXIT trap, built from these pieces, so
# what a script deletes is only what it created.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH=$(basename "$0")

knobs() { # knobs NAME=DEFAULT...: each NAME keeps its value from the environment, else DEFAULT
  local kv name
  for kv in "$@"; do
    name=${kv%%=*}
    [ -n "${!name:-}" ] || printf -v "$name" '%s' "${kv#*=}"
  done
}

log() { echo "$BENCH: $*" >&2; }
die() { log "$*"; exit 1; }

require_root() { # network namespaces and wireguard-go's TUN device
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, /dev/net/tun)"
  [ -e /dev/net/tun ] || die "/dev/net/tun is missing"
}

require_tools() { # require_tools "DEBIAN PACKAGES" TOOL...: dies naming the first missing tool
  local packages=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: apt-get install $packages)"
  done
}

in_ns() { # in_ns NS SECONDS PROGRAM ARGS...: run bounded inside namespace NS
  local ns=$1 secs=$2
  shift 2
  timeout -k 5 "$secs" ip netns exec "$ns" "$@"
}

wg_quick_in() { # wg_quick_in NS CONF LOG up|down: wg-quick with wireguard-go, output to LOG
  in_ns "$1" 20 env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go \
    WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wg-quick "$4" "$2" >>"$3" 2>&1
}

new_ns() { # new_ns NS: creates namespace NS with its loopback up; refuses an existing one
  [ -e "/var/run/netns/$1" ] && die "namespace $1 already exists"
  timeout 10 ip netns add "$1"
  timeout 10 ip -n "$1" link set lo up
}

kill_ns() { # kill_ns NS...: kills every process in each namespace, then deletes it
  local ns pid
  for ns in "$@"; do
    [ -e "/var/run/netns/$ns" ] || continue
    for pid in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null
    done
  done
  sleep 0.3
  for ns in "$@"; do
    [ -e "/var/run/netns/$ns" ] || continue
    timeout 10 ip netns del "$ns" || log "warning: could not delete namespace $ns"
  done
}

start_watchdog() { # start_watchdog SECONDS: TERMs this script after SECONDS; sets WATCHDOG
  ( sleep "$1"; echo "$BENCH: still running after ${1}s, aborting" >&2; kill -TERM $$ ) &
  WATCHDOG=$!
  disown "$WATCHDOG" # no "Terminated" job notice when cleanup stops it
}

stop_watchdog() {
  [ -n "${WATCHDOG:-}" ] || return 0
  # The subshell first, then its sleep: a subshell whose sleep is killed under it prints
  # "Terminated" on the way out.
  local sleeper
  sleeper=$(pgrep -P "$WATCHDOG" 2>/dev/null)
  kill -TERM "$WATCHDOG" 2>/dev/null
  [ -z "$sleeper" ] || kill -TERM $sleeper 2>/dev/null
  return 0
}

trap_cleanup() { # runs the script's `cleanup` on exit, and exits on INT/TERM so it runs
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

release_bin() { # release_bin: keeps BIN when set, else builds the appliance optimised and sets it
  # (as shipped: a debug build's X25519 and BLAKE2s are so slow that the figures would
  # measure the build)
  if [ -z "${BIN:-}" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
    log "cargo build --release --bin appliance"
    timeout 1800 cargo build --release --bin appliance >&2
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/appliance
  fi
  [ -x "$BIN" ] || die "$BIN is not an executable"
}

stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

wg_quick_down_if_up() { # takes down this run's wg-quick interface ($IFACE in $NS, $CONF) if it is up
  [ -f "$CONF" ] && ip -n "$NS" link show "$IFACE" >/dev/null 2>&1 \
    && wg_quick_in "$NS" "$CONF" "$TMP/wg.log" down
}

bench_tmp() { # bench_tmp PREFIX: a private temp dir /tmp/PREFIX.XXXXXX in $TMP, $DATA inside it
  TMP=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 700 "$TMP"
  DATA=$TMP/data
}

one_ns_run() { # one_ns_run NAME IFPREFIX: names this run's namespace (NS=apl-NAME-PID) and its
  # wg-quick interface (IFACE=IFPREFIXPID), makes its temp dir (bench_tmp apl-NAME-bench) and
  # sets CONF, the interface's config file in it
  NS=apl-$1-$$
  IFACE=$2$$
  bench_tmp "apl-$1-bench"
  CONF=$TMP/$IFACE.conf
}

finish_tmp() { # finish_tmp RC LOG...: on failure shows the logs' last lines and keeps $TMP (as
  # does KEEP_TMP=1); otherwise removes it
  local rc=$1
  shift
  if [ "$rc" -ne 0 ]; then
    log "failed (exit $rc); last lines of the logs in $TMP:"
    tail -n 20 "$@" 2>/dev/null >&2
  fi
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "logs kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}

wait_control_sock() { # wait_control_sock DATA PID: until `serve` (PID) made its control socket
  local _
  for _ in $(seq 150); do
    [ -S "$1/control.sock" ] && return 0
    kill -0 "$2" 2>/dev/null || die "appliance serve exited early"
    sleep 0.1
  done
  die "appliance serve did not create control.sock within 15 s"
}

cpu_ticks() { # utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
  else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { # ratio A B: A/B with RATIO_DECIMALS (2) decimals, n/a when undefined
  awk -v a="$1" -v b="$2" -v d="${RATIO_DECIMALS:-2}" 'BEGIN {
    if (b == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.*f", d, a / b }'
}
now_ns() { date +%s%N; }
