/**
 * The showcase: count the primes below a bound on every core, with a live progress bar, and
 * report the speed-up over one process. Workers are plain `Process`es fed through a `Queue`.
 */
import cliProgress from 'cli-progress'

import { cpuCount, Process } from './process.js'
import { Queue } from './queue.js'

type Range = [from: number, to: number] | null

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

/** A worker: takes ranges until it gets `null`, sends back one count per range. */
export function primeWorker(tasks: Queue<Range>, results: Queue<number>): void {
  for (;;) {
    const range = tasks.getSync()
    if (range === null) return
    results.putSync(countPrimesIn(range[0], range[1]))
  }
}

async function run(workers: number, limit: number, chunk: number, label: string): Promise<{ primes: number; seconds: number }> {
  const tasks = new Queue<Range>()
  const results = new Queue<number>()
  const started = performance.now()
  const procs = Array.from(
    { length: workers },
    () => new Process({ target: { module: import.meta.url, name: 'primeWorker' }, args: [tasks, results], daemon: true }),
  )
  await Promise.all(procs.map((p) => p.start()))
  const total = Math.ceil(limit / chunk)
  for (let from = 0; from < limit; from += chunk) await tasks.put([from, Math.min(limit, from + chunk)])
  for (let i = 0; i < workers; i++) await tasks.put(null)
  const bar = new cliProgress.SingleBar(
    { format: `${label.padEnd(12)} {bar} {percentage}% | {value}/{total} ranges | {primes} primes`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  )
  bar.start(total, 0, { primes: 0 })
  let primes = 0
  for (let done = 1; done <= total; done++) {
    primes += await results.get({ timeout: 120_000 })
    bar.update(done, { primes })
  }
  bar.stop()
  await Promise.all(procs.map((p) => p.join()))
  return { primes, seconds: (performance.now() - started) / 1000 }
}

/** Runs the showcase and prints the result. */
export async function demo(limit = 12_000_000): Promise<void> {
  const cores = cpuCount()
  const chunk = 50_000
  console.log(`Counting the primes below ${limit.toLocaleString('en')} in ranges of ${chunk.toLocaleString('en')}.\n`)
  const one = await run(1, limit, chunk, '1 process')
  const all = await run(cores, limit, chunk, `${cores} processes`)
  if (one.primes !== all.primes) throw new Error(`results differ: ${one.primes} vs ${all.primes}`)
  console.log(`\n${all.primes.toLocaleString('en')} primes.`)
  console.log(`1 process:  ${one.seconds.toFixed(2)} s`)
  console.log(`${cores} processes: ${all.seconds.toFixed(2)} s  → ${(one.seconds / all.seconds).toFixed(2)}× faster`)
}
