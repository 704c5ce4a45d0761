#!/usr/bin/env node
/**
 * The Pool over BullMQ (`npm run bench:bullmq`): the local Pool, the BullMQ backend with one
 * `multiproc worker` host, and BullMQ's own inline processor, on the same tiny task (x => x * x),
 * with a Redis of its own (a Unix socket, no persistence), in one run.
 *
 * - `map` of 200,000 tiny tasks: the local Pool and the BullMQ backend with default chunking;
 *   BullMQ one job per item (its own way to fan out a list), timed over fewer items and given as
 *   items per second.
 * - `apply` round trip, one call at a time (p50 / p99): the local Pool, the BullMQ backend, and a
 *   BullMQ job with `waitUntilFinished` (QueueEvents).
 *
 * The workers have 2 processes (BullMQ's: one process, concurrency 2, the same jobs at a time).
 * Prints the tables and writes bench/results/bullmq-<date>.json and bullmq-latest.md.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { Queue, QueueEvents } from 'bullmq'

import { startRedis, startWorkerHost, stopWorkerHost } from '../__test__/redis-server.mjs'
import { bullmq } from '../dist/bullmq.js'
import { Pool } from '../dist/index.js'
import { square } from './bullmq-tasks.mjs'
import { fmt, machineInfo, table, times, writeResults } from './harness.mjs'

const TASKS = new URL('./bullmq-tasks.mjs', import.meta.url)
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
/** BENCH_QUICK=1: a tenth of the work (a check that the script runs, not a measurement). */
const QUICK = process.env.BENCH_QUICK === '1'
const CONFIG = {
  processes: Number(process.env.BENCH_WORKERS ?? 2),
  mapItems: QUICK ? 20_000 : 200_000,
  /** BullMQ one job per item: this many jobs, added in batches. */
  bullmqJobs: QUICK ? 2_000 : 20_000,
  bullmqBatch: 1_000,
  apply: { warmup: QUICK ? 20 : 200, calls: QUICK ? 300 : 2_000 },
}

const log = (s) => process.stderr.write(`${s}\n`)
const items = Array.from({ length: CONFIG.mapItems }, (_, i) => i)

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))]
  return { p50: at(0.5), p99: at(0.99) }
}

async function applyLatency(once) {
  for (let i = 0; i < CONFIG.apply.warmup; i++) await once(i)
  const samples = []
  for (let i = 0; i < CONFIG.apply.calls; i++) {
    const t = performance.now()
    await once(i)
    samples.push(performance.now() - t)
  }
  return percentiles(samples)
}

async function timedMap(pool) {
  await pool.map(square, items.slice(0, 20_000)) // warm-up
  const t = performance.now()
  const out = await pool.map(square, items)
  const ms = performance.now() - t
  if (out[CONFIG.mapItems - 1] !== (CONFIG.mapItems - 1) ** 2) throw new Error('wrong map result')
  return { ms, itemsPerSec: (CONFIG.mapItems / ms) * 1000 }
}

async function localPool() {
  log('local Pool …')
  const pool = new Pool({ processes: CONFIG.processes, modules: [TASKS] })
  const map = await timedMap(pool)
  const apply = await applyLatency((i) => pool.apply(square, [i]))
  pool.close()
  await pool.join()
  return { map, apply }
}

async function backend(redis) {
  log('BullMQ backend …')
  const host = await startWorkerHost({ url: redis.url, queue: 'bench-backend', modules: [TASKS], processes: CONFIG.processes })
  try {
    const pool = new Pool({
      processes: CONFIG.processes,
      backend: bullmq({ connection: redis.url, queue: 'bench-backend' }),
      modules: [TASKS],
    })
    const map = await timedMap(pool)
    const apply = await applyLatency((i) => pool.apply(square, [i]))
    pool.close()
    await pool.join()
    return { map, apply }
  } finally {
    await stopWorkerHost(host)
  }
}

/** A BullMQ Worker with an inline processor (x * x), in a process of its own. */
async function inlineWorker(redis, queue) {
  const source = `
    const { Worker } = require('bullmq')
    const w = new Worker(${JSON.stringify(queue)}, async (job) => job.data.x * job.data.x,
      { connection: { path: ${JSON.stringify(redis.socket)}, maxRetriesPerRequest: null }, concurrency: ${CONFIG.processes} })
    w.waitUntilReady().then(() => console.log('ready'))
    process.on('SIGTERM', () => w.close().then(() => process.exit(0)))`
  const child = spawn(process.execPath, ['-e', source], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve)
    child.once('exit', (code) => reject(new Error(`the BullMQ worker exited (${code})`)))
  })
  return child
}

async function stopChild(child) {
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

async function bullmqOwn(redis) {
  log('BullMQ inline processor …')
  const connection = { path: redis.socket }
  // One job per item.
  const fanout = 'bench-fanout'
  const q = new Queue(fanout, { connection })
  const worker = await inlineWorker(redis, fanout)
  let map
  try {
    const t = performance.now()
    for (let i = 0; i < CONFIG.bullmqJobs; i += CONFIG.bullmqBatch) {
      const batch = Array.from({ length: Math.min(CONFIG.bullmqBatch, CONFIG.bullmqJobs - i) }, (_, k) => ({
        name: 'sq',
        data: { x: i + k },
        opts: { removeOnComplete: true },
      }))
      await q.addBulk(batch)
    }
    for (;;) {
      const c = await q.getJobCounts('wait', 'active', 'prioritized', 'delayed')
      if (c.wait + c.active + c.prioritized + c.delayed === 0) break
      await new Promise((r) => setTimeout(r, 10))
    }
    const ms = performance.now() - t
    map = { ms, items: CONFIG.bullmqJobs, itemsPerSec: (CONFIG.bullmqJobs / ms) * 1000 }
  } finally {
    await stopChild(worker)
    await q.close()
  }
  // One job at a time, waited for through QueueEvents. Completed jobs are kept: removing them
  // races with waitUntilFinished ("Missing key for job").
  const rt = 'bench-roundtrip'
  const q2 = new Queue(rt, { connection })
  const events = new QueueEvents(rt, { connection })
  await events.waitUntilReady()
  const worker2 = await inlineWorker(redis, rt)
  let apply
  try {
    apply = await applyLatency(async (i) => {
      const job = await q2.add('sq', { x: i })
      return job.waitUntilFinished(events)
    })
  } finally {
    await stopChild(worker2)
    await events.close()
    await q2.close()
  }
  return { map, apply }
}

const date = new Date().toISOString()
const machine = machineInfo(null)
const redis = await startRedis()
let results
try {
  const local = await localPool()
  const remote = await backend(redis)
  const own = await bullmqOwn(redis)
  results = { local, remote, own }
} finally {
  await redis.stop()
}
const { local, remote, own } = results
machine.loadAvgEnd = machineInfo(null).loadAvg
const mapRatio = remote.map.itemsPerSec / own.map.itemsPerSec
const applyRatio = own.apply.p50 / remote.apply.p50

const mapTable = table(
  ['map of tiny tasks', 'items', 'time', 'items/s'],
  [
    ['multiproc Pool, local processes', CONFIG.mapItems, `${fmt(local.map.ms)} ms`, fmt(local.map.itemsPerSec)],
    ['multiproc Pool, BullMQ backend', CONFIG.mapItems, `${fmt(remote.map.ms)} ms`, fmt(remote.map.itemsPerSec)],
    ['BullMQ, one job per item', own.map.items, `${fmt(own.map.ms)} ms`, fmt(own.map.itemsPerSec)],
  ],
)
const applyTable = table(
  ['apply round trip', 'p50', 'p99'],
  [
    ['multiproc Pool, local processes', `${fmt(local.apply.p50 * 1000)} µs`, `${fmt(local.apply.p99 * 1000)} µs`],
    ['multiproc Pool, BullMQ backend', `${fmt(remote.apply.p50)} ms`, `${fmt(remote.apply.p99)} ms`],
    ['BullMQ job + waitUntilFinished', `${fmt(own.apply.p50)} ms`, `${fmt(own.apply.p99)} ms`],
  ],
)
const summary = [
  `BullMQ backend map vs BullMQ one job per item: ${times(mapRatio)} the items per second (target ≥ 20×)`,
  `BullMQ backend apply p50 vs BullMQ waitUntilFinished p50: ${fmt(remote.apply.p50)} ms vs ${fmt(own.apply.p50)} ms (${times(applyRatio)} as fast; target ≥ 1×)`,
].join('\n')
const md = `# The Pool over BullMQ (bench/bullmq.mjs)

${date}; ${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB, ${machine.kernel}, Node ${machine.node};
load average ${machine.loadAvg.join(' ')} at the start, ${machine.loadAvgEnd.join(' ')} at the end.
${CONFIG.processes} worker processes everywhere (BullMQ: one process, concurrency ${CONFIG.processes}); Redis on a Unix socket, no persistence.

${mapTable}

${applyTable}

${summary}
`
console.log(md)
const written = QUICK ? [] : writeResults(RESULTS, 'bullmq', { date, machine, config: CONFIG, results, mapRatio, applyRatio }, md)
log(`wrote ${written.map((f) => `bench/results/${f}`).join(', ')}`)
