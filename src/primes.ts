/**
 * The CPU-bound work of the showcase and the pool benchmark: counting primes by trial division.
 * Deliberately plain (no imports), so that a benchmark's workers can load it alone.
 */

/** Primes in [from, to) by trial division: deliberately CPU-bound, no shared state. */
export function countPrimesIn(from: number, to: number): number {
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
