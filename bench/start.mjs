/**
 * Process start, by start method: `Process` start → first message through a Queue, idle child
 * memory (RSS and PSS from /proc/PID/smaps_rollup), `Pool(2)` start → first result (server up
 * and cold), a `maxTasksPerChild: 1` pool running tasks, and the first `map` of 200,000 tiny
 * tasks in a fresh pool; CPython's `fork`, `forkserver` and `spawn` beside them.
 *
 *     npm run build && node bench/start.mjs        # about a minute; writes bench/results/start-*.{json,md}
 *
 * Every case runs in a fresh process of its own (`node bench/start.mjs --case NAME METHOD`).
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { caseMain, fmt, machineInfo, pythonInfo, runIsolated, table, writeResults } from './harness.mjs'

const SELF = fileURLToPath(import.meta.url)
const PY = fileURLToPath(new URL('./py_start.py', import.meta.url))
const TASKS = new URL('./pool-tasks.mjs', import.meta.url)
const START_TASKS = new URL('./start-tasks.mjs', import.meta.url)

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

function memoryOf(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { rssMiB: kb('Rss') / 1024, pssMiB: kb('Pss') / 1024 }
}

const CASES = {
  /** Process start → first message through a Queue, `n` times, the server (if any) up and warm. */
  async first(method, { n }) {
    const { Process, Queue, setStartMethod } = await import('../dist/index.js')
    setStartMethod(method)
    const q = new Queue()
    const one = async () => {
      const t0 = performance.now()
      const p = new Process({ target: { module: START_TASKS, name: 'echoFirst' }, args: [q] })
      await p.start()
      await q.get({ timeout: 60000 })
      const ms = performance.now() - t0
      await p.join()
      return ms
    }
    for (let i = 0; i < 3; i++) await one() // boots the server, warms both sides
    const ms = []
    for (let i = 0; i < n; i++) ms.push(await one())
    return { p50: quantile(ms, 0.5), p90: quantile(ms, 0.9), n }
  },
  /** RSS and PSS of idle children (three at once, so that shared pages are shared). */
  async memory(method) {
    const { Process, Queue, setStartMethod } = await import('../dist/index.js')
    setStartMethod(method)
    const q = new Queue()
    const ps = []
    for (let i = 0; i < 3; i++) {
      const p = new Process({ target: { module: START_TASKS, name: 'idle' }, args: [q], daemon: true })
      await p.start()
      await q.get({ timeout: 60000 })
      ps.push(p)
    }
    await new Promise((r) => setTimeout(r, 1000))
    const m = ps.map((p) => memoryOf(p.pid))
    for (const p of ps) p.kill()
    return { rssMiB: m.reduce((a, b) => a + b.rssMiB, 0) / m.length, pssMiB: m.reduce((a, b) => a + b.pssMiB, 0) / m.length }
  },
  /** Pool(2) start → first result; `warm`: the server was started (setStartMethod) 2 s before. */
  async pool(method, { warm }) {
    const { Pool, setStartMethod } = await import('../dist/index.js')
    const { inc } = await import(TASKS)
    if (warm) {
      setStartMethod(method)
      await new Promise((r) => setTimeout(r, 2000))
    }
    const t0 = performance.now()
    const pool = new Pool({ processes: 2, startMethod: method, modules: [TASKS] })
    await pool.apply(inc, [1])
    const ms = performance.now() - t0
    await pool.terminate()
    return { ms }
  },
  /** A pool whose workers each run one task: tasks/s over `n` tasks. */
  async recycle(method, { n }) {
    const { Pool, setStartMethod } = await import('../dist/index.js')
    const { inc } = await import(TASKS)
    setStartMethod(method)
    const pool = new Pool({ processes: 2, maxTasksPerChild: 1, modules: [TASKS] })
    await pool.map(inc, [1, 2], { chunksize: 1 })
    const t0 = performance.now()
    await pool.map(
      inc,
      Array.from({ length: n }, (_, i) => i),
      { chunksize: 1 },
    )
    const s = (performance.now() - t0) / 1000
    pool.close()
    await pool.join()
    return { tasksPerSec: n / s, n }
  },
  /** The CPU-bound job of bench:pool (primes below 8,000,000 in ranges of 50,000) on 2 workers. */
  async cpu(method) {
    const { Pool, setStartMethod } = await import('../dist/index.js')
    const { primes } = await import(TASKS)
    setStartMethod(method)
    const work = []
    for (let from = 0; from < 8_000_000; from += 50_000) work.push([from, from + 50_000])
    const pool = new Pool({ processes: 2, modules: [TASKS] })
    await pool.map(primes, work.slice(0, 4), { chunksize: 1 }) // warm-up
    const t0 = performance.now()
    const counts = await pool.map(primes, work, { chunksize: 1 })
    const seconds = (performance.now() - t0) / 1000
    pool.close()
    await pool.join()
    return { seconds, primes: counts.reduce((a, b) => a + b, 0) }
  },
  /** The first map of 200,000 tiny tasks in a fresh pool, after one warm-up map of 20,000. */
  async firstMap(method) {
    const { Pool, setStartMethod } = await import('../dist/index.js')
    const { square } = await import(TASKS)
    setStartMethod(method)
    const pool = new Pool({ processes: 2, modules: [TASKS] })
    await pool.map(
      square,
      Array.from({ length: 20000 }, (_, i) => i),
    )
    const xs = Array.from({ length: 200000 }, (_, i) => i)
    const t0 = performance.now()
    await pool.map(square, xs)
    const s = (performance.now() - t0) / 1000
    pool.close()
    await pool.join()
    return { tasksPerSec: xs.length / s }
  },
}

const { parentProcess } = await import('../dist/index.js')
if (parentProcess()) {
  // Never in a child: the targets live in start-tasks.mjs. A guard all the same.
} else if (process.argv[2] === '--case') {
  const [name, method, config] = process.argv.slice(3)
  await caseMain(() => CASES[name](method, JSON.parse(config ?? '{}')))
} else {
  const python = pythonInfo()
  const run = (name, method, config = {}) => runIsolated(process.execPath, [SELF, '--case', name, method, JSON.stringify(config)], 180_000)
  const py = (name, method, config = {}) =>
    python ? runIsolated('python3', [PY, name, method, JSON.stringify(config)], 180_000) : { ok: false, error: 'python3 not found' }
  const rows = []
  const results = {}
  const show = (r, f) => (r.skipped ? '—' : r.ok ? f(r) : `failed: ${r.error}`)
  for (const [label, name, config, f] of [
    ['Process start → first message, p50 / p90 (ms)', 'first', { n: 20 }, (r) => `${fmt(r.p50)} / ${fmt(r.p90)}`],
    ['Idle child RSS / PSS (MiB)', 'memory', {}, (r) => `${fmt(r.rssMiB)} / ${fmt(r.pssMiB)}`],
    ['Pool(2) start → first result, server up (ms)', 'pool', { warm: true }, (r) => fmt(r.ms)],
    ['Pool(2) start → first result, cold (ms)', 'pool', { warm: false }, (r) => fmt(r.ms)],
    ['maxTasksPerChild: 1, tasks/s', 'recycle', { n: 60 }, (r) => fmt(r.tasksPerSec)],
    ['First map of 200,000 tiny tasks, tasks/s', 'firstMap', {}, (r) => fmt(r.tasksPerSec)],
    ['CPU-bound job (primes below 8,000,000), 2 workers (s)', 'cpu', {}, (r) => fmt(r.seconds)],
  ]) {
    process.stderr.write(`${label}\n`)
    const cells = {}
    for (const method of ['spawn', 'forkserver']) {
      const cfg = name === 'first' && method === 'spawn' ? { n: 8 } : name === 'recycle' && method === 'forkserver' ? { n: 200 } : config
      cells[`multiproc ${method}`] = await run(name, method, cfg)
    }
    for (const method of ['fork', 'forkserver', 'spawn']) {
      // The CPU-bound row compares multiproc's two methods with each other (bench:pool has CPython's).
      if (name === 'cpu') {
        cells[`CPython ${method}`] = { ok: true, skipped: true }
        continue
      }
      const cfg = name === 'recycle' ? { n: method === 'spawn' ? 60 : 200 } : config
      cells[`CPython ${method}`] = await py(name, method, cfg)
    }
    results[name + (name === 'pool' ? (config.warm ? 'Warm' : 'Cold') : '')] = cells
    rows.push([label, ...Object.values(cells).map((r) => show(r, f))])
  }
  const header = ['', 'multiproc spawn', 'multiproc forkserver', 'CPython fork', 'CPython forkserver', 'CPython spawn']
  const md = table(header, rows)
  process.stdout.write(`${md}\n`)
  const machine = machineInfo(python)
  const dir = fileURLToPath(new URL('./results/', import.meta.url))
  writeResults(dir, 'start', { date: new Date().toISOString(), machine, results }, `${md}\n\nMachine: ${JSON.stringify(machine)}\n`)
}
