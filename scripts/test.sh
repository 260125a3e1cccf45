#!/usr/bin/env bash
# Runs the whole test suite, installing first what the tests need: the Python handler library's
# tests, the cargo tests, then scripts/test-deb.sh (the .deb built, installed, run and purged;
# APPLIANCE_TEST_DEB=0 skips it outside CI).
#
#   scripts/test.sh [extra cargo test args...]
#
# On Debian (apt-get present) it installs the missing prerequisites of the interop tests, with
# sudo when not root. The interop tests need root (network namespaces, /dev/net/tun), so when
# you are not root cargo builds as you and runs the test binaries through `sudo -E`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# chromium-driver + python3-selenium: the dashboard test drives the page in headless Chromium
# (tests/support/dashboard_phone.py runs under /usr/bin/python3, where Debian puts selenium).
# prometheus: interop_ops scrapes /metrics with a real Prometheus (its binary only, no daemon).
packages=(wireguard-go wireguard-tools iproute2 curl iputils-ping procps wrk zbar-tools python3 bsdutils chromium
          chromium-driver python3-selenium
          prometheus)

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  as_root=()
  echo "test.sh: not root and no sudo: the interop tests will be skipped" >&2
fi

if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "test.sh: prerequisites present: ${packages[*]}"
  fi
else
  echo "test.sh: no apt-get here; install the equivalents of: ${packages[*]}" >&2
fi

if [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -gt 0 ]; then
  host="$(rustc -vV | sed -n 's/^host: //p')"
  runner_var="CARGO_TARGET_$(echo "$host" | tr '[:lower:]-' '[:upper:]_')_RUNNER"
  export "$runner_var=sudo -E"
  echo "test.sh: test binaries run as root via $runner_var='sudo -E'"
fi

# The Python handler library (clients/python): standard library only, ~10 s, loopback only.
# A failure here fails the script, but only after cargo's tests have run too.
echo "test.sh: python3 -m unittest discover -s clients/python/tests -v"
python_status=0
python3 -m unittest discover -s clients/python/tests -v || python_status=$?

echo "test.sh: cargo test --workspace --all-targets $*"
cargo_rc=0
cargo test --workspace --all-targets "$@" || cargo_rc=$?

# The .deb: build, install, run, purge (scripts/test-deb.sh says what it checks).
deb_rc=0
if [ "${APPLIANCE_TEST_DEB:-1}" = 0 ] && [ "${CI:-}" != true ]; then
  echo "test.sh: APPLIANCE_TEST_DEB=0: scripts/test-deb.sh NOT run"
else
  echo "test.sh: bash scripts/test-deb.sh"
  bash scripts/test-deb.sh || deb_rc=$?
fi
echo "test.sh: python tests exit $python_status, cargo tests exit $cargo_rc, .deb test exit $deb_rc"
[ "$python_status" -eq 0 ] && [ "$cargo_rc" -eq 0 ] && [ "$deb_rc" -eq 0 ]
