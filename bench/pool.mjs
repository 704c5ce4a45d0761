#!/usr/bin/env node
/**
 * Pool benchmark: multiproc's Pool against piscina, tinypool, workerpool (threads and processes)
 * and CPython's multiprocessing.Pool, side by side on this machine, in one run
 * (`npm run bench:pool`). Every pool has the same number of workers (2 by default).
 *
 * Scenarios: `map` of tiny tasks (x => x * x) with default chunking and with one task per
 * message, `apply` round trip (p50/p99), a CPU-bound job (primes) against one process, and pool
 * start to first result with the memory each worker takes. Node peers have no chunking: they run
 * one task per item in every map scenario. Each case runs in its own process under a hard limit.
 *
 * Prints the tables, writes bench/results/pool-<date>.json, bench/results/pool-latest.md and
 * bench/results/pool-latest.svg (a chart of the ratios).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { caseMain, fmt, machineInfo, pythonInfo, runIsolated, shmEntries, table, times, writeResults } from './harness.mjs'
import * as tasks from './pool-tasks.mjs'

const TASKS = new URL('./pool-tasks.mjs', import.meta.url)
const PY_SCRIPT = fileURLToPath(new URL('./py_pool.py', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
const require = createRequire(import.meta.url)

const CONFIG = {
  workers: Number(process.env.BENCH_WORKERS ?? 2),
  /** Items of the default-chunking map, and of the one-task-per-message map. */
  mapItems: 200_000,
  mapOneItems: 50_000,
  /** Maps of a quarter of the items run for at least this long before the timed runs. */
  warmupMs: 1_000,
  /** Timed map runs stop after this much (at least one runs); the median is reported. */
  mapBudgetMs: 15_000,
  apply: { warmup: 500, calls: 5_000 },
  /** The CPU-bound job: primes below `limit` in ranges of `range`. */
  /** CPython runs a tenth of it (pure Python is ~30× slower at this). */
  cpu: { limit: 8_000_000, range: 50_000, pyLimit: 800_000, pyRange: 5_000 },
  caseLimitMs: 60_000,
}

const POOLS = [
  { id: 'multiproc', name: 'multiproc Pool', kind: 'processes' },
  { id: 'piscina', name: 'piscina', kind: 'threads' },
  { id: 'tinypool', name: 'tinypool', kind: 'threads' },
  { id: 'workerpool', name: 'workerpool', kind: 'threads' },
  { id: 'workerpool-process', name: 'workerpool', kind: 'processes' },
  { id: 'python', name: 'CPython multiprocessing.Pool', kind: 'processes', py: true },
]

const SCENARIOS = [
  { id: 'map', title: `map of ${CONFIG.mapItems.toLocaleString('en')} tiny tasks (x * x), default chunking` },
  { id: 'map1', title: `map of ${CONFIG.mapOneItems.toLocaleString('en')} tiny tasks, one task per message (chunksize 1)` },
  { id: 'apply', title: 'apply round trip (x + 1), one call at a time' },
  { id: 'cpu', title: `CPU-bound: primes below ${CONFIG.cpu.limit.toLocaleString('en')}, ${CONFIG.workers} workers vs one process` },
  { id: 'start', title: 'pool start to first result, and memory per worker' },
]

// =====================================================================================
// One case, in its own process
// =====================================================================================

/** The same interface over every pool: `map(name, items, chunksize?)`, `apply(name, x)`, `close()`. */
async function openPool(id) {
  const n = CONFIG.workers
  if (id === 'multiproc') {
    const { Pool } = await import('../dist/index.js')
    const pool = new Pool({ processes: n })
    const target = Object.fromEntries(['square', 'inc', 'primes'].map((name) => [name, { module: TASKS, name }]))
    return {
      map: (name, items, chunksize) => pool.map(target[name], items, { chunksize }),
      apply: (name, x) => pool.apply(target[name], [x]),
      pids: () => pool.workers.map((p) => p.pid),
      close: () => pool.terminate(),
    }
  }
  const filename = fileURLToPath(TASKS)
  const each = (run) => (name, items) => Promise.all(items.map((x) => run(name, x)))
  if (id === 'piscina') {
    const { Piscina } = await import('piscina')
    const pool = new Piscina({ filename, minThreads: n, maxThreads: n })
    const run = (name, x) => pool.run(x, { name })
    return { map: each(run), apply: run, close: () => pool.destroy() }
  }
  if (id === 'tinypool') {
    const { Tinypool } = await import('tinypool')
    const pool = new Tinypool({ filename, minThreads: n, maxThreads: n })
    const run = (name, x) => pool.run(x, { name })
    return { map: each(run), apply: run, close: () => pool.destroy() }
  }
  if (id === 'workerpool' || id === 'workerpool-process') {
    process.env.BENCH_WORKERPOOL = '1'
    const workerpool = require('workerpool')
    const type = id === 'workerpool' ? 'thread' : 'process'
    const pool = workerpool.pool(filename, { minWorkers: n, maxWorkers: n, workerType: type })
    const run = (name, x) => pool.exec(name, [x])
    return { map: each(run), apply: run, close: () => pool.terminate(true) }
  }
  throw new Error(`unknown pool ${id}`)
}

function rssMiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

function childPids() {
  const pids = []
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      pids.push(...readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number))
    } catch {}
  }
  return pids
}

const ranges = () => {
  const out = []
  for (let from = 0; from < CONFIG.cpu.limit; from += CONFIG.cpu.range)
    out.push([from, Math.min(CONFIG.cpu.limit, from + CONFIG.cpu.range)])
  return out
}

async function runCase(id, scenario) {
  const rssBefore = process.memoryUsage().rss / 2 ** 20
  const t0 = performance.now()
  const pool = await openPool(id)
  try {
    if (scenario === 'start') {
      await pool.apply('inc', 1)
      const firstResultMs = performance.now() - t0
      await Promise.all(Array.from({ length: CONFIG.workers * 4 }, (_, i) => pool.apply('inc', i)))
      // Processes: the resident memory of each worker. Threads: what the pool added to this process.
      const kids = pool.pids ? pool.pids() : childPids()
      const perWorkerMiB =
        kids.length > 0
          ? kids.reduce((s, pid) => s + rssMiB(pid), 0) / kids.length
          : (process.memoryUsage().rss / 2 ** 20 - rssBefore) / CONFIG.workers
      return { firstResultMs, perWorkerMiB, measuredAs: kids.length > 0 ? 'RSS of each worker process' : 'RSS added per worker thread' }
    }
    if (scenario === 'map' || scenario === 'map1') {
      const n = scenario === 'map' ? CONFIG.mapItems : CONFIG.mapOneItems
      const chunksize = scenario === 'map' ? undefined : 1
      const items = Array.from({ length: n }, (_, i) => i)
      // Warm-up: maps of a quarter of the items for at least a second (a JIT needs the runs).
      const warm = items.slice(0, n >> 2)
      for (const until = performance.now() + CONFIG.warmupMs; performance.now() < until; ) await pool.map('square', warm, chunksize)
      // The median of up to 3 timed runs (fewer when a run is slow): a JIT warms up over the first.
      const rates = []
      const started = performance.now()
      while (rates.length < 3 && (rates.length === 0 || performance.now() - started < CONFIG.mapBudgetMs)) {
        const t = performance.now()
        const out = await pool.map('square', items, chunksize)
        rates.push(n / ((performance.now() - t) / 1000))
        if (out.length !== n || out[n - 1] !== (n - 1) * (n - 1)) throw new Error('wrong results')
      }
      rates.sort((a, b) => a - b)
      return { items: n, runs: rates.length, tasksPerSec: rates[(rates.length - 1) >> 1] }
    }
    if (scenario === 'apply') {
      for (let i = 0; i < CONFIG.apply.warmup; i++) await pool.apply('inc', i)
      const lat = new Float64Array(CONFIG.apply.calls)
      for (let i = 0; i < lat.length; i++) {
        const t = performance.now()
        const r = await pool.apply('inc', i)
        lat[i] = performance.now() - t
        if (r !== i + 1) throw new Error('wrong result')
      }
      lat.sort()
      return { calls: lat.length, p50Us: lat[lat.length >> 1] * 1000, p99Us: lat[Math.floor(lat.length * 0.99)] * 1000 }
    }
    if (scenario === 'cpu') {
      const work = ranges()
      let t = performance.now()
      let single = 0
      for (const r of work) single += tasks.primes(r)
      const oneSeconds = (performance.now() - t) / 1000
      await pool.map('primes', work.slice(0, 4), 1) // warm-up
      t = performance.now()
      const counts = await pool.map('primes', work, 1)
      const poolSeconds = (performance.now() - t) / 1000
      const total = counts.reduce((a, b) => a + b, 0)
      if (total !== single) throw new Error(`wrong count ${total} vs ${single}`)
      return { oneSeconds, poolSeconds, speedup: oneSeconds / poolSeconds, primes: total }
    }
    throw new Error(`unknown scenario ${scenario}`)
  } finally {
    await pool.close()
  }
}

// =====================================================================================
// Runner and report
// =====================================================================================

async function main() {
  const started = performance.now()
  const python = pythonInfo()
  const machine = machineInfo(python)
  const shmBefore = shmEntries()
  process.stderr.write(
    `Pool benchmark: ${CONFIG.workers} workers each, on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, Python ${machine.python}\n`,
  )
  const results = []
  for (const s of SCENARIOS) {
    for (const p of POOLS) {
      let r
      if (p.py && !python) r = { ok: false, error: 'skipped: python3 not found' }
      else {
        const t0 = performance.now()
        r = p.py
          ? await runIsolated('python3', [PY_SCRIPT, s.id, JSON.stringify(CONFIG)], CONFIG.caseLimitMs)
          : await runIsolated(process.execPath, [fileURLToPath(import.meta.url), '--case', p.id, s.id], CONFIG.caseLimitMs)
        r.caseSeconds = +((performance.now() - t0) / 1000).toFixed(2)
      }
      results.push({ pool: p.id, name: p.name, kind: p.kind, scenario: s.id, ...r })
      process.stderr.write(
        `  ${s.id.padEnd(6)} ${`${p.name} (${p.kind})`.padEnd(44)} ${r.ok ? summary(s.id, r) : r.error}  [${r.caseSeconds ?? 0} s]\n`,
      )
    }
  }
  machine.loadAvgAfter = os.loadavg().map((x) => +x.toFixed(2))
  const date = new Date()
  const report = {
    date: date.toISOString(),
    seconds: +((performance.now() - started) / 1000).toFixed(1),
    machine,
    config: CONFIG,
    leakedShm: [...shmEntries()].filter((x) => !shmBefore.has(x)),
    results,
  }
  const md = markdown(report)
  process.stdout.write(`\n${md}`)
  const written = writeResults(RESULTS, 'pool', report, md, { svg: chart(report) })
  process.stderr.write(`\nwrote ${written.map((f) => `bench/results/${f}`).join(', ')} (${report.seconds} s)\n`)
}

function summary(scenario, r) {
  if (scenario === 'map' || scenario === 'map1') return `${fmt(r.tasksPerSec)} tasks/s`
  if (scenario === 'apply') return `p50 ${fmt(r.p50Us)} µs, p99 ${fmt(r.p99Us)} µs`
  if (scenario === 'cpu') return `${r.speedup.toFixed(2)}× one process (${r.poolSeconds.toFixed(2)} s vs ${r.oneSeconds.toFixed(2)} s)`
  return `first result ${fmt(r.firstResultMs)} ms, ${fmt(r.perWorkerMiB)} MiB per worker`
}

/** How multiproc compares with a row: >1 means multiproc is better. */
function advantage(scenario, ours, r) {
  if (!ours?.ok || !r.ok) return undefined
  if (scenario === 'map' || scenario === 'map1') return ours.tasksPerSec / r.tasksPerSec
  if (scenario === 'apply') return r.p50Us / ours.p50Us
  if (scenario === 'cpu') return ours.speedup / r.speedup
  return r.firstResultMs / ours.firstResultMs
}

function markdown(report) {
  const m = report.machine
  const out = [
    '# Pool benchmark',
    '',
    `${report.date.slice(0, 16).replace('T', ' ')} UTC, \`npm run bench:pool\`, ${report.seconds} s in all. ${report.config.workers} workers in every pool.`,
    '',
    `Machine: ${m.cpu}, ${m.cores} logical cores, ${m.ramGiB} GiB RAM, ${m.kernel} (${m.arch}), Node ${m.node}, Python ${m.python}. ` +
      `Load average ${m.loadAvg.join(' / ')} at the start, ${m.loadAvgAfter.join(' / ')} at the end.`,
    '',
    'The last column is how many times better multiproc is than that row (higher throughput, lower latency, …). ' +
      'Node peers have no chunking: their maps run one task per item.',
  ]
  for (const s of SCENARIOS) {
    const rows = report.results.filter((r) => r.scenario === s.id)
    const ours = rows.find((r) => r.pool === 'multiproc')
    out.push('', `## ${s.title}`, '')
    const cells = rows.map((r) => {
      const k = advantage(s.id, ours, r)
      const vs = r.pool === 'multiproc' ? '' : k === undefined ? '' : times(k)
      return [`${r.name} (${r.kind})`, r.ok ? summary(s.id, r) : `failed: ${r.error}`, vs]
    })
    out.push(table(['pool', 'result', 'multiproc vs it'], cells))
  }
  return `${out.join('\n')}\n`
}

/** A bar chart (SVG) of multiproc's advantage over each peer, per scenario, on a log scale. */
function chart(report) {
  const bars = []
  for (const s of SCENARIOS.filter((x) => x.id !== 'cpu')) {
    const ours = report.results.find((r) => r.scenario === s.id && r.pool === 'multiproc')
    for (const r of report.results.filter((x) => x.scenario === s.id && x.pool !== 'multiproc')) {
      const k = advantage(s.id, ours, r)
      if (k !== undefined) bars.push({ group: s.id, label: `${r.name} (${r.kind})`, k })
    }
  }
  const titles = {
    map: 'map, default chunking: tasks/s',
    map1: 'map, chunksize 1: tasks/s',
    apply: 'apply round trip p50',
    start: 'start to first result',
  }
  const rowH = 18
  const left = 280
  const width = 820
  const scale = (k) => (Math.log10(Math.min(Math.max(k, 0.1), 1e4)) + 1) * ((width - left - 60) / 5) // 0.1× … 10,000×
  let y = 40
  const parts = []
  let group = ''
  for (const b of bars) {
    if (b.group !== group) {
      group = b.group
      y += 14
      parts.push(`<text x="10" y="${y}" font-weight="bold">${titles[group]}</text>`)
      y += 8
    }
    const w = scale(b.k)
    const x0 = left + scale(1) - (b.k < 1 ? scale(1) - w : 0)
    const barW = Math.abs(w - scale(1))
    parts.push(`<text x="20" y="${y + 13}">${b.label}</text>`)
    parts.push(
      `<rect x="${x0.toFixed(1)}" y="${y + 2}" width="${barW.toFixed(1)}" height="${rowH - 4}" fill="${b.k >= 1 ? '#2e7d32' : '#c62828'}"/>`,
    )
    parts.push(`<text x="${(left + Math.max(w, scale(1)) + 6).toFixed(1)}" y="${y + 13}">${times(b.k)}</text>`)
    y += rowH
  }
  const axis = left + scale(1)
  const height = y + 20
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">multiproc Pool: times better than each peer (log scale; ${report.config.workers} workers, ${report.machine.cpu})</text>
<line x1="${axis}" y1="30" x2="${axis}" y2="${height - 10}" stroke="#555"/>
${parts.join('\n')}
</svg>
`
}

if (process.argv[2] === '--report') {
  // Rewrites pool-latest.md and pool-latest.svg from a saved run's JSON.
  const report = JSON.parse(readFileSync(process.argv[3], 'utf8'))
  writeResults(RESULTS, 'pool', report, markdown(report), { svg: chart(report) })
} else if (process.argv[2] === '--case') {
  const [, , , id, scenario] = process.argv
  await caseMain(() => runCase(id, scenario))
} else {
  await main()
}
