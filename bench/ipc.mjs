#!/usr/bin/env node
/**
 * IPC benchmark: multiproc's Queue and Pipe against child_process IPC, worker_threads and
 * CPython's multiprocessing, side by side on this machine, in one run (`npm run bench:ipc`).
 *
 * Three measurements: a 64 B ping-pong round trip (p50/p99), 1 MiB one-way throughput, and 64 B
 * one-way messages per second. Every case runs in its own process (`node bench/ipc.mjs --case
 * <transport> <scenario>`, or `python3 bench/py_ipc.py ...`) under a hard time limit, so a case
 * that hangs or crashes is killed and reported as failed while the others go on.
 *
 * Prints the tables, writes bench/results/ipc-<date>.json and bench/results/ipc-latest.md.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import os from 'node:os'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'

import { caseMain, fmt, machineInfo, pythonInfo, runIsolated, shmEntries, table, times, writeResults } from './harness.mjs'
import { seqOf } from './ipc-worker.mjs'

const WORKER = new URL('./ipc-worker.mjs', import.meta.url)
const PY_SCRIPT = fileURLToPath(new URL('./py_ipc.py', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))

/** Sizes, counts and time limits; the JSON records them beside the results. */
const CONFIG = {
  smallBytes: 64,
  bulkBytes: 1 << 20,
  rtt: { warmup: 2_000, roundTrips: 20_000, maxMs: 3_000 },
  // One-way: a calibration run (also the warm-up) sizes the measured run to about `targetMs`.
  small: { calibrate: 50_000, min: 20_000, max: 1_000_000, targetMs: 2_000 },
  bulk: { calibrate: 16, min: 32, max: 500, targetMs: 1_500 },
  /** Any single wait inside a case. */
  waitMs: 10_000,
  /** A case process is killed after this long. */
  caseLimitMs: 25_000,
  /** Cases not started within this much of the run are skipped, to keep the run bounded. */
  runBudgetMs: 150_000,
}

const BASELINE = 'cp-fork'

/** The transports, in table order. `py` ones run in bench/py_ipc.py. */
const TRANSPORTS = [
  { id: 'mp-queue-async', name: 'multiproc Queue', api: 'await put / await get' },
  { id: 'mp-queue-sync', name: 'multiproc Queue', api: 'putSync / getSync' },
  { id: 'mp-queue-sync-obj', name: 'multiproc Queue', api: 'putSync / getSync', object: true },
  { id: 'mp-pipe-async', name: 'multiproc Pipe', api: 'await send / await recv' },
  { id: 'mp-pipe-sync', name: 'multiproc Pipe', api: 'sendSync / recvSync' },
  { id: 'mp-pipe-into-async', name: 'multiproc Pipe', api: 'await send / await recvBytesInto (reused buffer)', bulkOnly: true },
  { id: 'mp-pipe-into-sync', name: 'multiproc Pipe', api: 'sendSync / recvBytesIntoSync (reused buffer)', bulkOnly: true },
  { id: 'cp-fork', name: 'child_process.fork', api: "send / 'message' (serialization: 'advanced')" },
  { id: 'worker', name: 'worker_threads', api: "postMessage / 'message'" },
  { id: 'py-pipe', name: 'CPython multiprocessing.Pipe', api: 'send_bytes / recv_bytes', py: true },
  { id: 'py-queue', name: 'CPython multiprocessing.Queue', api: 'put / get', py: true },
]

const SCENARIOS = [
  { id: 'rtt', title: '64 B ping-pong round trip' },
  { id: 'bulk', title: '1 MiB one-way throughput' },
  { id: 'small', title: '64 B one-way messages' },
]

// The object row is about structured clone of small messages: not run for 1 MiB.
const CASES = SCENARIOS.flatMap((s) =>
  TRANSPORTS.filter((t) => !(t.object && s.id === 'bulk') && !(t.bulkOnly && s.id !== 'bulk')).map((t) => ({ transport: t, scenario: s })),
)

function payloadLabel(t, scenario) {
  if (t.object) return '{ id, x: 1.5 } (plain data)'
  const size = scenario === 'bulk' ? '1 MiB' : '64 B'
  return t.py ? `${size} bytes` : `${size} Buffer`
}

// =====================================================================================
// Case mode: one transport, one scenario, in this process; prints one result line.
// =====================================================================================

async function runCase(transportId, scenario) {
  const t = TRANSPORTS.find((x) => x.id === transportId)
  if (!t || t.py) throw new Error(`no Node case ${transportId}`)
  const size = scenario === 'bulk' ? CONFIG.bulkBytes : CONFIG.smallBytes
  const make = t.object ? (i) => ({ id: i, x: 1.5 }) : bytesMaker(size)
  const ep = await connect(t.id, scenario)
  let result
  let failure
  try {
    result = scenario === 'rtt' ? await measureRtt(ep, make) : await measureOneWay(ep, make, t.object ? 0 : size, CONFIG[scenario])
  } catch (err) {
    failure = err
  }
  try {
    await ep.close()
  } catch (err) {
    // A measurement that finished stands; the trouble at shutdown is reported beside it.
    if (failure) failure.message += ` (then, at shutdown: ${err.message})`
    else result.shutdownError = describeError(err)
  }
  if (failure) throw failure
  return result
}

function describeError(err) {
  return `${err?.constructor?.name ?? 'Error'}${err?.code ? ` ${err.code}` : ''}: ${err?.message ?? err}`
}

/** A reused buffer with the message's sequence number in its first 4 bytes. */
function bytesMaker(size) {
  const buf = Buffer.alloc(size, 0xa5)
  return (i) => {
    buf.writeUInt32LE(i >>> 0, 0)
    return buf
  }
}

/**
 * The parent's end of a transport: `send(m)` returns undefined or a promise to await; `recv()`
 * returns the message (`sync`) or a promise of it; `close()` stops the peer.
 */
async function connect(id, scenario) {
  const role = scenario === 'rtt' ? 'echo' : 'sink'
  if (id.startsWith('mp-')) return connectMultiproc(id, role)
  if (id === 'cp-fork') return connectFork(role, scenario)
  if (id === 'worker') return connectWorker(role)
  throw new Error(`unknown transport ${id}`)
}

async function connectMultiproc(id, role) {
  const mp = await import('../dist/index.js')
  const sync = id.includes('-sync')
  const wait = { timeout: CONFIG.waitMs }
  const suffix = `${role === 'echo' ? 'Echo' : 'Sink'}${sync ? 'Sync' : 'Async'}`
  let ep
  let args
  let stop
  if (id.startsWith('mp-queue')) {
    const q = new mp.Queue()
    const back = new mp.Queue()
    args = [q, back]
    ep = sync
      ? { sync, send: (m) => q.putSync(m, wait), recv: () => back.getSync(wait) }
      : { sync, send: (m) => q.put(m, wait), recv: () => back.get(wait) }
    stop = () => {
      q.putSync('quit', wait)
      return () => {
        q.close()
        back.close()
      }
    }
  } else {
    const [mine, theirs] = mp.Pipe()
    args = [theirs]
    // The recvBytesInto sinks read every message as bytes: their control words come as bytes too.
    const word = id.includes('-into') ? (m) => (typeof m === 'string' ? Buffer.from(m) : m) : (m) => m
    ep = sync
      ? { sync, send: (m) => mine.sendSync(word(m)), recv: () => mine.recvSync(wait) }
      : { sync, send: (m) => mine.send(word(m)), recv: () => mine.recv(wait) }
    stop = () => {
      mine.sendSync(word('quit'))
      return () => mine.close()
    }
  }
  const name = `${id.startsWith('mp-queue') ? 'queue' : 'pipe'}${suffix.replace('Sink', id.includes('-into') ? 'SinkInto' : 'Sink')}`
  const proc = new mp.Process({ target: { module: WORKER, name }, args, name: `bench-${name}`, daemon: true })
  await proc.start()
  if (id.startsWith('mp-pipe')) args[0].close() // the child holds its own copy now
  ep.close = async () => {
    let cleanup
    try {
      if (proc.isAlive()) cleanup = stop()
      await proc.join(5_000)
    } finally {
      if (proc.isAlive()) {
        proc.kill()
        await proc.join(5_000)
      }
      cleanup?.()
    }
    if (proc.exitCode !== 0) throw new Error(`the ${name} child exited with ${proc.exitCode}`)
  }
  return ep
}

/** Messages from an EventEmitter as awaitable values, failing if the peer goes away. */
function inbox(emitter, peer) {
  const items = []
  let head = 0
  let waiter
  let failure
  const fail = (err) => {
    failure ??= err
    if (waiter) {
      const w = waiter
      waiter = undefined
      w.reject(failure)
    }
  }
  emitter.on('message', (m) => {
    if (waiter) {
      const w = waiter
      waiter = undefined
      w.resolve(m)
    } else items.push(m)
  })
  emitter.on('error', fail)
  emitter.on('exit', (code) => fail(new Error(`${peer} exited (${code}) while a message was awaited`)))
  // One watchdog for the whole case instead of a timer per message.
  const watchdog = setTimeout(() => fail(new Error(`no message from ${peer} within the case limit`)), CONFIG.caseLimitMs - 2_000)
  watchdog.unref()
  return () => {
    if (head < items.length) {
      const m = items[head++]
      if (head > 1024 && head * 2 > items.length) {
        items.splice(0, head)
        head = 0
      }
      return m
    }
    if (failure) return Promise.reject(failure)
    return new Promise((resolve, reject) => {
      waiter = { resolve, reject }
    })
  }
}

async function expectReady(recv) {
  const m = await recv()
  if (m !== 'ready') throw new Error(`expected 'ready', got ${String(m)}`)
}

async function connectFork(role, scenario) {
  const child = fork(fileURLToPath(WORKER), ['--fork-child', role], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const recv = inbox(child, 'the fork child')
  await expectReady(recv)
  // send() queues without limit; a one-way producer waits for the pipe to take its writes now
  // and then (every 256th small or 4th large message), as a real producer would.
  const every = scenario === 'bulk' ? 4 : 256
  let k = 0
  const send =
    role === 'echo'
      ? (m) => {
          child.send(m)
        }
      : (m) => {
          if (++k % every !== 0) {
            child.send(m)
            return undefined
          }
          return new Promise((resolve, reject) => child.send(m, (err) => (err ? reject(err) : resolve())))
        }
  return {
    sync: false,
    send,
    recv,
    close: async () => {
      if (child.connected) child.send('quit')
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit')
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    },
  }
}

async function connectWorker(role) {
  const worker = new Worker(WORKER, { workerData: { role } })
  const recv = inbox(worker, 'the worker thread')
  await expectReady(recv)
  return {
    sync: false,
    send: (m) => {
      worker.postMessage(m)
    },
    recv,
    close: async () => {
      worker.postMessage('quit')
      const t = setTimeout(() => worker.terminate(), 5_000)
      await once(worker, 'exit')
      clearTimeout(t)
    },
  }
}

/** Awaits only what is a promise, so sync transports run without a microtask per call. */
function settle(v) {
  return v !== undefined && typeof v.then === 'function' ? v : undefined
}

async function measureRtt(ep, make) {
  const { warmup, roundTrips, maxMs } = CONFIG.rtt
  const lat = new Float64Array(roundTrips)
  const run = async (n, record, limitMs) => {
    const stopAt = performance.now() + limitMs
    let i = 0
    while (i < n) {
      const m = make(i)
      const t0 = performance.now()
      const s = settle(ep.send(m))
      if (s) await s
      let r = ep.recv()
      if (!ep.sync) r = await r
      const t1 = performance.now()
      if (seqOf(r) !== i) throw new Error(`round trip ${i} brought back message ${seqOf(r)}`)
      if (record) lat[i] = (t1 - t0) * 1000
      i++
      if (t1 > stopAt) break
    }
    return i
  }
  await run(warmup, false, maxMs / 2)
  const n = await run(roundTrips, true, maxMs)
  const sorted = lat.subarray(0, n).sort()
  const pct = (p) => sorted[Math.min(n - 1, Math.floor(p * n))]
  let sum = 0
  for (const v of sorted) sum += v
  return { roundTrips: n, p50Us: pct(0.5), p99Us: pct(0.99), meanUs: sum / n, minUs: sorted[0], maxUs: sorted[n - 1] }
}

async function measureOneWay(ep, make, size, cfg) {
  const phase = async (n) => {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const s = settle(ep.send(make(i)))
      if (s) await s
    }
    const s = settle(ep.send('end'))
    if (s) await s
    let ack = ep.recv()
    if (!ep.sync) ack = await ack
    const ms = performance.now() - t0
    if (ack?.n !== n || ack.bytes !== n * size || ack.outOfOrder !== 0) {
      throw new Error(`sent ${n} messages (${n * size} B), the consumer counted ${JSON.stringify(ack)}`)
    }
    return { ms, peakRssMiB: ack.peakRssMiB }
  }
  const cal = await phase(cfg.calibrate)
  const n = Math.max(cfg.min, Math.min(cfg.max, Math.round((cfg.calibrate / cal.ms) * cfg.targetMs)))
  const { ms, peakRssMiB } = await phase(n)
  return {
    messages: n,
    seconds: ms / 1000,
    msgPerSec: n / (ms / 1000),
    mbPerSec: (n * size) / 1e6 / (ms / 1000),
    consumerPeakRssMiB: peakRssMiB,
  }
}

// =====================================================================================
// Runner: every case in its own process, under a hard limit.
// =====================================================================================

async function main() {
  const started = performance.now()
  const python = pythonInfo()
  const machine = machineInfo(python)
  const shmBefore = shmEntries()
  process.stderr.write(
    `IPC benchmark: ${CASES.length} cases on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, Python ${machine.python}\n`,
  )
  const results = []
  for (const { transport: t, scenario: s } of CASES) {
    const label = `${s.id.padEnd(5)} ${t.name} ${t.api}${t.object ? ' {id,x}' : ''}`
    const elapsed = performance.now() - started
    let r
    if (t.py && !python) r = { ok: false, skipped: true, error: 'skipped: python3 not found' }
    else if (elapsed > CONFIG.runBudgetMs) r = { ok: false, skipped: true, error: 'skipped: run time budget used up' }
    else {
      const limit = Math.min(CONFIG.caseLimitMs, CONFIG.runBudgetMs + 20_000 - elapsed)
      const t0 = performance.now()
      r = t.py
        ? await runIsolated('python3', [PY_SCRIPT, t.id, s.id, JSON.stringify(CONFIG)], limit)
        : await runIsolated(process.execPath, [fileURLToPath(import.meta.url), '--case', t.id, s.id], limit)
      r.caseSeconds = +((performance.now() - t0) / 1000).toFixed(2)
    }
    results.push({ transport: t.id, name: t.name, api: t.api, payload: payloadLabel(t, s.id), scenario: s.id, ...r })
    process.stderr.write(`  ${label.padEnd(86)} ${r.ok ? summary(s.id, r) : r.error}${r.caseSeconds ? `  [${r.caseSeconds} s]` : ''}\n`)
  }
  const leaked = [...shmEntries()].filter((x) => !shmBefore.has(x))
  const seconds = (performance.now() - started) / 1000
  machine.loadAvgAfter = os.loadavg().map((x) => +x.toFixed(2))
  const date = new Date()
  const report = {
    date: date.toISOString(),
    seconds: +seconds.toFixed(1),
    machine,
    config: CONFIG,
    baseline: BASELINE,
    leakedShm: leaked,
    results,
  }
  const md = markdown(report)
  process.stdout.write(`\n${md}`)
  const written = writeResults(RESULTS, 'ipc', report, md)
  process.stderr.write(`\nwrote ${written.map((f) => `bench/results/${f}`).join(', ')} (${seconds.toFixed(1)} s)\n`)
}

function summary(scenario, r) {
  if (scenario === 'rtt') return `p50 ${fmt(r.p50Us)} µs, p99 ${fmt(r.p99Us)} µs`
  if (scenario === 'bulk') return `${fmt(r.mbPerSec)} MB/s, ${fmt(r.msgPerSec)} msg/s`
  return `${fmt(r.msgPerSec)} msg/s`
}

// =====================================================================================
// Report
// =====================================================================================

/** "37× lower RTT", "2.1× higher RTT", "5.0× the throughput", … relative to the baseline row. */
function ratio(scenario, r, base) {
  if (!r.ok) return ''
  if (r.transport === BASELINE) return 'baseline'
  if (!base?.ok) return 'n/a (no baseline)'
  if (scenario === 'rtt') {
    const k = base.p50Us / r.p50Us
    return k >= 1 ? `${times(k)} lower RTT` : `${times(1 / k)} higher RTT`
  }
  const k = r.msgPerSec / base.msgPerSec
  return k >= 1 ? `${times(k)} faster` : `${times(1 / k)} slower`
}

function markdown(report) {
  const m = report.machine
  const out = [
    '# IPC benchmark',
    '',
    `${report.date.slice(0, 16).replace('T', ' ')} UTC, \`npm run bench:ipc\`, ${report.seconds} s in all.`,
    '',
    `Machine: ${m.cpu}, ${m.cores} logical cores, ${m.ramGiB} GiB RAM, ${m.kernel} (${m.arch}), Node ${m.node}, Python ${m.python}. ` +
      `Load average ${m.loadAvg.join(' / ')} at the start, ${m.loadAvgAfter.join(' / ')} at the end.`,
    '',
    "Ratios are against `child_process.fork` IPC with `serialization: 'advanced'`. Every case ran in its own process; see bench/README.md.",
  ]
  const byScenario = (id) => report.results.filter((r) => r.scenario === id)
  const baseOf = (rows) => rows.find((r) => r.transport === BASELINE)
  const failed = (r) => (r.skipped ? r.error : `failed: ${r.error}`)

  const rtt = byScenario('rtt')
  out.push('', `## ${SCENARIOS[0].title}`, '')
  out.push(
    table(
      ['Transport', 'API', 'Payload', 'Round trips', 'p50 µs', 'p99 µs', 'vs child_process'],
      rtt.map((r) =>
        r.ok
          ? [r.name, r.api, r.payload, r.roundTrips.toLocaleString('en-US'), fmt(r.p50Us), fmt(r.p99Us), ratio('rtt', r, baseOf(rtt))]
          : [r.name, r.api, r.payload, failed(r), '', '', ''],
      ),
    ),
  )
  for (const id of ['bulk', 'small']) {
    const rows = byScenario(id)
    const title = SCENARIOS.find((s) => s.id === id).title
    out.push('', `## ${title}`, '')
    const bulk = id === 'bulk'
    const head = ['Transport', 'API', 'Payload', 'Messages', ...(bulk ? ['MB/s'] : []), 'msg/s', 'vs child_process', 'Consumer peak RSS']
    const rss = (r) =>
      r.consumerPeakRssMiB === undefined ? '' : `${r.consumerPeakRssMiB} MiB${r.transport === 'worker' ? ' (whole process)' : ''}`
    out.push(
      table(
        head,
        rows.map((r) =>
          r.ok
            ? [
                r.name,
                r.api,
                r.payload,
                r.messages.toLocaleString('en-US'),
                ...(bulk ? [fmt(r.mbPerSec)] : []),
                fmt(r.msgPerSec),
                ratio(id, r, baseOf(rows)),
                rss(r),
              ]
            : [r.name, r.api, r.payload, failed(r), ...(bulk ? [''] : []), '', '', ''],
        ),
      ),
    )
  }
  const notes = report.results.filter((r) => r.ok && (r.stderr || r.shutdownError))
  if (notes.length || report.leakedShm.length) out.push('', '## Notes', '')
  for (const r of notes) {
    const what = [r.shutdownError && `at shutdown: ${r.shutdownError}`, r.stderr && `stderr: \`${r.stderr}\``].filter(Boolean).join('; ')
    out.push(`- ${r.scenario} / ${r.name} ${r.api}${r.transport.endsWith('-obj') ? ' (object)' : ''}: ${what}`)
  }
  if (report.leakedShm.length) out.push(`- left in /dev/shm after the run: ${report.leakedShm.join(', ')}`)
  return `${out.join('\n')}\n`
}

// =====================================================================================

if (process.argv[2] === '--case') {
  const [, , , transport, scenario] = process.argv
  await caseMain(() => runCase(transport, scenario), describeError)
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
