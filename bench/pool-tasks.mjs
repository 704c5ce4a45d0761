// The tasks every pool in bench/pool.mjs runs (piscina, tinypool, workerpool and multiproc all
// load this module). workerpool's workers register them when started by it.
import { countPrimesIn } from '../dist/primes.js'

export function square(x) {
  return x * x
}

export function inc(x) {
  return x + 1
}

/** Primes in [from, to): CPU-bound, no shared state. */
export function primes([from, to]) {
  return countPrimesIn(from, to)
}

// Only workerpool's cases load workerpool (a dev dependency), so the others run without it.
if (process.env.BENCH_WORKERPOOL === '1') {
  const { default: workerpool } = await import('workerpool')
  if (!workerpool.isMainThread || process.send) workerpool.worker({ square, inc, primes })
}
