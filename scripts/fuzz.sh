#!/usr/bin/env bash
# Runs every cargo-fuzz target for MINUTES minutes each (default 1), one after another, on the
# nightly toolchain, growing fuzz/corpus/TARGET/ with new coverage. Crashes land in
# fuzz/artifacts/TARGET/; minimise one with `cargo +nightly fuzz tmin TARGET FILE`, fix it, and
# add it to fuzz/corpus/TARGET/ plus a named unit test near the fix.
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]
#
# Needs `cargo install cargo-fuzz --locked` and `rustup toolchain install nightly`. Each run is
# bounded by libFuzzer's -max_total_time (and `timeout` as a backstop); one input may take at
# most 10 s (-timeout) and 2 GB (-rss_limit_mb) before it counts as a finding. Afterwards the
# corpus stays small: `cargo +nightly fuzz cmin TARGET` before committing new inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

minutes="${1:-1}"
shift || true
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then
  echo "fuzz.sh: MINUTES must be a whole number of minutes, at least 1 (got '$minutes')" >&2
  exit 2
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
seconds=$((minutes * 60))

cargo +nightly fuzz build -O
status=0
for t in "${targets[@]}"; do
  echo "fuzz.sh: $t for ${minutes} min"
  timeout --signal=INT --kill-after=60 $((seconds + 120)) \
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    || { echo "fuzz.sh: $t FOUND SOMETHING (exit $?): see fuzz/artifacts/$t/" >&2; status=1; }
done
exit "$status"
