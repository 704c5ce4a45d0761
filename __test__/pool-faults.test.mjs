// Pool faults: workers that die (SIGKILL, process.exit) in the middle of work, per-call
// `timeout` and `signal`, the pool's `taskTimeout`, and terminate(). API.md "Pool": a worker
// that dies mid-task is replaced, that task (only) rejects with WorkerExitedError, other tasks go
// on; timeout/signal kill and replace the worker running the task. "Details": terminate() is
// synchronous and rejects every pending task with TerminatedError.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import avaTest from 'ava'

import {
  AbortError,
  ClosedError,
  MultiprocError,
  Pool,
  RemoteError,
  TerminatedError,
  TimeoutError,
  WorkerExitedError,
} from '../dist/index.js'
import {
  add as add2,
  bigResult,
  exitMidTask,
  hangForever,
  init,
  killSelf,
  pid,
  readInit,
  sleepOrReport,
  sleepOrReportArgs,
  sleepPid,
  spinForever,
  square,
  throwLater,
} from './fixtures/pool-tasks.mjs'
import { checkNoLeaks, childPids, fixtureUrl, isDead, throttled, within } from './helpers.mjs'
import { backend, createPool, needs } from './pool-backend.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

/** Tests that need the workers to be processes of this machine (pids, kills, /proc). */
const local = needs(test, 'localProcesses')

const tasks = fixtureUrl('pool-tasks.mjs')
// A job queue between the pool and its workers is slower under load.
const W = backend.localProcesses ? 20000 : 60000

function makePool(t, opts = {}) {
  const pool = createPool({ processes: 2, modules: [tasks], ...opts })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  return pool
}

const settle = (promise) =>
  Promise.resolve(promise).then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

const execFileAsync = promisify(execFile)

const range = (n) => Array.from({ length: n }, (_, i) => i)

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Waits until the pool has its full count of live workers again; returns their pids. */
async function fullCount(pool, n = pool.processes) {
  await until(() => pool.workers.length === n && pool.workers.every((w) => w.pid && !isDead(w.pid)), 10000, 'the pool back to full')
  return pool.workers.map((w) => w.pid)
}

/** The full count again where the backend shows its workers; elsewhere the calls that follow show the pool goes on. */
async function backToFull(pool) {
  if (backend.localProcesses) await fullCount(pool)
}

/** Both workers up and running tasks. */
async function warm(pool) {
  const seen = new Set(
    await within(
      W,
      pool.map(
        sleepPid,
        range(20).map(() => 2),
        { chunksize: 1 },
      ),
      'warm-up',
    ),
  )
  return [...seen]
}

async function collect(iterable) {
  const out = []
  for await (const v of iterable) out.push(v)
  return out
}

// ---- a worker killed in the middle of many tasks ----

/** A fresh path for a task to report its pid to; its content once written. */
function reportFile(t) {
  const dir = mkdtempSync(join(tmpdir(), 'pool-faults-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'pid')
  return {
    path,
    read: () => {
      try {
        return Number(readFileSync(path, 'utf8')) || undefined
      } catch {
        return undefined
      }
    },
  }
}

// The worker is killed while it is surely inside a task: one of the tasks writes its worker's
// pid to a file and then blocks 1 s, and that worker is killed as soon as the file appears. (A
// worker killed between two tasks holds no running task, and then rightly nothing rejects.)
local.serial(
  'SIGKILL of one worker during 1,000 tasks: exactly the task it was running rejects with WorkerExitedError, the rest resolve, the pool is whole again',
  async (t) => {
    const pool = makePool(t)
    await warm(pool)
    const before = await fullCount(pool)
    const report = reportFile(t)
    const MARK = 300
    let resolved = 0
    const results = range(1000).map((i) => pool.applyAsync(sleepOrReport, i === MARK ? [1, report.path] : [1]))
    const outcomes = results.map((r) =>
      settle(r.get()).then((o) => {
        if ('value' in o) resolved++
        return o
      }),
    )
    await until(() => resolved >= 200 && report.read() !== undefined, W, '200 tasks resolving and the marked task starting')
    const victim = report.read()
    t.true(before.includes(victim))
    process.kill(victim, 'SIGKILL')
    const all = await within(60000, Promise.all(outcomes), '1,000 tasks settling')
    const rejected = all.flatMap((o, i) => ('error' in o ? [i] : []))
    for (const i of rejected) {
      const { error } = all[i]
      t.true(error instanceof WorkerExitedError, `${error}`)
      t.is(error.code, 'ERR_WORKER_EXITED')
      t.true(error instanceof MultiprocError)
      t.is(error.exitCode, null)
      t.is(error.signal, 'SIGKILL')
    }
    t.deepEqual(rejected, [MARK], 'only the task it was running is lost; the ones queued for it are run by others')
    const values = all.filter((o) => 'value' in o).map((o) => o.value)
    t.is(values.length, 999)
    for (const v of values) t.true(Number.isInteger(v) && v !== process.pid)
    t.true(values.includes(victim), 'the victim ran tasks before')
    t.true(results[MARK].ready() && !results[MARK].successful())
    const after = await fullCount(pool)
    t.is(pool.workers.length, 2)
    t.false(after.includes(victim), 'the killed worker is gone from pool.workers')
    t.true(isDead(victim))
    const other = before.find((p) => p !== victim)
    t.true(after.includes(other), 'the other worker is still the same')
    const newcomer = after.find((p) => p !== other)
    const seen = new Set(
      await within(
        W,
        pool.map(
          sleepPid,
          range(40).map(() => 2),
          { chunksize: 1 },
        ),
        'map after',
      ),
    )
    t.true(seen.has(newcomer), 'the new worker runs tasks')
    t.false(seen.has(victim))
  },
)

local.serial(
  'SIGKILL of a worker at a random moment during 1,000 tasks of ~1 ms: at most the one task it was running rejects (WorkerExitedError), all others resolve',
  async (t) => {
    const pool = makePool(t)
    await warm(pool)
    const before = await fullCount(pool)
    let resolved = 0
    const outcomes = range(1000).map(() =>
      settle(pool.applyAsync(sleepPid, [1]).get()).then((o) => {
        if ('value' in o) resolved++
        return o
      }),
    )
    await until(() => resolved >= 200, W, '200 tasks resolving')
    process.kill(before[1], 'SIGKILL')
    const all = await within(60000, Promise.all(outcomes), '1,000 tasks settling')
    const rejected = all.filter((o) => 'error' in o)
    t.true(rejected.length <= 1, `${rejected.length} rejected`)
    for (const { error } of rejected) {
      t.true(error instanceof WorkerExitedError, `${error}`)
      t.is(error.signal, 'SIGKILL')
    }
    t.is(all.length - rejected.length, 1000 - rejected.length)
    const after = await fullCount(pool)
    t.false(after.includes(before[1]))
    t.true(after.includes(before[0]))
  },
)

local.serial('SIGKILL during a map: the map rejects with WorkerExitedError; the pool goes on', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const before = await fullCount(pool)
  const report = reportFile(t)
  const m = settle(
    pool.starmap(
      sleepOrReport,
      range(400).map((i) => (i === 150 ? [2, report.path] : [2])),
      { chunksize: 1 },
    ),
  )
  await until(() => report.read() !== undefined, W, 'the marked task starting')
  const victim = report.read()
  t.true(before.includes(victim))
  process.kill(victim, 'SIGKILL')
  const { error } = await within(W, m, 'map')
  t.true(error instanceof WorkerExitedError, `${error}`)
  t.is(error?.signal, 'SIGKILL')
  t.is(error?.exitCode, null)
  const after = await fullCount(pool)
  t.false(after.includes(victim))
  t.deepEqual(
    await within(W, pool.map(square, range(10)), 'map after'),
    range(10).map((x) => x * x),
  )
})

local('a worker that calls process.exit(3) mid-task: WorkerExitedError with exitCode 3, signal null; it is replaced', async (t) => {
  const pool = makePool(t)
  const before = await fullCount(pool)
  let cbError
  const r = pool.applyAsync(exitMidTask, [3], { errorCallback: (e) => (cbError = e) })
  const { error } = await within(W, settle(r.get()), 'apply')
  t.true(error instanceof WorkerExitedError, `${error}`)
  t.is(error.exitCode, 3)
  t.is(error.signal, null)
  t.is(cbError, error, 'errorCallback got the same error')
  t.false(r.successful())
  const after = await fullCount(pool)
  t.is(after.length, 2)
  t.is(after.filter((p) => before.includes(p)).length, 1, 'one worker replaced')
  t.is(await within(W, pool.apply(square, [5]), 'apply after'), 25)
  // exit code 0 mid-task is a death too
  const zero = await within(W, settle(pool.apply(exitMidTask, [0])), 'apply exit 0')
  t.true(zero.error instanceof WorkerExitedError, `${zero.error}`)
  t.is(zero.error?.exitCode, 0)
  t.is(zero.error?.signal, null)
  await backToFull(pool)
})

test('imap: a worker death rejects that position only; the other items arrive', async (t) => {
  const pool = makePool(t)
  const it = pool.imap((x) => (x === 2 ? process.exit(7) : x * 2), range(6))
  const got = []
  for (let i = 0; i < 6; i++) got.push(await within(W, settle(it.next()), 'next'))
  t.deepEqual(
    got.map((o) => o.value?.value ?? o.error?.constructor.name),
    [0, 2, 'WorkerExitedError', 6, 8, 10],
  )
  t.is(got[2].error.exitCode, 7)
  t.deepEqual(await within(W, it.next(), 'end'), { value: undefined, done: true })
  await backToFull(pool)
})

// ---- timeouts and signals ----

local.serial('apply(while (true) {}, [], { timeout: 200 }) rejects with TimeoutError; the next task runs on a fresh worker', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(W, pool.apply(pid), 'apply')
  const started = performance.now()
  const { error } = await within(10000, settle(pool.apply(spinForever, [], { timeout: 200 })), 'timed apply')
  const elapsed = performance.now() - started
  t.true(error instanceof TimeoutError, `${error}`)
  t.is(error?.code, 'ERR_TIMEOUT')
  t.true(elapsed >= 190, `rejected after ${elapsed} ms`)
  t.true(elapsed < 5000, `rejected after ${elapsed} ms`)
  const next = await within(W, pool.apply(pid), 'apply after')
  t.not(next, first, 'a fresh worker')
  await until(() => isDead(first), 5000, 'the spinning worker to die')
  t.deepEqual(await fullCount(pool), [next])
  // an inline spinning function too
  const inline = await within(
    10000,
    settle(
      pool.apply(
        () => {
          while (true) {}
        },
        [],
        { timeout: 200 },
      ),
    ),
    'inline',
  )
  t.true(inline.error instanceof TimeoutError, `${inline.error}`)
  t.not(await within(W, pool.apply(pid), 'apply after'), next)
})

local.serial('apply with an AbortSignal that aborts: AbortError (ABORT_ERR); the next task runs on a fresh worker', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(W, pool.apply(pid), 'apply')
  const ac = new AbortController()
  const started = performance.now()
  const p = settle(pool.apply(spinForever, [], { signal: ac.signal }))
  setTimeout(() => ac.abort(), 200)
  const { error } = await within(10000, p, 'aborted apply')
  t.true(error instanceof AbortError, `${error}`)
  t.is(error?.code, 'ABORT_ERR')
  t.true(performance.now() - started < 5000)
  const next = await within(W, pool.apply(pid), 'apply after')
  t.not(next, first, 'a fresh worker')
  await until(() => isDead(first), 5000, 'the spinning worker to die')
  // AbortSignal.timeout() as well
  const timed = await within(10000, settle(pool.apply(spinForever, [], { signal: AbortSignal.timeout(150) })), 'AbortSignal.timeout')
  t.true(
    timed.error instanceof MultiprocError && (timed.error instanceof AbortError || timed.error instanceof TimeoutError),
    `${timed.error}`,
  )
  t.not(await within(W, pool.apply(pid), 'apply after'), next)
})

local('a signal aborted before the call rejects at once with AbortError and kills nobody', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(W, pool.apply(pid), 'apply')
  const ac = new AbortController()
  ac.abort(new Error('why'))
  const { error } = await within(W, settle(pool.apply(square, [2], { signal: ac.signal })), 'apply')
  t.true(error instanceof AbortError, `${error}`)
  t.is(error?.code, 'ABORT_ERR')
  const m = await within(W, settle(pool.map(square, [1, 2], { signal: ac.signal })), 'map')
  t.true(m.error instanceof AbortError, `${m.error}`)
  t.is(await within(W, pool.apply(pid), 'apply'), first, 'same worker')
})

local.serial(
  'map with a timeout over a task that spins forever: TimeoutError, the pool has its full count again and goes on',
  async (t) => {
    const pool = makePool(t)
    const before = await fullCount(pool)
    const started = performance.now()
    const { error } = await within(
      10000,
      settle(
        pool.map(
          (x) => {
            while (x === 3) {}
            return x
          },
          range(8),
          { timeout: 300, chunksize: 1 },
        ),
      ),
      'timed map',
    )
    t.true(error instanceof TimeoutError, `${error}`)
    t.true(performance.now() - started < 5000)
    const after = await fullCount(pool)
    t.is(after.length, 2)
    t.deepEqual(
      await within(W, pool.map(square, range(10)), 'map after'),
      range(10).map((x) => x * x),
    )
    t.true(pool.workers.length === 2 && before.length === 2)
  },
)

test.serial('map with a signal: aborting rejects with AbortError and the pool goes on', async (t) => {
  const pool = makePool(t)
  await backToFull(pool)
  const ac = new AbortController()
  const m = settle(
    pool.map(
      sleepPid,
      range(200).map(() => 20),
      { signal: ac.signal, chunksize: 1 },
    ),
  )
  setTimeout(() => ac.abort(), 150)
  const { error } = await within(10000, m, 'aborted map')
  t.true(error instanceof AbortError, `${error}`)
  await backToFull(pool)
  t.deepEqual(await within(W, pool.map(square, range(5)), 'map after'), [0, 1, 4, 9, 16])
})

local.serial('taskTimeout in the Pool options: a task over it rejects with TimeoutError and its worker is replaced', async (t) => {
  const pool = makePool(t, { processes: 1, taskTimeout: 300 })
  const first = await within(W, pool.apply(pid), 'apply')
  t.deepEqual(
    await within(W, pool.map(square, range(10)), 'quick map'),
    range(10).map((x) => x * x),
    'tasks within it are fine',
  )
  t.is(await within(W, pool.apply(pid), 'apply'), first)
  const started = performance.now()
  const { error } = await within(10000, settle(pool.apply(spinForever)), 'apply over taskTimeout')
  t.true(error instanceof TimeoutError, `${error}`)
  t.is(error?.code, 'ERR_TIMEOUT')
  const elapsed = performance.now() - started
  t.true(elapsed >= 250 && elapsed < 5000, `${elapsed} ms`)
  const next = await within(W, pool.apply(pid), 'apply after')
  t.not(next, first)
  // in a map: the call rejects
  const m = await within(
    10000,
    settle(
      pool.map(
        (x) => {
          while (x === 2) {}
          return x
        },
        range(4),
        { chunksize: 1 },
      ),
    ),
    'map',
  )
  t.true(m.error instanceof TimeoutError, `${m.error}`)
  t.is(await within(W, pool.apply(square, [9]), 'apply'), 81)
})

local.serial('a task whose promise never settles stays pending until taskTimeout (TimeoutError), not a worker exit', async (t) => {
  const pool = makePool(t, { processes: 1, taskTimeout: 300 })
  const first = await within(W, pool.apply(pid), 'apply')
  const started = performance.now()
  const h = await within(10000, settle(pool.apply(hangForever)), 'hang')
  t.true(h.error instanceof TimeoutError, `${h.error}`)
  t.true(performance.now() - started >= 250)
  const m = await within(10000, settle(pool.map((x) => (x === 2 ? new Promise(() => {}) : x), range(4), { chunksize: 1 })), 'map')
  t.true(m.error instanceof TimeoutError, `${m.error}`)
  t.not(await within(W, pool.apply(pid), 'apply'), first)
})

test.serial('a task whose promise never settles, with { timeout }: TimeoutError after the timeout', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const started = performance.now()
  const h = await within(10000, settle(pool.apply(hangForever, [], { timeout: 300 })), 'hang')
  t.true(h.error instanceof TimeoutError, `${h.error}`)
  t.true(performance.now() - started >= 250)
})

// ---- terminate ----

local('terminate() is synchronous: pending tasks reject with TerminatedError, join() resolves, no worker remains', async (t) => {
  const pool = makePool(t)
  const pids = await fullCount(pool)
  const running = pool.applyAsync(spinForever)
  const queued = range(5).map(() => pool.applyAsync(sleepPid, [20000]))
  const m = pool.mapAsync(
    sleepPid,
    range(100).map(() => 50),
    { chunksize: 1 },
  )
  const it = pool.imap(
    sleepPid,
    range(100).map(() => 50),
  )
  const itFirst = settle(it.next())
  await new Promise((r) => setTimeout(r, 200)) // all of it submitted and running
  const ret = pool.terminate()
  t.is(ret, undefined, 'not a promise')
  for (const r of [running, ...queued, m]) t.true(r.ready(), 'settled synchronously by terminate()')
  for (const r of [running, ...queued, m]) {
    const { error } = await settle(r.get(0))
    t.true(error instanceof TerminatedError, `${error}`)
    t.is(error?.code, 'ERR_TERMINATED')
  }
  const first = await within(W, itFirst, 'imap next')
  t.true(first.error instanceof TerminatedError, `${first.error}`)
  await within(W, pool.join(), 'join')
  for (const p of pids) {
    t.true(isDead(p), `worker ${p} dead`)
    t.false(childPids().includes(p), `worker ${p} reaped`)
  }
  t.is(pool.workers.length, 0)
  await t.throwsAsync(async () => pool.apply(square, [1]), { instanceOf: ClosedError })
  pool.terminate() // again: harmless
  await within(W, pool.join(), 'second join')
})

test('terminate() right after the calls (same tick) rejects them all with TerminatedError', async (t) => {
  const pool = makePool(t)
  const a = pool.applyAsync(square, [2])
  const m = pool.mapAsync(square, [1, 2, 3])
  const s = pool.starmap((x, y) => x + y, [[1, 2]])
  const i = pool.imap(square, [1, 2]).next()
  const outcomes = [a, m, s, i].map(settle)
  pool.terminate()
  for (const o of outcomes) {
    const { error } = await within(W, o, 'settle')
    t.true(error instanceof TerminatedError, `${error}`)
  }
  await within(W, pool.join(), 'join')
})

local('terminate() after close() stops queued work; join() resolves', async (t) => {
  const pool = makePool(t)
  const pids = await fullCount(pool)
  const m = pool.mapAsync(
    sleepPid,
    range(200).map(() => 20),
    { chunksize: 1 },
  )
  await new Promise((r) => setTimeout(r, 50))
  pool.close()
  pool.terminate()
  const { error } = await within(W, settle(m.get()), 'map')
  t.true(error instanceof TerminatedError, `${error}`)
  await within(W, pool.join(), 'join')
  for (const p of pids) t.true(isDead(p))
})

local('a worker killed while idle is replaced; nothing is rejected', async (t) => {
  const pool = makePool(t)
  const before = await fullCount(pool)
  process.kill(before[1], 'SIGKILL')
  await until(() => !pool.workers.some((w) => w.pid === before[1]), 10000, 'the dead worker to leave pool.workers')
  const after = await fullCount(pool)
  t.is(after.length, 2)
  t.false(after.includes(before[1]))
  t.deepEqual(
    await within(W, pool.map(square, range(20), { chunksize: 1 }), 'map'),
    range(20).map((x) => x * x),
  )
})

local('errors of the remote kind are not confused with worker deaths', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(W, pool.apply(pid), 'apply')
  const { error } = await within(
    W,
    settle(
      pool.apply(() => {
        throw new Error('plain failure')
      }),
    ),
    'apply',
  )
  t.true(error instanceof RemoteError)
  t.false(error instanceof WorkerExitedError)
  t.is(await within(W, pool.apply(pid), 'apply'), first, 'a task that throws does not cost the worker')
})

// ---- more faults ----

local.serial('a timed call that waits behind busy workers times out without killing the workers of other calls', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const before = await fullCount(pool)
  const reports = [reportFile(t), reportFile(t)]
  const longs = reports.map((r) => settle(pool.apply(sleepOrReport, [0, r.path, 3000])))
  // both workers are busy with a long task
  await until(() => reports.every((r) => r.read() !== undefined), W, 'both long tasks starting')
  t.deepEqual(new Set(reports.map((r) => r.read())), new Set(before))
  const { error } = await within(10000, settle(pool.apply(square, [3], { timeout: 400 })), 'timed apply')
  t.true(error instanceof TimeoutError, `${error}`)
  const done = await within(W, Promise.all(longs), 'the long tasks')
  t.deepEqual(new Set(done.map((o) => o.value)), new Set(before), 'the long tasks completed on their workers')
  t.deepEqual(new Set(await fullCount(pool)), new Set(before), 'no worker was replaced')
})

test.serial('two timed calls at once: only the one over its time fails; the other resolves', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const spin = settle(pool.apply(spinForever, [], { timeout: 400 }))
  const quick = settle(
    pool.map(
      sleepPid,
      range(10).map(() => 5),
      { timeout: 8000, chunksize: 1 },
    ),
  )
  const [s, q] = await within(15000, Promise.all([spin, quick]), 'both calls')
  t.true(s.error instanceof TimeoutError, `${s.error}`)
  t.is(q.value?.length, 10, `${q.error}`)
  await backToFull(pool)
})

test.serial('imap with a signal or a timeout: iteration rejects with AbortError / TimeoutError; the pool recovers', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const ac = new AbortController()
  const got = []
  const aborted = settle(
    (async () => {
      for await (const v of pool.imap(
        sleepPid,
        range(300).map(() => 10),
        { signal: ac.signal },
      )) {
        got.push(v)
        if (got.length === 5) ac.abort()
      }
    })(),
  )
  const a = await within(W, aborted, 'aborted imap')
  t.true(a.error instanceof AbortError, `${a.error}`)
  const timed = settle(
    (async () => {
      for await (const _ of pool.imapUnordered(
        sleepPid,
        range(300).map(() => 10),
        { timeout: 300 },
      )) {
      }
    })(),
  )
  const b = await within(W, timed, 'timed imap')
  t.true(b.error instanceof TimeoutError, `${b.error}`)
  await backToFull(pool)
  t.deepEqual(await within(W, pool.map(square, range(4)), 'map after'), [0, 1, 4, 9])
})

local.serial('a worker killed during imapUnordered: that item rejects, the other items all arrive', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const report = reportFile(t)
  const args = range(100).map((i) => (i === 30 ? [2, report.path] : [2]))
  const it = pool.imapUnordered(sleepOrReportArgs, args)
  const results = []
  const collecting = (async () => {
    for (;;) {
      const r = await settle(it.next())
      if (r.value?.done) return
      results.push(r)
    }
  })()
  await until(() => report.read() !== undefined, W, 'the marked task starting')
  process.kill(report.read(), 'SIGKILL')
  await within(W, collecting, 'imapUnordered')
  const errors = results.filter((r) => r.error)
  t.is(errors.length, 1)
  t.true(errors[0]?.error instanceof WorkerExitedError, `${errors[0]?.error}`)
  t.is(results.filter((r) => !r.error).length, 99)
  await backToFull(pool)
})

local.serial('workers that replace a killed one run the initializer too', async (t) => {
  const pool = makePool(t, { initializer: init, initargs: ['init-again', 2] })
  const before = await fullCount(pool)
  process.kill(before[0], 'SIGKILL')
  await until(() => !pool.workers.some((w) => w.pid === before[0]), 10000, 'the dead worker to leave')
  const after = await fullCount(pool)
  const out = await within(W, pool.map(readInit, range(40), { chunksize: 1 }), 'map')
  const newcomer = after.find((p) => p !== before[1])
  t.true(
    out.some((r) => r.pid === newcomer),
    'the new worker ran tasks',
  )
  for (const r of out) t.deepEqual([r.a, r.b, r.runs], ['init-again', 2, 1])
})

local.serial('a worker killed while running a timed call: WorkerExitedError (not TimeoutError)', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const report = reportFile(t)
  const call = settle(pool.apply(sleepOrReport, [0, report.path, 3000], { timeout: 10000 }))
  await until(() => report.read() !== undefined, W, 'the task starting')
  process.kill(report.read(), 'SIGKILL')
  const { error } = await within(W, call, 'apply')
  t.true(error instanceof WorkerExitedError, `${error}`)
  t.is(error?.signal, 'SIGKILL')
  t.is(await within(W, pool.apply(square, [2]), 'apply after'), 4)
})

test.serial('terminate() while a for await over imap waits: it rejects with TerminatedError', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const got = []
  const loop = settle(
    (async () => {
      for await (const v of pool.imap(
        sleepPid,
        range(300).map(() => 10),
      )) {
        got.push(v)
        if (got.length === 5) setImmediate(() => pool.terminate())
      }
    })(),
  )
  const { error } = await within(W, loop, 'imap loop')
  t.true(error instanceof TerminatedError, `${error}`)
  t.deepEqual(pool.workers, [], 'no live workers listed right after terminate()')
  await within(W, pool.join(), 'join')
})

test('close() or terminate() right after construction: join() resolves and no worker remains', async (t) => {
  const a = makePool(t)
  const aPids = a.workers.map((w) => w.pid).filter(Boolean)
  a.close()
  await within(W, a.join(), 'join after close')
  const b = makePool(t)
  b.terminate()
  await within(W, b.join(), 'join after terminate')
  t.is(a.workers.length, 0)
  t.is(b.workers.length, 0)
  for (const p of aPids) t.true(isDead(p))
})

test('new Pool() without options has cpuCount() workers', async (t) => {
  const { cpuCount } = await import('../dist/index.js')
  const pool = new Pool()
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  t.is(pool.processes, cpuCount())
  t.is(pool.workers.length, cpuCount())
  t.is(
    await within(
      W,
      pool.apply((x) => x + 1, [1]),
      'apply',
    ),
    2,
  )
})

test.serial('applyAsync / mapAsync with timeout or signal: the AsyncResult rejects and errorCallback gets the same error', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  let cbErr
  const r = pool.applyAsync(spinForever, [], { timeout: 300, errorCallback: (e) => (cbErr = e) })
  const a = await within(10000, settle(r.get()), 'applyAsync')
  t.true(a.error instanceof TimeoutError, `${a.error}`)
  t.is(cbErr, a.error)
  t.false(r.successful())
  const ac = new AbortController()
  const m = pool.mapAsync(
    sleepPid,
    range(100).map(() => 50),
    { signal: ac.signal, chunksize: 1 },
  )
  setTimeout(() => ac.abort(), 100)
  const b = await within(10000, settle(m.get()), 'mapAsync')
  t.true(b.error instanceof AbortError, `${b.error}`)
  t.true(m.ready())
  await backToFull(pool)
  t.is(await within(W, pool.apply(square, [7]), 'apply after'), 49)
})

local.serial(
  'a worker killed in the middle of sending a large result: that task rejects with WorkerExitedError and the pool goes on',
  async (t) => {
    const pool = makePool(t)
    await warm(pool)
    const before = await fullCount(pool)
    const report = reportFile(t)
    const big = settle(pool.apply(bigResult, [report.path, 64]))
    await until(() => report.read() !== undefined, W, 'the result being built')
    // the parent does not read for a while: the worker fills the result channel and waits in the
    // middle of its 64 MB message; then it is killed
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
    const victim = report.read()
    t.true(before.includes(victim))
    process.kill(victim, 'SIGKILL')
    const { error } = await within(W, big, 'the big apply')
    t.true(error instanceof WorkerExitedError, `${error}`)
    const after = await within(W, settle(pool.map(square, range(10))), 'map after')
    t.deepEqual(
      after.value,
      range(10).map((x) => x * x),
      `${after.error}`,
    )
    const pids = await fullCount(pool)
    t.false(pids.includes(victim))
  },
)

// ---- the process that owns the pool ----

/** Starts fixtures/pool-exit.mjs <mode>; resolves with its first output line and its exit. */
async function startOwner(t, mode) {
  const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('pool-exit.mjs')), mode], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  let workerPids = []
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    for (const p of workerPids) {
      try {
        process.kill(p, 'SIGKILL')
      } catch {}
    }
  })
  await until(() => out.includes('\n') || child.exitCode !== null, W, `pool-exit.mjs ${mode} output; stderr: ${err}`)
  const line = JSON.parse(out.split('\n')[0])
  workerPids = line.pids
  return { child, line, exited, stderr: () => err }
}

test('a script that uses a Pool and never closes it still exits (as Python terminates it at exit), leaving no worker', async (t) => {
  const { line, exited, stderr } = await startOwner(t, 'forget')
  t.deepEqual(line.result, [1, 4, 9])
  if (backend.localProcesses) t.is(line.pids.length, 2)
  const r = await within(10000, exited, 'the script to exit')
  t.deepEqual(r, { code: 0, signal: null }, stderr())
  await until(() => line.pids.every(isDead), 5000, 'its workers to exit')
  t.pass()
})

local('pool workers die with their SIGKILLed parent', async (t) => {
  const { child, line, exited } = await startOwner(t, 'wait')
  t.true(line.pids.every((p) => !isDead(p)))
  child.kill('SIGKILL')
  await within(W, exited, 'the parent to die')
  await until(() => line.pids.every(isDead), 5000, 'the workers to die with the parent')
  t.pass()
})

test('close() and join() with a maxTasksPerChild pool whose workers are being replaced', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 2 })
  const m = pool.map(pid, range(20), { chunksize: 1 })
  const out = await within(W, m, 'map')
  t.is(out.length, 20)
  t.true(new Set(out).size >= 10)
  pool.close()
  await within(W, pool.join(), 'join')
  t.is(pool.workers.length, 0)
})

local('a call that finished does not act later: its timeout and its signal no longer kill anything', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const before = await fullCount(pool)
  const ac = new AbortController()
  t.is(await within(W, pool.apply(square, [3], { timeout: 1000, signal: ac.signal }), 'apply'), 9)
  t.deepEqual(await within(W, pool.map(square, [1, 2], { timeout: 1000, signal: ac.signal }), 'map'), [1, 4])
  // a long task runs past the finished calls' deadlines; then the signal aborts
  const long = pool.apply(sleepPid, [1800])
  await new Promise((r) => setTimeout(r, 1300))
  ac.abort()
  t.true(before.includes(await within(W, long, 'long apply')), 'the long task was not killed')
  t.deepEqual(new Set(await fullCount(pool)), new Set(before), 'no worker was replaced')
})

test('map / starmap over an async input that stalls: timeout, signal and terminate() still end the call', async (t) => {
  const pool = makePool(t)
  await warm(pool) // a call with a timeout only goes to a ready worker: its clock must not run out during start-up
  async function* stuck() {
    yield 1
    await new Promise(() => {})
  }
  const keepAlive = setInterval(() => {}, 1000) // the stalled input alone keeps nothing alive
  t.teardown(() => clearInterval(keepAlive))
  const a = await settle(within(3000, pool.map(square, stuck(), { timeout: 300 }), 'map with a timeout'))
  t.true(a.error instanceof TimeoutError, `${a.error}`)
  const b = await settle(within(3000, pool.starmapAsync(add2, stuck(), { timeout: 300 }).get(), 'starmapAsync with a timeout'))
  t.true(b.error instanceof TimeoutError, `${b.error}`)
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 300)
  const c = await settle(within(3000, pool.map(square, stuck(), { signal: ac.signal }), 'map with a signal'))
  t.true(c.error instanceof AbortError, `${c.error}`)
  // imap: the item taken before arrives, then the error
  const got = []
  const d = await within(
    5000,
    settle(
      (async () => {
        for await (const v of pool.imap(square, stuck(), { timeout: 1000 })) got.push(v)
      })(),
    ),
    'imap with a timeout',
  )
  t.true(d.error instanceof TimeoutError, `${d.error}`)
  t.deepEqual(got, [1])
  const m = pool.map(square, stuck())
  await new Promise((r) => setTimeout(r, 100))
  pool.terminate()
  const e = await settle(within(3000, m, 'map after terminate'))
  t.true(e.error instanceof TerminatedError, `${e.error}`)
  await within(W, pool.join(), 'join')
})

local.serial('a worker killed while running one call: chunks of other calls queued for it run elsewhere and succeed', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const report = reportFile(t)
  const victimCall = settle(pool.apply(sleepOrReport, [0, report.path, 3000]))
  await until(() => report.read() !== undefined, W, 'the marked task starting')
  // while it runs, other calls of every kind: some of their chunks may be queued for the victim
  const others = [
    settle(
      pool.map(
        sleepPid,
        range(40).map(() => 3),
        { chunksize: 2 },
      ),
    ),
    settle(
      pool.starmap(
        sleepPid,
        range(20).map(() => [3]),
      ),
    ),
    settle(
      collect(
        pool.imap(
          sleepPid,
          range(30).map(() => 3),
        ),
      ),
    ),
    settle(
      collect(
        pool.imapUnordered(
          sleepPid,
          range(30).map(() => 3),
          { chunksize: 3 },
        ),
      ),
    ),
    ...range(10).map(() => settle(pool.apply(sleepPid, [3]))),
  ]
  await new Promise((r) => setTimeout(r, 50))
  const victim = report.read()
  process.kill(victim, 'SIGKILL')
  const v = await within(W, victimCall, 'the victim call')
  t.true(v.error instanceof WorkerExitedError, `${v.error}`)
  const results = await within(W, Promise.all(others), 'the other calls')
  for (const r of results) t.false('error' in r, `${r.error}`)
  t.is(results[0].value.length, 40)
  t.is(results[2].value.length, 30)
  t.is(results[3].value.length, 30)
  await backToFull(pool)
})

local.serial(
  'imap with chunksize 5: a worker killed in a chunk loses that chunk (one error), the other chunks arrive in order',
  async (t) => {
    const pool = makePool(t)
    await warm(pool)
    const report = reportFile(t)
    const args = range(50).map((i) => (i === 22 ? [2, report.path, 2000] : [2]))
    const it = pool.imap(sleepOrReportArgs, args, { chunksize: 5 })
    const out = []
    const reading = (async () => {
      for (;;) {
        const r = await settle(it.next())
        if (r.value?.done) return
        out.push(r.error ? r.error : 'ok')
      }
    })()
    await until(() => report.read() !== undefined, W, 'the marked task starting')
    process.kill(report.read(), 'SIGKILL')
    await within(W, reading, 'imap')
    t.is(out.length, 46, 'nine chunks of 5 values and one error for the lost chunk')
    t.true(out[20] instanceof WorkerExitedError, `${out[20]}`)
    t.is(out.filter((x) => x === 'ok').length, 45)
  },
)

test('a worker killed by SIGTERM or SIGSEGV mid-task: WorkerExitedError with that signal', async (t) => {
  const pool = makePool(t)
  for (const sig of ['SIGTERM', 'SIGSEGV']) {
    const { error } = await within(W, settle(pool.apply(killSelf, [sig])), `apply ${sig}`)
    t.true(error instanceof WorkerExitedError, `${error}`)
    t.is(error?.signal, sig)
    t.is(error?.exitCode, null)
    await backToFull(pool)
  }
  t.is(await within(W, pool.apply(square, [3]), 'apply after'), 9)
})

local('a task that returns and then throws from a timer: its result arrives; the crashed worker is replaced', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(W, pool.apply(pid), 'apply')
  t.is(await within(W, pool.apply(throwLater, [5]), 'apply'), 5)
  await until(() => isDead(first), 5000, 'the worker to crash')
  const [next] = await fullCount(pool)
  t.not(next, first)
  t.is(await within(W, pool.apply(pid), 'apply after'), next)
})

test('a script with maxTasksPerChild: 5 runs its maps to the end (the pool keeps the process alive while calls are pending)', async (t) => {
  const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('pool-exit.mjs')), 'maxtasks'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const r = await within(40000, new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))), 'the script')
  t.deepEqual(
    r,
    { code: 0, signal: null },
    `exit ${r.code} (13: node found the event loop empty while a map was pending); stderr: ${err.slice(0, 500)}`,
  )
  t.deepEqual(out ? JSON.parse(out.split('\n')[0]).lengths : null, [40, 40])
})

test('a call that ended early (failed map, imap left by return) keeps no timer: the script exits at once', async (t) => {
  const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('pool-exit.mjs')), 'early-end'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  await until(() => out.includes('\n') || child.exitCode !== null, W, `the script's work; stderr: ${err}`)
  const printedAt = performance.now()
  t.true(JSON.parse(out.split('\n')[0]).failed)
  const r = await within(40000, exited, 'the script to exit')
  const lag = performance.now() - printedAt
  t.deepEqual(r, { code: 0, signal: null }, err)
  t.true(lag < 5000, `the script exited ${Math.round(lag)} ms after its work was done (the 8 s timeouts were still armed?)`)
})

test.serial('a timed call is not overtaken by untimed calls made after it', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const done = {}
  const started = performance.now()
  const mark = (name) => () => (done[name] = performance.now() - started)
  const a = pool
    .map(
      sleepPid,
      range(20).map(() => 50),
      { chunksize: 1 },
    )
    .then(mark('A'))
  const timed = pool.apply(sleepPid, [10], { timeout: 15000 }).then(mark('T'))
  const b = pool
    .map(
      sleepPid,
      range(40).map(() => 50),
      { chunksize: 1 },
    )
    .then(mark('B'))
  await within(W, Promise.all([a, timed, b]), 'the three calls')
  t.true(done.T < done.B, `the timed call made before B finished at ${Math.round(done.T)} ms, B at ${Math.round(done.B)} ms`)
})

test.serial('imap with taskTimeout: the item over it rejects at its position with TimeoutError and the others arrive', async (t) => {
  const pool = makePool(t, { taskTimeout: 400 })
  await warm(pool)
  const it = pool.imap((x) => {
    while (x === 2) {}
    return x * 10
  }, range(6))
  const out = []
  for (;;) {
    const r = await within(W, settle(it.next()), 'next')
    if (r.value?.done) break
    out.push(r.error ? r.error.constructor.name : r.value.value)
  }
  t.deepEqual(out, [0, 10, 'TimeoutError', 30, 40, 50])
  await backToFull(pool)
})

test('huge timeouts (Infinity, 3e9 ms, 2^31 ms) mean no practical limit', async (t) => {
  const pool = makePool(t, { processes: 1 })
  await within(W, pool.apply(pid), 'warm-up')
  for (const timeout of [Number.POSITIVE_INFINITY, 3e9, 2 ** 31]) {
    const r = await within(W, settle(pool.apply(sleepPid, [50], { timeout })), `apply with timeout ${timeout}`)
    t.true('value' in r, `timeout ${timeout}: ${r.error}`)
    const g = await within(W, settle(pool.applyAsync(sleepPid, [50]).get(timeout)), `get(${timeout})`)
    t.true('value' in g, `get(${timeout}): ${g.error}`)
  }
  const big = makePool(t, { processes: 1, taskTimeout: Number.POSITIVE_INFINITY })
  const r = await within(W, settle(big.apply(sleepPid, [50])), 'apply with taskTimeout Infinity')
  t.true('value' in r, `taskTimeout Infinity: ${r.error}`)
})

test('a pool whose worker cannot start (initargs that cannot be sent): calls reject and the script still exits', async (t) => {
  const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('pool-exit.mjs')), 'bad-initargs'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  await until(() => out.includes('\n') || child.exitCode !== null, W, `the script's work; stderr: ${err}`)
  const { error } = JSON.parse(out.split('\n')[0])
  t.truthy(error, 'the call rejected')
  const r = await settle(within(5000, exited, 'the script to exit after terminate() and join()'))
  t.deepEqual(r.value, { code: 0, signal: null }, `${r.error?.message ?? ''} ${err}`)
})

local.serial('a timed call waiting for busy workers still runs when those workers are killed', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const reports = [reportFile(t), reportFile(t)]
  const longs = reports.map((r) => settle(pool.apply(sleepOrReport, [0, r.path, 3000])))
  await until(() => reports.every((r) => r.read() !== undefined), W, 'both long tasks starting')
  const timed = settle(pool.apply(square, [21], { timeout: 15000 }))
  await new Promise((r) => setTimeout(r, 100))
  for (const r of reports) process.kill(r.read(), 'SIGKILL')
  const got = await within(W, timed, 'the timed call')
  t.is(got.value, 441, `${got.error}`)
  for (const o of await within(W, Promise.all(longs), 'the long tasks')) t.true(o.error instanceof WorkerExitedError, `${o.error}`)
  await backToFull(pool)
})

test.serial('a timed call waiting for busy workers, then close(): it still runs and join() resolves', async (t) => {
  const pool = makePool(t)
  await warm(pool)
  const longs = [settle(pool.apply(sleepPid, [600])), settle(pool.apply(sleepPid, [600]))]
  await new Promise((r) => setTimeout(r, 100))
  const timed = settle(pool.apply(square, [5], { timeout: 15000 }))
  pool.close()
  t.is((await within(W, timed, 'the timed call')).value, 25)
  for (const o of await within(W, Promise.all(longs), 'the long tasks')) t.true('value' in o, `${o.error}`)
  await within(W, pool.join(), 'join')
})

test.serial('taskTimeout with chunks: a chunk of n tasks gets n × taskTimeout (docs/api-notes.md)', async (t) => {
  // The clock starts when the chunk is sent: through Redis to a remote host takes longer.
  const unit = backend.localProcesses ? 1 : 4
  const pool = makePool(t, { taskTimeout: 250 * unit })
  await warm(pool)
  // 3 tasks of 150 ms = 450 ms: within the chunk's 3 × 250 ms
  const within3 = [150, 150, 150].map((ms) => ms * unit)
  t.deepEqual(await within(W, pool.map(sleepPid, within3, { chunksize: 3 }), 'map within its chunk budget').then((r) => r.length), 3)
  // 3 tasks of 320 ms = 960 ms > 750 ms
  const over = [320, 320, 320].map((ms) => ms * unit)
  const { error } = await within(W, settle(pool.map(sleepPid, over, { chunksize: 3 })), 'map over its chunk budget')
  t.true(error instanceof TimeoutError, `${error}`)
  await backToFull(pool)
})

local('maxTasksPerChild: 1 over many chunks never runs more than twice `processes` workers at once', async (t) => {
  // A successor starts while its predecessor runs its last chunk, but only once that one runs:
  // started for a worker still booting, each successor would start another (one per chunk).
  // In a script of its own: this file's other pools would be counted too.
  const { stdout } = await within(
    W,
    execFileAsync(process.execPath, [fileURLToPath(fixtureUrl('pool-successors.mjs'))], { timeout: W }),
    'the script',
  )
  const { most, pids } = JSON.parse(stdout)
  t.is(pids, 30, 'each chunk ran in a process of its own')
  t.true(most <= 4, `${most} workers alive at once`)
})

test('terminate() while maxTasksPerChild successors are starting: join() resolves and no process is left', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 1 })
  const m = settle(
    pool.map(
      sleepPid,
      // Enough that successors are still starting at 300 ms when workers are forked in milliseconds.
      range(200).map(() => 5),
      { chunksize: 1 },
    ),
  )
  await new Promise((r) => setTimeout(r, 300))
  const seen = pool.workers.map((w) => w.pid).filter(Boolean)
  pool.terminate()
  const { error } = await within(W, m, 'map')
  t.true(error instanceof TerminatedError, `${error}`)
  await within(W, pool.join(), 'join')
  t.is(pool.workers.length, 0)
  for (const p of seen) t.true(isDead(p))
  await until(() => childPids().length === 0 || childPids().every((p) => !seen.includes(p)), 5000, 'no worker left')
})
