// The tasks every pool in bench/pool.mjs runs (CommonJS so that piscina, tinypool, workerpool
// and multiproc can all load it). workerpool's workers register them when started by it.

function square(x) {
  return x * x
}

function inc(x) {
  return x + 1
}

/** Primes in [from, to) by trial division: CPU-bound, no shared state. */
function primes([from, to]) {
  let count = 0
  for (let n = Math.max(from, 2); n < to; n++) {
    if (n % 2 === 0) {
      if (n === 2) count++
      continue
    }
    let prime = true
    for (let d = 3; d * d <= n; d += 2) {
      if (n % d === 0) {
        prime = false
        break
      }
    }
    if (prime) count++
  }
  return count
}

module.exports = { square, inc, primes }

if (process.env.BENCH_WORKERPOOL === '1') {
  const workerpool = require('workerpool')
  if (!workerpool.isMainThread || process.send) workerpool.worker({ square, inc, primes })
}
