#!/usr/bin/env bash
# Runs every cargo-fuzz target for MINUTES minutes each (default 1), one after another, on the
# nightly toolchain, growing fuzz/corpus/TARGET/ with new coverage. Crashes land in
# fuzz/artifacts/TARGET/; minimise one with `cargo +nightly fuzz tmin TARGET FILE`, fix it, and
# add it to fuzz/corpus/TARGET/ plus a named unit test near the fix.
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]
#   scripts/fuzz.sh cmin [TARGET...]
#
# `cmin` minimises each corpus instead (libFuzzer's -merge=1): named inputs (seed-*, regress-*,
# slow-*: seeds and regression tests, some named by tests/fuzz_corpus.rs) are all kept and
# counted first; of the fuzzer's own hash-named inputs, only those adding a coverage edge stay
# (-use_counters=0: hit counts alone do not keep an input, which keeps the corpus small).
#
# Needs `cargo install cargo-fuzz --locked` and `rustup toolchain install nightly`. Each run is
# bounded by libFuzzer's -max_total_time (and `timeout` as a backstop); one input may take at
# most 10 s (-timeout) and 2 GB (-rss_limit_mb) before it counts as a finding. Afterwards the
# corpus stays small: `cargo +nightly fuzz cmin TARGET` before committing new inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

if [ "${1:-}" = cmin ]; then
  shift
  targets=("$@")
  if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
  fi
  cargo +nightly fuzz build -O
  for t in "${targets[@]}"; do
    kept="$(mktemp -d)"
    find "corpus/$t" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' \
      -exec cp -p {} "$kept/" \;
    before="$(find "corpus/$t" -type f | wc -l)"
    cargo +nightly fuzz run -O "$t" "$kept" "corpus/$t" -- -merge=1 -use_counters=0 -timeout=10 \
      -rss_limit_mb=2048 2>"$kept.log" \
      || { echo "fuzz.sh: merging $t failed: see $kept.log" >&2; exit 1; }
    rm -rf "corpus/$t" && mv "$kept" "corpus/$t" && rm -f "$kept.log"
    echo "fuzz.sh: corpus/$t: $before -> $(find "corpus/$t" -type f | wc -l) inputs"
  done
  exit 0
fi

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
