#!/usr/bin/env node
/**
 * Synchronisation benchmark (`npm run bench:sync`): multiproc's Lock and Event against CPython's
 * multiprocessing, measured in the same run on this machine.
 *
 * - uncontended `acquireSync()` + `release()` (and `await acquire()` + `release()`), per pair;
 * - lock hand-off between two processes: the child blocks in `acquire` on a lock the parent
 *   holds; the parent stamps the time in shared memory and releases; the child measures how long
 *   after the stamp its acquire returned;
 * - Event wake latency: the same ping-pong with two Events (`set` → `wait` returns).
 *
 * Prints a table and writes bench/results/sync-latest.md.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

import { Event, Lock, Process, RawArray, RLock } from '../dist/index.js'

const CONFIG = { uncontended: 5_000_000, warmup: 2_000, rounds: 20_000, settleUs: 20 }
const WORKER = new URL('./sync-worker.mjs', import.meta.url)
const PY = fileURLToPath(new URL('./py_sync.py', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))

function percentile(xs, p) {
  const s = Float64Array.from(xs).sort()
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]
}

function uncontended(lock, n) {
  for (let i = 0; i < n / 10; i++) {
    lock.acquireSync()
    lock.release()
  }
  const t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    lock.acquireSync()
    lock.release()
  }
  return Number(process.hrtime.bigint() - t) / n
}

async function uncontendedAsync(lock, n) {
  const t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    await lock.acquire()
    lock.release()
  }
  return Number(process.hrtime.bigint() - t) / n
}

/** Busy-waits about `us` microseconds (lets the waiter get into its acquire). */
function pause(us) {
  const until = process.hrtime.bigint() + BigInt(us * 1000)
  while (process.hrtime.bigint() < until) {}
}

/**
 * Lock hand-off: the parent holds the lock; the child, announced, blocks in acquire; the parent
 * stamps the time (CLOCK_MONOTONIC, shared memory) and releases; the child records how long after
 * the stamp its acquire returned. Then the parent takes the lock back for the next round.
 */
async function handOff(useAsync) {
  const total = CONFIG.warmup + CONFIG.rounds
  const lock = new Lock()
  const state = RawArray('i32', 2)
  const stamp = RawArray('i64', 1)
  const out = RawArray('f64', total)
  lock.acquireSync()
  const child = new Process({
    target: { module: WORKER, name: 'lockWaiter' },
    args: [lock, state, stamp, out, total, useAsync],
    daemon: true,
  })
  await child.start()
  for (let i = 0; i < total; i++) {
    while (Atomics.load(state, 0) !== 2 * i + 1) {}
    pause(CONFIG.settleUs)
    stamp[0] = process.hrtime.bigint()
    lock.release()
    while (Atomics.load(state, 0) !== 2 * i + 2) {}
    lock.acquireSync()
    Atomics.store(state, 1, i + 1)
  }
  await child.join(10_000)
  const lat = Array.from(out.subarray(CONFIG.warmup))
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) }
}

/** Event wake-up: a ping-pong of two Events; half the round trip is one wake-up. */
async function eventPingPong(useAsync) {
  const ping = new Event()
  const pong = new Event()
  const total = CONFIG.warmup + CONFIG.rounds
  const child = new Process({ target: { module: WORKER, name: 'eventPartner' }, args: [ping, pong, total, useAsync], daemon: true })
  await child.start()
  const rtts = []
  for (let i = 0; i < total; i++) {
    const t = process.hrtime.bigint()
    ping.set()
    if (useAsync) await pong.wait()
    else pong.waitSync()
    pong.clear()
    if (i >= CONFIG.warmup) rtts.push(Number(process.hrtime.bigint() - t))
  }
  await child.join(10_000)
  return { p50: percentile(rtts, 0.5) / 2, p99: percentile(rtts, 0.99) / 2 }
}

function python() {
  try {
    const out = execFileSync('python3', [PY, JSON.stringify(CONFIG)], { encoding: 'utf8', timeout: 120_000 })
    const line = out.split('\n').find((l) => l.startsWith('@@RESULT '))
    return line ? JSON.parse(line.slice(9)) : { error: 'no result' }
  } catch (err) {
    return { error: String(err.message ?? err).split('\n')[0] }
  }
}

const fmt = (ns) => (ns === undefined ? 'n/a' : ns < 1000 ? `${ns.toFixed(0)} ns` : `${(ns / 1000).toFixed(1)} µs`)
const ratio = (py, ours) => (py === undefined || ours === undefined ? 'n/a' : `${(py / ours).toFixed(1)}×`)

const ours = {
  lockSync: uncontended(new Lock(), CONFIG.uncontended),
  rlockSync: uncontended(new RLock(), CONFIG.uncontended),
  lockAsync: await uncontendedAsync(new Lock(), CONFIG.uncontended / 10),
  handoffSync: await handOff(false),
  handoffAsync: await handOff(true),
  eventSync: await eventPingPong(false),
  eventAsync: await eventPingPong(true),
}
const py = python()

const rows = [
  ['uncontended `acquireSync()` + `release()` (Lock)', fmt(ours.lockSync), fmt(py.uncontended), ratio(py.uncontended, ours.lockSync)],
  ['uncontended `acquireSync()` + `release()` (RLock)', fmt(ours.rlockSync), '', ''],
  ['uncontended `await acquire()` + `release()` (Lock)', fmt(ours.lockAsync), '', ''],
  ['lock hand-off p50, blocking (`acquireSync`)', fmt(ours.handoffSync.p50), fmt(py.lock?.p50), ratio(py.lock?.p50, ours.handoffSync.p50)],
  ['lock hand-off p99, blocking', fmt(ours.handoffSync.p99), fmt(py.lock?.p99), ratio(py.lock?.p99, ours.handoffSync.p99)],
  ['lock hand-off p50, `await acquire()`', fmt(ours.handoffAsync.p50), fmt(py.lock?.p50), ratio(py.lock?.p50, ours.handoffAsync.p50)],
  ['lock hand-off p99, `await acquire()`', fmt(ours.handoffAsync.p99), fmt(py.lock?.p99), ratio(py.lock?.p99, ours.handoffAsync.p99)],
  ['Event wake p50, blocking (`waitSync`)', fmt(ours.eventSync.p50), fmt(py.event?.p50), ratio(py.event?.p50, ours.eventSync.p50)],
  ['Event wake p99, blocking', fmt(ours.eventSync.p99), fmt(py.event?.p99), ratio(py.event?.p99, ours.eventSync.p99)],
  ['Event wake p50, `await wait()`', fmt(ours.eventAsync.p50), fmt(py.event?.p50), ratio(py.event?.p50, ours.eventAsync.p50)],
  ['Event wake p99, `await wait()`', fmt(ours.eventAsync.p99), fmt(py.event?.p99), ratio(py.event?.p99, ours.eventAsync.p99)],
]
const cpu = (/model name\s*:\s*(.*)/.exec(execFileSync('cat', ['/proc/cpuinfo'], { encoding: 'utf8' })) ?? [])[1] ?? os.cpus()[0]?.model
const pyVersion = (() => {
  try {
    return execFileSync('python3', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'python3 not found'
  }
})()
const md = [
  `Machine: ${cpu}, ${os.cpus().length} logical cores, Linux ${os.release()}, Node ${process.version}, ${pyVersion}; load average ${os.loadavg()[0].toFixed(2)}.`,
  '',
  '| operation | multiproc | CPython multiprocessing | CPython ÷ multiproc |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
  '',
  'Lock hand-off: from the holder stamping the time just before `release()` until `acquire` returns in the waiting process. Event wake: half a ping-pong round trip between two processes.',
  py.error ? `\nCPython: ${py.error}` : '',
].join('\n')
console.log(md)
mkdirSync(RESULTS, { recursive: true })
writeFileSync(`${RESULTS}sync-latest.md`, `${md}\n`)
writeFileSync(
  `${RESULTS}sync-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`,
  JSON.stringify({ config: CONFIG, ours, python: py }, null, 2),
)
