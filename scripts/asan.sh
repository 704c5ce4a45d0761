#!/usr/bin/env bash
# Runs the core's test suite built with AddressSanitizer (nightly only; its own target
# directory, so the normal build is untouched). Any invalid access or leak fails the run; the
# cross-process tests' second processes are the same instrumented binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "asan: skipped: the nightly toolchain is not installed (rustup toolchain install nightly)" >&2
  [ "${ASAN_REQUIRED:-0}" = 1 ] && exit 1
  exit 0
fi
RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
  cargo +nightly test -p multiproc-core --target x86_64-unknown-linux-gnu --target-dir target/asan "$@"
