// Power iteration on a matrix held in shared memory: worker processes each own a band of rows,
// and a Barrier separates the phases of every step.
//
//   node examples/matrix.mjs [--size 600] [--steps 100] [--processes 4]
//
// Finds the largest eigenvalue of a symmetric positive matrix by repeating x ← A·x / ‖A·x‖ and
// prints it. Shows: `RawArray` (a Float64Array over shared memory that every process sees, with
// no copying), passed to processes as `args`; `Barrier` to keep the processes in step.
import { parseArgs } from 'node:util'
import { Barrier, Process, parentProcess, RawArray } from 'multiproc'

/** The matrix: A[i][j] = 1 / (1 + |i − j|) + 1 / (1 + i + j), symmetric with positive entries. */
export function entry(i, j) {
  return 1 / (1 + Math.abs(i - j)) + 1 / (1 + i + j)
}

/**
 * Runs in each process, on rows [from, to). Each step has two phases: y = A·x for its rows, then,
 * once every y is written, x = y / ‖y‖ for its rows. Every process computes ‖y‖ over all of y in
 * the same order, so all of them get the very same number and nobody has to send it.
 */
export async function iterate(a, x, y, n, from, to, steps, barrier) {
  for (let step = 0; step < steps; step++) {
    for (let i = from; i < to; i++) {
      let sum = 0
      for (let j = 0; j < n; j++) sum += a[i * n + j] * x[j]
      y[i] = sum
    }
    await barrier.wait() // every y[i] is written
    let norm = 0
    for (let i = 0; i < n; i++) norm += y[i] * y[i]
    norm = Math.sqrt(norm)
    for (let i = from; i < to; i++) x[i] = y[i] / norm
    await barrier.wait() // every x[i] is written: the next step may read x
  }
}

if (!parentProcess()) {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '600' },
      steps: { type: 'string', default: '100' },
      processes: { type: 'string', default: '4' },
    },
  })
  const [n, steps, processes] = [Number(values.size), Number(values.steps), Number(values.processes)]
  const a = RawArray('f64', n * n)
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = entry(i, j)
  const x = RawArray('f64', n).fill(1 / Math.sqrt(n))
  const y = RawArray('f64', n)
  const barrier = new Barrier(processes, { timeout: 60_000 }) // a dead party breaks it, never a hang

  const band = Math.ceil(n / processes)
  const workers = Array.from({ length: processes }, (_, k) => {
    const [from, to] = [k * band, Math.min(n, (k + 1) * band)]
    return new Process({ target: iterate, args: [a, x, y, n, from, to, steps, barrier], modules: [import.meta.url] })
  })
  const started = performance.now()
  for (const w of workers) await w.start()
  for (const w of workers) await w.join()
  if (workers.some((w) => w.exitCode !== 0)) throw new Error('a worker failed (its error is on stderr above)')

  // x is a unit vector and y = A·x from the last step, so ‖y‖ is the eigenvalue's estimate.
  let norm = 0
  for (let i = 0; i < n; i++) norm += y[i] * y[i]
  const ms = performance.now() - started
  console.log(`${n}×${n} matrix, ${steps} steps on ${processes} processes: ${ms.toFixed(0)} ms`)
  console.log(`largest eigenvalue ≈ ${Math.sqrt(norm)}`)
}
