#!/usr/bin/env bash
# Builds the manual pages (`appliance man target/man`) and the .deb with `cargo deb`, and checks
# it the way a headless home server uses it: package metadata, contents and modes, maintainer
# scripts, the copyright file, a stripped binary, `dpkg -i` (twice: install, then the upgrade
# path), `man appliance` and a page per subcommand, every link of the installed documents
# resolving to an installed file, the installed units with
# `systemd-analyze verify` and `systemd-analyze security` (exposure at most 1.5), every system
# call `serve` makes against the units' SystemCallFilter=, the installed binary run as a
# throwaway unprivileged user (init, peer add, serve until SIGTERM), then `dpkg -r` (state
# kept) and `dpkg --purge` (state gone).
#
#   bash scripts/test-deb.sh            (scripts/test.sh runs it after the cargo tests)
#
# Needs root, or sudo: it installs a package system-wide and purges it at the end. Installs
# what is missing: cargo-deb (`cargo install cargo-deb --locked`) and the Debian packages
# systemd (for systemd-analyze), dpkg-dev, file, strace, iproute2, python3, man-db. systemd need not
# be PID 1 (CI, containers): the maintainer scripts must succeed without it. It refuses to run
# where an appliance package or its state already exist, since it would purge them.
# One release build (several minutes on 2 cores; cargo reuses it when nothing changed).
# (No `| head` in pipelines: under pipefail the writer's SIGPIPE would fail the script.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The checks below expect the defaults, whatever this shell has set.
unset APPLIANCE_DATA_DIR APPLIANCE_ENDPOINT APPLIANCE_LISTEN_PORT APPLIANCE_SUBNET

CARGO_DEB_VERSION=3.8.0
MAX_EXPOSURE=15 # tenths: systemd-analyze security --threshold=15 means exposure <= 1.5
MAX_BINARY_BYTES=$((20 * 1024 * 1024))
TEST_USER=appliance-debtest
UNITS=(appliance.service appliance@.service)

started=$SECONDS
passed=0
failed=0
log() { echo "deb: $*"; }
pass() {
  echo "deb: PASS $*"
  passed=$((passed + 1))
}
fail() {
  echo "deb: FAIL $*"
  failed=$((failed + 1))
}
# check DESCRIPTION COMMAND...: PASS when the command succeeds; its output shows on FAIL.
check() {
  local what=$1
  shift
  if "$@" >"$work/check.out" 2>&1; then
    pass "$what"
  else
    fail "$what"
    tail -n 20 "$work/check.out" | sed 's/^/    /'
  fi
}
summary() { log "$passed passed, $failed failed ($((SECONDS - started)) s)"; }
fatal() {
  echo "deb: FAIL (fatal) $*"
  failed=$((failed + 1))
  summary
  exit 1
}

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  fatal "needs root or sudo (dpkg -i, a throwaway user)"
fi

# --- prerequisites --------------------------------------------------------------------------
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  fatal "needs Debian's dpkg and apt-get"
fi
need=()
for pair in systemd-analyze:systemd dpkg-shlibdeps:dpkg-dev file:file strace:strace ss:iproute2 \
  python3:python3 setpriv:util-linux man:man-db; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if ! cargo deb --version >/dev/null 2>&1; then
  log "installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
log "$(cargo deb --version 2>&1 | sed -n 1p); $(systemd-analyze --version | sed -n 1p)"
if [ -d /run/systemd/system ]; then
  log "systemd is running here: the maintainer scripts will start and stop the service"
else
  log "systemd is not PID 1 here: the maintainer scripts must skip systemctl and still succeed"
fi

# --- refuse to destroy somebody's appliance -------------------------------------------------
if [[ "$(dpkg-query -W -f='${Status}' appliance 2>/dev/null || true)" == *installed* ]]; then
  fatal "an appliance package is installed here; this test would purge it and its state"
fi
for d in /var/lib/appliance /var/lib/private/appliance /var/lib/appliance-debtest \
  /var/lib/private/appliance-debtest /var/lib/appliance-debtest-unrelated; do
  if [ -e "$d" ] || [ -L "$d" ]; then
    fatal "$d exists; this test would delete it on purge (move it away first)"
  fi
done
if getent passwd "$TEST_USER" >/dev/null; then
  fatal "user $TEST_USER exists (left over from an interrupted run? remove it: userdel $TEST_USER)"
fi

work=$(mktemp -d /tmp/appliance-deb.XXXXXX)
chmod 0755 "$work"
installed=no
user_added=no
made_state=no
serve_pid=
cleanup() {
  if [ -n "$serve_pid" ]; then "${as_root[@]}" kill -KILL "$serve_pid" 2>/dev/null || true; fi
  if [ "$installed" = yes ]; then
    log "cleanup: dpkg --purge appliance"
    "${as_root[@]}" dpkg --purge appliance >/dev/null 2>&1 || true
  fi
  if [ "$made_state" = yes ]; then # none of these existed before (checked above)
    "${as_root[@]}" rm -rf /var/lib/appliance /var/lib/private/appliance \
      /var/lib/appliance-debtest /var/lib/private/appliance-debtest \
      /var/lib/appliance-debtest-unrelated
  fi
  if [ "$user_added" = yes ]; then "${as_root[@]}" userdel "$TEST_USER" 2>/dev/null || true; fi
  "${as_root[@]}" rm -rf "$work"
}
trap cleanup EXIT

# --- build ----------------------------------------------------------------------------------
# The manual pages first: cargo-deb installs target/man/*.1 (Cargo.toml's assets). Rendered
# from the clap definitions by the release binary that `cargo deb` then packages unchanged.
log "cargo run --release --locked -- man target/man (release build)"
build_started=$SECONDS
rm -rf target/man
if ! cargo run --release --locked -q -- man target/man >"$work/man.out" 2>"$work/man.err"; then
  tail -n 30 "$work/man.err"
  fatal "appliance man target/man failed"
fi
pages=()
for f in target/man/*.1; do pages+=("${f##*/}"); done
log "wrote ${#pages[@]} manual pages into target/man/"
log "cargo deb --locked"
if ! cargo deb --locked >"$work/cargo-deb.out" 2>"$work/cargo-deb.err"; then
  tail -n 30 "$work/cargo-deb.err"
  fatal "cargo deb failed"
fi
deb=$(tail -n 1 "$work/cargo-deb.out")
[ -f "$deb" ] || fatal "cargo deb did not name a .deb on its last line: '$deb'"
log "built $deb ($(stat -c %s "$deb") bytes) in $((SECONDS - build_started)) s"

# --- the package file -----------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
check "Package is appliance, Architecture is $(dpkg --print-architecture)" \
  test "$(field Package) $(field Architecture)" = "appliance $(dpkg --print-architecture)"
check "Maintainer has a contact address: $(field Maintainer)" \
  grep -Eq '^[^<>]+ <[^<>@ ]+@[^<>@ ]+>$' <<<"$(field Maintainer)"
# A placeholder identity (a reserved or example domain, a no-reply or generated address) is
# nobody to write to about the package.
check "Maintainer is no placeholder (reserved domain, noreply, example): $(field Maintainer)" \
  bash -c '! grep -Eiq "[@.](example|test|invalid|localhost|local)(\.[a-z]+)?>|noreply|no-reply|example\.(com|org|net)|b-seed-|@users\." <<<"$1"' _ "$(field Maintainer)"
authors=$(sed -n 's/^authors = \["\([^"]*\)"\]$/\1/p' Cargo.toml)
check "Maintainer is the project contact, Cargo.toml's authors: $authors" \
  test "$(field Maintainer)" = "$authors"
check "the copyright file's Upstream-Contact is the same contact" \
  grep -Fxq "Upstream-Contact: $authors" packaging/debian/copyright
summary_line=$(field Description | sed -n 1p)
check "summary line is short (${#summary_line} <= 60 characters): $summary_line" \
  test "${#summary_line}" -le 60
check "Depends names libc6: $(field Depends)" grep -q 'libc6' <<<"$(field Depends)"

dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' >"$work/contents"
expect_entry() { # MODE PATH
  check "contains $2 as $1, owned by root" awk -v mode="$1" -v path="./$2" \
    '$1 == mode && ($2 == "0/0" || $2 == "root/root") && $3 == path { found = 1 }
     END { exit !found }' "$work/contents"
}
expect_entry -rwxr-xr-x usr/bin/appliance
expect_entry -rw-r--r-- usr/lib/systemd/system/appliance.service
expect_entry -rw-r--r-- usr/lib/systemd/system/appliance@.service
expect_entry -rw-r--r-- usr/share/doc/appliance/copyright
expect_entry -rw-r--r-- usr/share/doc/appliance/README.md
expect_entry -rw-r--r-- usr/share/doc/appliance/README.packaging.md
expect_entries() { # DESCRIPTION MODE PATH...: every PATH is there with MODE, owned by root
  local what=$1 mode=$2
  shift 2
  check "$what" awk -v mode="$mode" -v want="$*" \
    'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) need["./" w[i]] = 1 }
     $1 == mode && ($2 == "0/0" || $2 == "root/root") { delete need[$3] }
     END { for (p in need) { print "missing " p; bad = 1 } exit bad }' "$work/contents"
}
docs=(docs/*.md docs/screenshots/*.png)
expect_entries "contains the ${#docs[@]} files of docs/ under usr/share/doc/appliance/, -rw-r--r-- root" \
  -rw-r--r-- "${docs[@]/#/usr/share/doc/appliance/}"
# Debian policy 12.1 (lintian: manpage-not-compressed): pages gzipped, mode 644.
man_paths=()
for page in "${pages[@]}"; do man_paths+=("usr/share/man/man1/$page.gz"); done
expect_entries "contains the ${#pages[@]} manual pages gzipped in usr/share/man/man1/, -rw-r--r-- root" \
  -rw-r--r-- "${man_paths[@]}"
check "contains no uncompressed manual page" awk \
  '$1 ~ /^-/ && $3 ~ /^\.\/usr\/share\/man\// && $3 !~ /\.gz$/ { print; bad = 1 } END { exit bad }' \
  "$work/contents"
expected=$((6 + ${#docs[@]} + ${#pages[@]}))
files=$(grep -c '^-' "$work/contents" || true)
check "contains exactly those $expected files: 6, ${#docs[@]} docs, ${#pages[@]} pages (found $files)" \
  test "$files" -eq "$expected"
mkdir "$work/unpacked"
dpkg-deb -x "$deb" "$work/unpacked"
log "installed size: $(field Installed-Size) KiB; docs/ $(du -sk "$work/unpacked/usr/share/doc/appliance/docs" | cut -f1) KiB, man pages $(du -sk "$work/unpacked/usr/share/man" | cut -f1) KiB"

mkdir "$work/control"
dpkg-deb -e "$deb" "$work/control"
for script in postinst prerm postrm; do
  f=$work/control/$script
  check "$script is executable and parses (sh -n)" \
    bash -c '[ "$(stat -c %a "$1")" = 755 ] && sh -n "$1"' _ "$f"
  check "$script has cargo-deb's snippets once, no DEBHELPER token left" bash -c \
    '[ "$(grep -c "^# Automatically added by cargo-deb" "$1")" -ge 1 ] &&
     ! grep -q "#DEBHELPER#" "$1" && ! grep -q "^#.*[^#]# Automatically added" "$1"' _ "$f"
done
has() { grep -qF -- "$2" "$work/control/$1"; }
check "postinst enables appliance.service" has postinst 'deb-systemd-helper enable appliance.service'
check "postinst reloads systemd and starts, or on upgrade restarts, only when systemd runs" \
  bash -c 'grep -qF "[ -d /run/systemd/system ]" "$1" && grep -qF "daemon-reload" "$1" &&
    grep -qF "_dh_action=restart" "$1" && grep -qF "_dh_action=start" "$1" &&
    grep -qF "try-restart '\''appliance@*.service'\''" "$1"' _ "$work/control/postinst"
check "prerm stops appliance.service and the guild instances on remove" \
  bash -c 'grep -qF "deb-systemd-invoke stop appliance.service" "$1" &&
    grep -qF "systemctl stop '\''appliance@*.service'\''" "$1"' _ "$work/control/prerm"
check "postrm deletes /var/lib/appliance and /var/lib/private/appliance on purge" \
  has postrm 'rm -rf /var/lib/appliance /var/lib/private/appliance'
check "copyright file is up to date with Cargo.lock" \
  bash packaging/debian/update-copyright.sh --check

# --- install (no systemd needed) ------------------------------------------------------------
installed=yes # from here on, cleanup purges (even a half-installed package)
if "${as_root[@]}" dpkg -i "$deb" >"$work/dpkg-i.out" 2>&1; then
  pass "dpkg -i succeeds"
else
  cat "$work/dpkg-i.out"
  fatal "dpkg -i failed"
fi
if "${as_root[@]}" dpkg -i "$deb" >"$work/dpkg-upgrade.out" 2>&1; then
  pass "dpkg -i again (the upgrade path of the maintainer scripts) succeeds"
else
  cat "$work/dpkg-upgrade.out"
  fail "dpkg -i again (the upgrade path) failed"
fi
expect_installed() { # MODE PATH
  check "installed $2 is $1 root:root" test "$(stat -c '%a %U:%G' "$2" 2>&1)" = "$1 root:root"
}
expect_installed 755 /usr/bin/appliance
expect_installed 644 /usr/lib/systemd/system/appliance.service
expect_installed 644 /usr/lib/systemd/system/appliance@.service
expect_installed 644 /usr/share/doc/appliance/copyright
expect_installed 644 /usr/share/doc/appliance/README.md
check "copyright is installed as written (DEP-5, $(wc -l </usr/share/doc/appliance/copyright) lines)" \
  cmp -s /usr/share/doc/appliance/copyright packaging/debian/copyright
size=$(stat -c %s /usr/bin/appliance)
check "binary is stripped (file: $(file -b /usr/bin/appliance | grep -oE '(not )?stripped'))" \
  bash -c 'file -b /usr/bin/appliance | grep -qE "(^|, )stripped"'
check "binary is $size bytes (limit $MAX_BINARY_BYTES)" test "$size" -lt "$MAX_BINARY_BYTES"
check "installed binary runs: $(/usr/bin/appliance --version 2>&1)" /usr/bin/appliance --version

# --- manual pages and documents -------------------------------------------------------------
# Minimal images may tell dpkg to drop /usr/share/man (path-exclude); then nothing installs
# there and only the package contents above can be checked.
if grep -rqs '^path-exclude=\?/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  log "dpkg here excludes /usr/share/man ($(grep -rls '^path-exclude=\?/usr/share/man' \
    /etc/dpkg/dpkg.cfg.d/)): installed manual pages not checked"
else
  check "the ${#pages[@]} installed manual pages are 644 root:root and gzip" bash -c \
    'for p in "$@"; do f=/usr/share/man/man1/$p.gz
       [ "$(stat -c "%a %U:%G" "$f")" = "644 root:root" ] && gzip -t "$f" || { echo "$f"; exit 1; }
     done' _ "${pages[@]}"
  check "man -w appliance finds /usr/share/man/man1/appliance.1.gz" \
    bash -c '[ "$(man -w appliance)" = /usr/share/man/man1/appliance.1.gz ]'
  check "man -w appliance-peer finds its page" \
    bash -c '[ "$(man -w appliance-peer)" = /usr/share/man/man1/appliance-peer.1.gz ]'
  # Every visible subcommand (from the installed binary's own --help) is in the SUBCOMMANDS
  # section of `man appliance`.
  subcommands=$(/usr/bin/appliance --help |
    awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on && /^  [a-z]/ && $1 != "help" { print $1 }')
  check "man appliance shows SUBCOMMANDS with all of: $(tr '\n' ' ' <<<"$subcommands")" bash -c \
    'text=$(MANWIDTH=80 man appliance 2>/dev/null | sed -n "/^SUBCOMMANDS/,/^[A-Z]/p")
     [ -n "$1" ] && [ -n "$text" ] &&
     for s in $1; do grep -q "^ *appliance-$s(1)" <<<"$text" || { echo "no $s in: $text"; exit 1; }; done' \
    _ "$subcommands"
  check "man appliance-peer-add shows its --role option" \
    bash -c 'MANWIDTH=80 man appliance-peer-add 2>/dev/null | grep -q -- "--role"'
fi
# Every relative link in the installed Markdown documents, and every `docs/...` path the
# README names, resolves to an installed file: nothing points into the source tree.
check "every relative link of the installed documents resolves" python3 -c '
import os, re, sys
root = "/usr/share/doc/appliance"
missing, seen = [], 0
for dirpath, _, names in os.walk(root):
    for name in names:
        if not name.endswith(".md"):
            continue
        path = os.path.join(dirpath, name)
        text = open(path, encoding="utf-8").read()
        targets = [(os.path.dirname(path), t) for t in re.findall(r"\]\(([^)\s]+)", text)]
        targets += [(root, t) for t in re.findall(r"`(docs/[^`\s]+)`", text)]
        for base, target in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:|#", target):
                continue
            seen += 1
            if not os.path.exists(os.path.join(base, target.split("#")[0])):
                missing.append(path + ": " + target)
print(seen, "links checked")
if missing or not seen:
    sys.exit("\n".join(missing) or "no links found")
'

for unit in "${UNITS[@]}"; do
  path=/usr/lib/systemd/system/$unit
  if out=$(systemd-analyze verify "$path" 2>&1) && [ -z "$out" ]; then
    pass "systemd-analyze verify $unit: clean"
  else
    fail "systemd-analyze verify $unit: ${out:-non-zero exit}"
  fi
  out=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$path" 2>&1) && rc=0 || rc=$?
  exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  if [ "$rc" -eq 0 ] && [ -n "$exposure" ] &&
    python3 -c "import sys; sys.exit(not float('$exposure') <= $MAX_EXPOSURE / 10)"; then
    pass "systemd-analyze security $unit: exposure $exposure (at most 1.5)"
  else
    grep '✗' <<<"$out" || true
    fail "systemd-analyze security $unit: exposure ${exposure:-unknown} (exit $rc), over 1.5"
  fi
done

# --- the installed binary as an unprivileged user -------------------------------------------
"${as_root[@]}" useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin "$TEST_USER"
user_added=yes
state=$work/state
data=$state/data
"${as_root[@]}" mkdir -m 0700 "$state"
"${as_root[@]}" chown "$TEST_USER:$TEST_USER" "$state"
as_user() {
  "${as_root[@]}" setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --clear-groups -- \
    /usr/bin/appliance --data-dir "$data" "$@"
}

out=$(as_user init --endpoint vpn.example.org 2>&1) && rc=0 || rc=$?
check "init --endpoint vpn.example.org as $TEST_USER" \
  bash -c '[ "$1" -eq 0 ] && grep -q "clients dial: *vpn.example.org:51820" <<<"$2"' _ "$rc" "$out"
check "data directory is $TEST_USER's, mode 700; database mode 600" \
  test "$("${as_root[@]}" stat -c '%U %a' "$data" "$data/appliance.redb" | tr '\n' ' ')" \
  = "$TEST_USER 700 $TEST_USER 600 "
out=$(as_user peer add leader --role admin 2>&1) && rc=0 || rc=$?
check "peer add leader prints a wg-quick config for vpn.example.org" \
  bash -c '[ "$1" -eq 0 ] && grep -q "^\[Interface\]" <<<"$2" &&
    grep -q "^Address = 10.88.88.2/32" <<<"$2" &&
    grep -q "^Endpoint = vpn.example.org:51820" <<<"$2"' _ "$rc" "$out"
out=$(as_user peer add 'Not A Name' 2>&1) && rc=0 || rc=$?
check "peer add with a bad name exits 2 with an error (exit $rc)" \
  bash -c '[ "$1" -eq 2 ] && grep -q "^error: " <<<"$2"' _ "$rc" "$out"

# serve, traced: every system call it makes must pass the units' SystemCallFilter=.
port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trace=$work/serve.strace
"${as_root[@]}" strace -f -qq -o "$trace" -u "$TEST_USER" \
  /usr/bin/appliance --data-dir "$data" serve --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
strace_pid=$!
ready=no
for _ in $(seq 1 200); do # 20 s
  if "${as_root[@]}" test -S "$data/control.sock"; then
    ready=yes
    break
  fi
  kill -0 "$strace_pid" 2>/dev/null || break
  sleep 0.1
done
serve_pid=$(pgrep -u "$TEST_USER" -x appliance | sed -n 1p || true)
if [ "$ready" = yes ] && [ -n "$serve_pid" ]; then
  pass "serve --listen 127.0.0.1:$port as $TEST_USER is ready (control.sock exists)"
  check "serve listens on UDP 127.0.0.1:$port" \
    bash -c 'ss -Hlun "sport = :$1" | grep -q "127.0.0.1:$1"' _ "$port"
  out=$(as_user peer list --json 2>&1) && rc=0 || rc=$?
  check "peer list goes through the running server's control socket" \
    bash -c '[ "$1" -eq 0 ] && grep -q "\"leader\"" <<<"$2"' _ "$rc" "$out"
  "${as_root[@]}" kill -TERM "$serve_pid"
  wait "$strace_pid" && rc=0 || rc=$?
  serve_pid=
  check "serve stops on SIGTERM with exit 0 (exit $rc)" test "$rc" -eq 0
  check "serve removed its control socket" bash -c '! '"${as_root[*]}"' test -e "$1"' _ \
    "$data/control.sock"
else
  cat "$work/serve.log"
  fail "serve as $TEST_USER did not become ready within 20 s"
fi
if [ -s "$trace" ]; then
  filter=$(systemd-analyze syscall-filter 2>/dev/null)
  # The filter as installed: every SystemCallFilter= line of appliance.service, in order.
  unit_filter=$(grep '^SystemCallFilter=' /usr/lib/systemd/system/appliance.service)
  check "both units carry the same SystemCallFilter= lines" bash -c \
    '[ "$1" = "$(grep "^SystemCallFilter=" /usr/lib/systemd/system/appliance@.service)" ]' _ \
    "$unit_filter"
  verdict=$("${as_root[@]}" cat "$trace" | python3 -c '
import re, sys
groups, group = {}, None
for line in sys.argv[1].splitlines():
    if line.startswith("@"):
        group = groups.setdefault(line.split()[0], set())
    elif group is not None and line.startswith("    ") and not line.strip().startswith("#"):
        group.add(line.strip())
def expand(name, seen=()):
    out = set()
    for m in groups.get(name, ()):
        out |= expand(m, seen + (name,)) if m.startswith("@") and m not in seen else {m}
    return out
def names(word):
    return expand(word) if word.startswith("@") else {word}
# Applied in order as systemd does: the first line (not ~) makes an allow list, later plain
# lines add to it, ~ lines take away.
allowed = set()
for line in sys.argv[2].splitlines():
    value = line.split("=", 1)[1].strip()
    deny = value.startswith("~")
    words = set()
    for w in value.lstrip("~").split():
        words |= names(w)
    allowed = allowed - words if deny else allowed | words
used = set()
for line in sys.stdin:
    m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
    if m:
        used.add(m.group(1))
refused = sorted(used - allowed)
print(len(used), " ".join(refused))
' "$filter" "$unit_filter")
  read -r nused refused <<<"$verdict"
  check "serve used $nused system calls, all allowed by SystemCallFilter= (refused: ${refused:-none})" \
    test -z "$refused"
else
  fail "no strace output for serve"
fi

# --- remove keeps the state, purge deletes it -----------------------------------------------
# Lay the state out as systemd's DynamicUser= does (/var/lib/NAME -> private/NAME), for the
# main unit and one guild instance, next to a directory that is not ours.
made_state=yes
"${as_root[@]}" mkdir -p -m 0700 /var/lib/private
"${as_root[@]}" cp -a "$data" /var/lib/private/appliance
"${as_root[@]}" ln -s private/appliance /var/lib/appliance
"${as_root[@]}" cp -a "$data" /var/lib/private/appliance-debtest
"${as_root[@]}" ln -s private/appliance-debtest /var/lib/appliance-debtest
"${as_root[@]}" mkdir /var/lib/appliance-debtest-unrelated
"${as_root[@]}" touch /var/lib/appliance-debtest-unrelated/keep
state_present() {
  "${as_root[@]}" test -f /var/lib/appliance/appliance.redb &&
    "${as_root[@]}" test -f /var/lib/appliance-debtest/appliance.redb
}
check "dpkg -r succeeds" "${as_root[@]}" dpkg -r appliance
check "dpkg -r removed /usr/bin/appliance and the units" bash -c \
  '! test -e /usr/bin/appliance && ! test -e /usr/lib/systemd/system/appliance.service &&
   ! test -e /usr/lib/systemd/system/appliance@.service'
check "dpkg -r kept the state (main unit and guild instance)" state_present
check "dpkg --purge succeeds" "${as_root[@]}" dpkg --purge appliance
installed=no
check "dpkg --purge deleted the state (main unit and guild instance)" bash -c \
  '! '"${as_root[*]}"' test -e /var/lib/private/appliance && ! test -L /var/lib/appliance &&
   ! '"${as_root[*]}"' test -e /var/lib/private/appliance-debtest &&
   ! test -L /var/lib/appliance-debtest'
check "dpkg --purge kept /var/lib/appliance-debtest-unrelated (not ours)" \
  test -f /var/lib/appliance-debtest-unrelated/keep
check "dpkg knows no appliance package any more" \
  bash -c '! dpkg-query -W -f="\${Status}" appliance 2>/dev/null | grep -q "installed\|config-files"'
check "/usr/share/doc/appliance is gone" test ! -e /usr/share/doc/appliance

summary
[ "$failed" -eq 0 ]
