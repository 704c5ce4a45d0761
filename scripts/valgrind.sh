#!/usr/bin/env bash
# Runs the core's test binaries under valgrind (memcheck): any invalid access or leak fails.
# The second process of the cross-process tests runs natively; the one under valgrind uses the
# core's pid fallback, since valgrind does not know pidfd_open. Valgrind's scheduling of threads
# is also a good race finder: it exposed a holder that released and exited between a waiter's
# look at the lock word and its look at /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  # CI sets VALGRIND_REQUIRED=1 (and installs it): there a missing valgrind is a failure.
  if [ "${VALGRIND_REQUIRED:-0}" = 1 ]; then echo "valgrind is required here but not installed" >&2; exit 1; fi
  echo "valgrind is not installed: skipped"
  exit 0
fi
bins=$(cargo test -p multiproc-core --no-run --message-format=json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.profile.test)console.log(m.executable)}})')
for bin in $bins; do
  name=$(basename "$bin" | cut -d- -f1)
  echo "valgrind: $name"
  valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no -q "$bin" --test-threads=1 --quiet
done
