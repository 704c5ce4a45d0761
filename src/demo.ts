/**
 * The showcase: count the primes below a bound on every core, with a live progress bar, and
 * report the speed-up over one process: `Pool.map` over ranges, progress from `onProgress`.
 */

import { InvalidStateError } from './errors.js'
import { Pool } from './pool.js'
import { countPrimesIn } from './primes.js'
import { cpuCount } from './process.js'
import { ProgressBar } from './progress-bar.js'

type Range = [from: number, to: number]

export { countPrimesIn }

/** `countPrimesIn` for one range, as a pool task. */
export function countRange([from, to]: [number, number]): number {
  return countPrimesIn(from, to)
}

function progressBar(label: string, total: number): ProgressBar {
  return new ProgressBar(label, total, 'ranges')
}

/** The job in this process alone, one range after another. */
async function runHere(ranges: Range[]): Promise<{ primes: number; seconds: number }> {
  const bar = progressBar('1 process', ranges.length)
  const started = performance.now()
  let primes = 0
  for (const [i, r] of ranges.entries()) {
    primes += countRange(r)
    bar.update(i + 1)
    if (i % 8 === 7) await new Promise((resolve) => setImmediate(resolve)) // let the bar draw
  }
  bar.stop()
  return { primes, seconds: (performance.now() - started) / 1000 }
}

/** The job on a pool of `workers` processes, pool start included. */
async function runOnPool(workers: number, ranges: Range[]): Promise<{ primes: number; seconds: number; startMs: number }> {
  const begun = performance.now()
  // countRange is found among this module's exports (it calls countPrimesIn, which source alone would not see).
  await using pool = new Pool({ processes: workers, modules: [import.meta.url] })
  // A pool is started once and reused: its start (a Node process per worker) is timed apart.
  await pool.map(
    (x: number) => x,
    Array.from({ length: workers }, (_, i) => i),
    { chunksize: 1 },
  )
  const startMs = performance.now() - begun
  const bar = progressBar(`${workers} processes`, ranges.length)
  const started = performance.now()
  const counts = await pool.map<number>(countRange, ranges, {
    chunksize: 1,
    onProgress: ({ done }) => bar.update(done),
  })
  bar.stop()
  return { primes: counts.reduce((a, b) => a + b, 0), seconds: (performance.now() - started) / 1000, startMs }
}

/** Runs the showcase and prints the result. */
export async function demo(limit = 12_000_000): Promise<void> {
  const cores = cpuCount()
  const chunk = 50_000
  const ranges: Range[] = []
  for (let from = 0; from < limit; from += chunk) ranges.push([from, Math.min(limit, from + chunk)])
  console.log(`Counting the primes below ${limit.toLocaleString('en')} in ${ranges.length} ranges of ${chunk.toLocaleString('en')}.\n`)
  const one = await runHere(ranges)
  const all = await runOnPool(cores, ranges)
  if (one.primes !== all.primes) throw new InvalidStateError(`results differ: ${one.primes} vs ${all.primes}`)
  console.log(`\n${all.primes.toLocaleString('en')} primes.`)
  console.log(`1 process:  ${one.seconds.toFixed(2)} s`)
  console.log(`${cores} processes: ${all.seconds.toFixed(2)} s  → ${(one.seconds / all.seconds).toFixed(2)}× faster`)
  const withStart = all.seconds + all.startMs / 1000
  console.log(`(starting the pool took ${all.startMs.toFixed(0)} ms more: ${(one.seconds / withStart).toFixed(2)}× counting it)`)
}
