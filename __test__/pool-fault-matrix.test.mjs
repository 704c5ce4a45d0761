// The Pool's fault matrix, after CPython's test_concurrent_futures/test_deadlock.py: every way
// a task can fail (an exception, process.exit(3), SIGKILL, SIGSEGV, abort(), an endless loop
// under a call timeout, running out of heap) at every stage of its life (the worker decoding its
// arguments, running it, encoding its result; the parent encoding the task and decoding the
// result). Each cell: the call rejects with a typed error that has a string `code`, a call made
// alongside it is not disturbed, the pool heals (later calls succeed and it has its full count of
// workers again), the dead worker is gone, close() + join() end, and no watchdog fires. After the
// file: no child process and nothing new in /dev/shm.
//
// Stages other than `run` are reached through the pool's `serializer` (fixtures/pool-fault.mjs),
// which fails where a marker value asks it to.
import test from 'ava'

import { MultiprocError, Pool, RemoteError, SerializationError, TimeoutError, WorkerExitedError } from '../dist/index.js'
import { echo, FAULT, fault, faultSerializer, marker, pid, square } from './fixtures/pool-fault.mjs'
import { checkNoLeaks, fixtureUrl, isDead, within } from './helpers.mjs'

checkNoLeaks(test)

const MODULE = fixtureUrl('pool-fault.mjs')
const W = 20000
/** The call timeout that ends an endless loop. */
const LOOP_TIMEOUT = 500
/** The heap (MiB) of the workers of the out-of-memory cells. */
const SMALL_HEAP = 32

const range = (n) => Array.from({ length: n }, (_, i) => i)

const settle = (promise) =>
  Promise.resolve(promise).then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Waits until the pool has its full count of live workers; returns their pids. */
async function fullCount(pool) {
  await until(
    () => pool.workers.length === pool.processes && pool.workers.every((w) => w.pid && !isDead(w.pid)),
    W,
    'the pool back to its full count of workers',
  )
  return pool.workers.map((w) => w.pid)
}

/**
 * A pool over the fault serializer. With `smallHeap`, its workers (the ones it starts later
 * included) get a V8 heap of SMALL_HEAP MiB: the pool has no execArgv option, and a child
 * inherits the environment, so NODE_OPTIONS is set for the life of the test (the cells run
 * serially; nothing else starts processes meanwhile).
 */
function makePool(t, { smallHeap = false } = {}) {
  if (smallHeap) {
    const saved = process.env.NODE_OPTIONS
    process.env.NODE_OPTIONS = `${saved ?? ''} --max-old-space-size=${SMALL_HEAP}`.trim()
    t.teardown(() => {
      if (saved === undefined) delete process.env.NODE_OPTIONS
      else process.env.NODE_OPTIONS = saved
    })
  }
  const pool = new Pool({ processes: 2, modules: [MODULE], serializer: faultSerializer })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  return pool
}

/** Both workers started and answering (a call with a timeout must not spend it on start-up). */
async function warm(pool) {
  const pids = new Set(await within(W, pool.map(pid, range(8), { chunksize: 1 }), 'warm-up'))
  return fullCount(pool).then((all) => {
    for (const p of pids) if (!all.includes(p)) throw new Error(`worker ${p} is gone after the warm-up`)
    return all
  })
}

// ---- what each cell expects ----

const DEATHS = {
  exit: { exitCode: 3, signal: null },
  sigkill: { exitCode: null, signal: 'SIGKILL' },
  sigsegv: { exitCode: null, signal: 'SIGSEGV' },
  abort: { exitCode: null, signal: 'SIGABRT' },
  // V8 reports a full heap and calls abort().
  oom: { exitCode: null, signal: 'SIGABRT' },
}

/** Checks `error` against what `kind` at `stage` must give; returns whether the worker died. */
function expectError(t, kind, stage, error) {
  t.truthy(error, 'the call rejected')
  if (!error) return false
  t.true(error instanceof MultiprocError, `a package error class: ${error?.constructor?.name}: ${error?.message}`)
  t.is(typeof error.code, 'string', 'a string code')
  if (kind in DEATHS) {
    t.true(error instanceof WorkerExitedError, `WorkerExitedError expected: ${error}`)
    t.is(error.code, 'ERR_WORKER_EXITED')
    t.is(error.exitCode, DEATHS[kind].exitCode, 'exitCode')
    t.is(error.signal, DEATHS[kind].signal, 'signal')
    return true
  }
  if (kind === 'loop') {
    t.true(error instanceof TimeoutError, `TimeoutError expected: ${error}`)
    t.is(error.code, 'ERR_TIMEOUT')
    return true // the worker running it was killed and replaced
  }
  // throw
  if (stage === 'run') {
    t.true(error instanceof RemoteError, `RemoteError expected: ${error}`)
    t.is(error.code, 'ERR_REMOTE')
    t.is(error.cause?.message, 'fault: throw at run', 'the cause is the revived error')
  } else {
    // A serializer that throws, on either side: that call alone fails, as for a value that
    // cannot be encoded (API.md: "An unserialisable result rejects that task with
    // SerializationError; the worker lives on").
    t.true(error instanceof SerializationError, `SerializationError expected: ${error}`)
    t.is(error.code, 'ERR_SERIALIZATION')
    t.true(
      `${error.message} ${error.cause?.message}`.includes(`fault: throw at ${stage}`),
      `it says what the serializer said: ${error.message}`,
    )
  }
  return false
}

/** The faulting call of a cell: `fault(kind)` for the run stage, else a marked value. */
function faultingCall(pool, kind, stage, form) {
  const opts = kind === 'loop' ? { timeout: LOOP_TIMEOUT } : {}
  const arg = stage === 'run' ? kind : marker(kind, stage)
  const fn = stage === 'run' ? fault : echo
  if (form === 'apply') return pool.apply(fn, [arg], opts)
  // map: the marked item among ordinary ones, one per chunk
  return pool.map(
    fn,
    range(6).map((i) => (i === 3 ? arg : stage === 'run' ? 'none' : i)),
    { ...opts, chunksize: 1 },
  )
}

async function cell(t, kind, stage, form = 'apply') {
  const pool = makePool(t, { smallHeap: kind === 'oom' })
  const before = await warm(pool)
  // A call made alongside; it must not be disturbed (its chunks queued behind the faulting one
  // run elsewhere).
  const bystander = settle(pool.map(square, range(20), { chunksize: 1 }))
  const { value, error } = await within(W, settle(faultingCall(pool, kind, stage, form)), `the call failing by ${kind} at ${stage}`)
  t.is(value, undefined, 'the faulting call did not resolve')
  const died = expectError(t, kind, stage, error)
  const b = await within(W, bystander, 'the call made alongside')
  t.deepEqual(b.value, range(20).map(square), `the call made alongside: ${b.error}`)
  // Heals: full count again, the dead worker gone, later calls succeed.
  const after = await fullCount(pool)
  if (died) t.is(after.filter((p) => before.includes(p)).length, 1, 'exactly the worker that ran the task was replaced')
  for (const p of before.filter((p) => !after.includes(p))) await until(() => isDead(p), W, `worker ${p} to be gone`)
  t.is(await within(W, pool.apply(square, [7]), 'apply after'), 49)
  t.deepEqual(await within(W, pool.map(square, range(10), { chunksize: 1 }), 'map after'), range(10).map(square))
  pool.close()
  await within(W, pool.join(), 'close() and join()')
  t.is(pool.workers.length, 0)
  for (const p of [...before, ...after]) t.true(isDead(p), `worker ${p} is gone after join()`)
}

// ---- the matrix ----

const KINDS = ['throw', 'exit', 'sigkill', 'sigsegv', 'abort', 'loop', 'oom']
const WORKER_STAGES = ['task-decode', 'run', 'result-encode']
const STAGE_NAMES = {
  'task-encode': 'encoding the task in the parent',
  'task-decode': 'decoding the arguments in the worker',
  run: 'running the task',
  'result-encode': 'encoding the result in the worker',
  'result-decode': 'decoding the result in the parent',
}
const KIND_NAMES = {
  throw: 'an exception',
  exit: 'process.exit(3)',
  sigkill: 'SIGKILL of itself',
  sigsegv: 'SIGSEGV of itself',
  abort: 'process.abort()',
  loop: `an endless loop under { timeout: ${LOOP_TIMEOUT} }`,
  oom: `running out of a ${SMALL_HEAP} MiB heap`,
}
const EXPECTED = (kind, stage) =>
  kind in DEATHS
    ? `WorkerExitedError ${DEATHS[kind].signal ?? `exit ${DEATHS[kind].exitCode}`}`
    : kind === 'loop'
      ? 'TimeoutError'
      : stage === 'run'
        ? 'RemoteError'
        : 'SerializationError'

for (const stage of WORKER_STAGES) {
  for (const kind of KINDS) {
    test.serial(`apply: ${KIND_NAMES[kind]} while ${STAGE_NAMES[stage]} → ${EXPECTED(kind, stage)}; the pool heals`, (t) =>
      cell(t, kind, stage),
    )
  }
}

// In the parent only an exception makes sense (a parent that dies is the test that dies).
for (const stage of ['task-encode', 'result-decode']) {
  test.serial(`apply: ${KIND_NAMES.throw} while ${STAGE_NAMES[stage]} → SerializationError for that call only; the pool heals`, (t) =>
    cell(t, 'throw', stage),
  )
}

// The same faults inside a map: the map rejects with the same error, the pool heals.
for (const stage of [...WORKER_STAGES, 'result-decode']) {
  for (const kind of stage === 'result-decode' ? ['throw'] : ['throw', 'sigkill', 'loop']) {
    test.serial(`map: ${KIND_NAMES[kind]} while ${STAGE_NAMES[stage]} in one item → ${EXPECTED(kind, stage)}; the pool heals`, (t) =>
      cell(t, kind, stage, 'map'),
    )
  }
}

test('the marker reaches the serializer only where it is meant to (control)', async (t) => {
  const pool = makePool(t)
  // A marker for a stage no process acts on travels both ways untouched.
  const inert = marker('exit', 'nowhere')
  t.deepEqual(await within(W, pool.apply(echo, [inert]), 'apply'), inert)
  t.true(Object.hasOwn(inert, FAULT))
  pool.close()
  await within(W, pool.join(), 'join')
})
