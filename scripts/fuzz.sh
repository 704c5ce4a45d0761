#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for N seconds each (default 30) and fails on a crash, a hang
# (an input that runs over 10 s) or a leak. The corpus in git (fuzz/corpus/<target>) seeds each
# run and is not changed; `--update` merges what a run found into it, minimised (set cover).
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Without them it says
# so and succeeds, unless FUZZ_REQUIRED=1 (CI on a machine that has them) makes that a failure.
#
#   scripts/fuzz.sh [--update] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."

update=0
if [ "${1:-}" = "--update" ]; then
  update=1
  shift
fi
seconds="${1:-30}"
targets=(ring_ops attach)
# The longest input worth trying: a few hundred operations; a segment header, a ring and more.
declare -A max_len=([ring_ops]=2048 [attach]=9000)

missing() {
  echo "fuzz: skipped: $1" >&2
  if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
    echo "fuzz: FUZZ_REQUIRED=1, so this is a failure" >&2
    exit 1
  fi
  exit 0
}
rustup toolchain list 2>/dev/null | grep -q '^nightly' ||
  missing "the nightly toolchain is not installed (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || missing "cargo-fuzz is not installed (cargo install cargo-fuzz)"

cd fuzz
if ! out=$(cargo +nightly fuzz build 2>&1); then
  echo "$out" >&2
  exit 1
fi
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  found=$(mktemp -d)
  log=$(mktemp)
  # New inputs go to the first directory; the corpus in git is only read.
  if ! cargo +nightly fuzz run "$t" "$found" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (the input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz: $t: ${runs:-?} executions in ${seconds} s, no crash"
  if [ "$update" = 1 ]; then
    merged=$(mktemp -d)
    "$bin/$t" -set_cover_merge=1 -max_len="${max_len[$t]}" "$merged" "corpus/$t" "$found" >/dev/null 2>&1
    rm -rf "corpus/$t"
    mv "$merged" "corpus/$t"
    echo "fuzz: $t: corpus now $(find "corpus/$t" -type f | wc -l) files"
  fi
  rm -rf "$found" "$log"
done
