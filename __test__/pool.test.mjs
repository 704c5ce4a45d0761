// Pool: the API against Python's documented semantics (multiprocessing.Pool), as API.md
// ("Pool", "Errors", "Details that tests rely on") states it: apply / map / imap / starmap and
// their async forms, AsyncResult, chunking, ordering, inputs of every kind, progress, targets,
// initializer, maxTasksPerChild, errors revived from workers, close / join / dispose.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  AsyncResult,
  ClosedError,
  InvalidStateError,
  MultiprocError,
  RemoteError,
  SerializationError,
  TargetError,
  TimeoutError,
} from '../dist/index.js'
import {
  add,
  failOn,
  failOn13,
  init,
  pid,
  probe,
  readInit,
  rejectLater,
  returnFunction,
  sleepPid,
  slowTimesTen,
  square,
  throwCustom,
  throwTypeError,
} from './fixtures/pool-tasks.mjs'
import { checkNoLeaks, childPids, fixture, fixtureUrl, isDead, throttled, within } from './helpers.mjs'
import { backend, createPool, needs } from './pool-backend.mjs'

const test = throttled(avaTest)

const tasks = fixtureUrl('pool-tasks.mjs')
// Watchdog for one pool operation; a job queue between the pool and its workers is slower under load.
const W = backend.localProcesses ? 20000 : 60000

// One pool of 2 workers for the tests that only need a working pool (fewer processes to start
// on a 2-core machine); tests that watch pids, kill, close or terminate make their own.
let sharedPool
function shared() {
  sharedPool ??= createPool({ processes: 2, modules: [tasks] })
  return sharedPool
}
// registered before checkNoLeaks so that it runs first
test.after.always('terminate the shared pool', async () => {
  if (!sharedPool) return
  sharedPool.close()
  await within(10000, sharedPool.join(), 'shared pool join').catch(() => {
    sharedPool.terminate()
    return within(10000, sharedPool.join(), 'shared pool join after terminate')
  })
})

checkNoLeaks(test)

/** Tests that need the workers to be processes of this machine (pids, kills, /proc). */
const local = needs(test, 'localProcesses')
/** Tests of chunks taken back from a busy worker's queue. */
const takingBack = needs(test, 'canTakeBack')

/** A pool of 2 workers (that know the fixture module) that is terminated when the test ends. */
function makePool(t, opts = {}) {
  const pool = createPool({ processes: 2, modules: [tasks], ...opts })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  return pool
}

/** Settles `promise` to `{ value }` or `{ error }`. */
const settle = (promise) =>
  Promise.resolve(promise).then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

const range = (n) => Array.from({ length: n }, (_, i) => i)

function* gen(n) {
  for (let i = 0; i < n; i++) yield i
}

async function* agen(n) {
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setImmediate(r))
    yield i
  }
}

async function collect(iterable, ms = W, what = 'iteration') {
  return within(
    ms,
    (async () => {
      const out = []
      for await (const v of iterable) out.push(v)
      return out
    })(),
    what,
  )
}

/** Splits probe() results (input order) into chunks at the calls that started a synchronous run. */
function chunksOf(results) {
  const chunks = []
  for (const r of results) {
    if (r.first || chunks.length === 0) chunks.push([])
    chunks.at(-1).push(r)
  }
  return chunks
}

// ---- construction ----

local('new Pool starts `processes` workers; pool.workers are Process objects with distinct pids', async (t) => {
  const pool = makePool(t)
  t.is(pool.processes, 2)
  t.is(pool.workers.length, 2)
  const pids = new Set(await within(W, pool.map(pid, range(8), { chunksize: 1 }), 'map'))
  for (const p of pool.workers) {
    t.true(Number.isInteger(p.pid) && p.pid > 0)
    t.not(p.pid, process.pid)
  }
  t.is(new Set(pool.workers.map((p) => p.pid)).size, 2)
  for (const p of pids)
    t.true(
      pool.workers.some((w) => w.pid === p),
      'tasks ran in the listed workers',
    )
})

test('bad options: TypeError / RangeError with a code', (t) => {
  t.throws(() => createPool({ processes: 0 }), { instanceOf: RangeError })
  t.throws(() => createPool({ processes: 1.5 }), { instanceOf: RangeError })
  t.throws(() => createPool({ processes: '2' }), { instanceOf: TypeError })
  t.throws(() => createPool({ maxTasksPerChild: 0 }), { instanceOf: RangeError })
  t.throws(() => createPool({ initargs: 'x' }), { instanceOf: TypeError })
  t.throws(() => createPool({ taskTimeout: Number.NaN }), { instanceOf: RangeError })
  const e = t.throws(() => createPool({ processes: -1 }))
  t.is(typeof e.code, 'string')
  t.is(t.throws(() => createPool({ backend: {} }), { instanceOf: TypeError }).code, 'ERR_INVALID_ARG_TYPE')
})

// ---- apply / applyAsync / AsyncResult ----

test('apply runs fn(...args) in a worker and resolves with its value', async (t) => {
  const pool = shared()
  t.is(await within(W, pool.apply(square, [7]), 'apply'), 49)
  t.is(await within(W, pool.apply(add, [2, 3]), 'apply'), 5)
  const p = await within(W, pool.apply(pid), 'apply with no args')
  t.not(p, process.pid)
  t.deepEqual(await within(W, pool.apply(add, [[1], [2]]), 'apply'), '12', 'arrays are serialised and passed')
})

test('async (promise-returning) targets are awaited in the worker', async (t) => {
  const pool = shared()
  t.is(await within(W, pool.apply(slowTimesTen, [4, 20]), 'apply'), 40)
  t.deepEqual(await within(W, pool.map(slowTimesTen, [1, 2, 3]), 'map'), [10, 20, 30])
  const e = await within(W, settle(pool.apply(rejectLater, ['late failure'])), 'apply')
  t.true(e.error instanceof RemoteError)
  t.is(e.error.cause.message, 'late failure')
})

test('applyAsync returns an AsyncResult: ready / successful / wait / get / then', async (t) => {
  const pool = makePool(t)
  const r = pool.applyAsync(slowTimesTen, [5, 300])
  t.true(r instanceof AsyncResult)
  t.false(r.ready())
  const e = t.throws(() => r.successful(), { instanceOf: InvalidStateError })
  t.is(e.code, 'ERR_INVALID_STATE')
  await within(W, r.wait(), 'wait')
  t.true(r.ready())
  t.true(r.successful())
  t.is(await r.get(), 50)
  t.is(await r.get(0), 50, 'a ready result with timeout 0')
  t.is(await r.get({ timeout: 0 }), 50)
  t.is(await r, 50, 'an AsyncResult is awaitable')
  t.is(await r.then((v) => v + 1), 51)

  const bad = pool.applyAsync(throwTypeError, ['nope'])
  const err = await within(W, settle(bad.get()), 'get')
  t.true(bad.ready())
  t.false(bad.successful())
  t.true(err.error instanceof RemoteError)
  t.is((await settle(bad)).error, err.error, 'then rejects with the same error')
  t.is((await settle(bad.then((v) => v))).error, err.error)
  t.is(await bad.then(undefined, () => 'handled'), 'handled')

  // a result that never comes: get(timeout) rejects with TimeoutError and the result stays pending
  const never = pool.applyAsync(sleepPid, [20000]) // busy for 20 s (the pool is terminated at the end)
  await t.throwsAsync(never.get(30), { instanceOf: TimeoutError, code: 'ERR_TIMEOUT' })
  await t.throwsAsync(never.get({ timeout: 30 }), { instanceOf: TimeoutError })
  await t.throwsAsync(never.get(-5), { instanceOf: TimeoutError }, 'a negative timeout counts as 0')
  t.is(await within(W, never.wait(30), 'timed wait'), undefined, 'wait(timeout) resolves when the time is up')
  t.is(await within(W, never.wait({ timeout: 30 }), 'timed wait'), undefined)
  t.false(never.ready())
  t.throws(() => never.successful(), { instanceOf: InvalidStateError })
})

test('callback runs with the value before get()/wait() settle', async (t) => {
  const pool = shared()
  const seen = []
  const r = pool.applyAsync(square, [9], { callback: (v) => seen.push(['callback', v]) })
  await within(W, r.wait(), 'wait')
  seen.push(['wait'])
  seen.push(['get', await r.get()])
  t.deepEqual(seen, [['callback', 81], ['wait'], ['get', 81]])
})

test('errorCallback receives the same RemoteError the promise rejects with, before get() settles', async (t) => {
  const pool = shared()
  const seen = []
  let cbError
  const r = pool.applyAsync(throwTypeError, ['cb'], {
    callback: () => seen.push('callback'),
    errorCallback: (e) => {
      cbError = e
      seen.push('errorCallback')
    },
  })
  const got = await within(W, settle(r.get()), 'get')
  seen.push('get')
  t.deepEqual(seen, ['errorCallback', 'get'])
  t.true(got.error instanceof RemoteError)
  t.is(cbError, got.error, 'the very same object')

  // mapAsync / starmapAsync take callbacks too
  const seen2 = []
  const m = pool.mapAsync(square, [1, 2, 3], { callback: (v) => seen2.push(v) })
  t.deepEqual(await within(W, m.get(), 'mapAsync'), [1, 4, 9])
  t.deepEqual(seen2, [[1, 4, 9]])
  let mapErr
  const bad = pool.starmapAsync(
    failOn,
    [
      [1, 2],
      [2, 2],
    ],
    { errorCallback: (e) => (mapErr = e) },
  )
  const got2 = await within(W, settle(bad.get()), 'starmapAsync')
  t.true(got2.error instanceof RemoteError)
  t.is(mapErr, got2.error)
})

// ---- errors from tasks ----

test('an error thrown in a task arrives as RemoteError whose cause is the revived error (class name, message, stack, code, own cause)', async (t) => {
  const pool = shared()
  const { error } = await within(W, settle(pool.apply(throwCustom, ['m-41'])), 'apply')
  t.true(error instanceof RemoteError, `${error}`)
  t.true(error instanceof MultiprocError)
  t.is(error.code, 'ERR_REMOTE')
  t.is(error.name, 'RemoteError')
  const cause = error.cause
  t.true(cause instanceof Error)
  t.is(cause.name, 'DatabaseError', 'a user class arrives with its class name')
  t.is(cause.message, 'query failed m-41')
  t.is(cause.code, 'E_DB_DOWN')
  t.is(cause.retries, 3, 'own data properties travel')
  t.regex(cause.stack, /throwCustom/, 'the remote stack names the function')
  t.regex(cause.stack, /pool-tasks\.mjs/)
  t.regex(error.message, /query failed m-41/)
  // its own cause, revived: a built-in class keeps its class
  const mid = cause.cause
  t.true(mid instanceof TypeError, 'a TypeError stays a TypeError')
  t.is(mid.message, 'pool exhausted m-41')
  t.regex(mid.stack, /throwCustom/)
  const root = mid.cause
  t.true(root instanceof RangeError)
  t.is(root.message, 'socket closed')
  t.is(root.code, 'E_SOCKET')
})

test('a TypeError thrown in a task keeps its class as the cause', async (t) => {
  const pool = shared()
  const { error } = await within(W, settle(pool.apply(throwTypeError, ['wrong type'])), 'apply')
  t.true(error instanceof RemoteError)
  t.true(error.cause instanceof TypeError)
  t.is(error.cause.name, 'TypeError')
  t.is(error.cause.message, 'wrong type')
  t.regex(error.cause.stack, /throwTypeError/)
})

local('an unserialisable result rejects that task with SerializationError; the worker lives on', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const before = await within(W, pool.apply(pid), 'apply')
  const { error } = await within(W, settle(pool.apply(returnFunction)), 'apply')
  t.true(error instanceof SerializationError, `${error}`)
  t.is(error?.code, 'ERR_SERIALIZATION')
  t.is(await within(W, pool.apply(pid), 'apply'), before, 'same worker process')
  t.deepEqual(
    pool.workers.map((w) => w.pid),
    [before],
  )
  // in a map: the call rejects with it, and the pool goes on
  const m = await within(W, settle(pool.map(returnFunction, [1, 2])), 'map')
  t.true(m.error instanceof SerializationError, `${m.error}`)
  t.deepEqual(await within(W, pool.map(square, [1, 2, 3]), 'map'), [1, 4, 9])
  t.is(await within(W, pool.apply(pid), 'apply'), before)
})

test('an unserialisable argument rejects the call (no hang); the pool goes on', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const { error } = await within(W, settle(pool.apply(square, [() => 1])), 'apply')
  t.true(error instanceof SerializationError, `${error}`)
  t.is(await within(W, pool.apply(square, [3]), 'apply'), 9)
})

// ---- targets ----

test('targets: a function among `modules`, { module: URL, name }, and a self-contained function sent by source', async (t) => {
  const pool = shared()
  t.is(await within(W, pool.apply(square, [6]), 'by identity'), 36)
  t.is(await within(W, pool.apply(fixture('pool-tasks.mjs', 'square'), [6]), 'by module'), 36)
  t.deepEqual(
    await within(
      W,
      pool.starmap(fixture('pool-tasks.mjs', 'add'), [
        [1, 2],
        [3, 4],
      ]),
      'starmap by module',
    ),
    [3, 7],
  )
  function cube(x) {
    return x * x * x
  }
  t.deepEqual(await within(W, pool.map(cube, [1, 2, 3]), 'by source'), [1, 8, 27])
  t.deepEqual(
    await within(
      W,
      pool.map((x) => `${x}!`, ['a', 'b']),
      'arrow by source',
    ),
    ['a!', 'b!'],
  )
  // the fixture's module state is the worker's own: the same module instance for both forms
  const viaModule = await within(W, pool.apply(fixture('pool-tasks.mjs', 'pid')), 'pid by module')
  if (backend.localProcesses) t.true(pool.workers.some((w) => w.pid === viaModule))
})

test('a pool without `modules` sends an exported function by source; with `modules` it finds it by identity', async (t) => {
  const pool = makePool(t, { modules: [] })
  // probe keeps state in its module: sent by source it cannot see `inRun`/`count` → TargetError
  const { error } = await within(W, settle(pool.apply(probe, [1])), 'apply')
  t.true(error instanceof TargetError, `expected TargetError, got ${error}`)
  t.is(error?.code, 'ERR_TARGET')
  // a self-contained export works either way
  t.is(await within(W, pool.apply(square, [5]), 'apply'), 25)
})

test('a function sent by source that uses an outer variable rejects with TargetError naming the variable', async (t) => {
  const pool = shared()
  const secretOuterFactor = 3
  function usesOuter(x) {
    return x * secretOuterFactor
  }
  const { error } = await within(W, settle(pool.apply(usesOuter, [2])), 'apply')
  t.true(error instanceof TargetError, `expected TargetError, got ${error?.name}: ${error?.message?.split('\n')[0]}`)
  t.is(error?.code, 'ERR_TARGET')
  t.regex(error?.message ?? '', /secretOuterFactor/)
  t.regex(error?.message ?? '', /export/)
  // the same through map; the pool stays usable
  const m = await within(W, settle(pool.map(usesOuter, [1, 2])), 'map')
  t.true(m.error instanceof TargetError, `expected TargetError, got ${m.error?.name}`)
  t.is(await within(W, pool.apply(square, [4]), 'apply'), 16)
})

test('a { module, name } that does not exist rejects with TargetError; the pool goes on', async (t) => {
  const pool = shared()
  const { error } = await within(W, settle(pool.apply(fixture('pool-tasks.mjs', 'noSuchExport'), [1])), 'apply')
  t.true(error instanceof TargetError, `${error}`)
  t.is(error?.code, 'ERR_TARGET')
  t.is(await within(W, pool.apply(square, [4]), 'apply'), 16)
})

test('a bad target or bad args is rejected without reaching a worker', async (t) => {
  const pool = shared()
  await t.throwsAsync(async () => pool.apply(42, []), { instanceOf: TypeError })
  await t.throwsAsync(async () => pool.apply(square, 'x'), { instanceOf: TypeError })
  await t.throwsAsync(async () => pool.map(square, 42), { instanceOf: TypeError })
  await t.throwsAsync(async () => pool.map(square, [1], { chunksize: 0 }), { instanceOf: RangeError })
  t.is(await within(W, pool.apply(square, [2]), 'apply'), 4)
})

// ---- map / starmap ----

test('map returns results in input order for arrays, Sets, generators, iterables and async iterables', async (t) => {
  const pool = shared()
  const expected = range(50).map((x) => x * x)
  t.deepEqual(await within(W, pool.map(square, range(50)), 'array'), expected)
  t.deepEqual(await within(W, pool.map(square, new Set(range(50))), 'Set'), expected)
  t.deepEqual(await within(W, pool.map(square, gen(50)), 'generator'), expected)
  t.deepEqual(await within(W, pool.map(square, agen(50)), 'async generator'), expected)
  const custom = {
    [Symbol.iterator]() {
      let i = 0
      return { next: () => (i < 50 ? { value: i++, done: false } : { value: undefined, done: true }) }
    },
  }
  t.deepEqual(await within(W, pool.map(square, custom), 'custom iterable'), expected)
  t.deepEqual(await within(W, pool.map(square, []), 'empty'), [])
  t.deepEqual(await within(W, pool.map(square, gen(0)), 'empty generator'), [])
  t.deepEqual(await within(W, pool.map(slowTimesTen, [3, 1, 2], { chunksize: 1 }), 'async'), [30, 10, 20])
  const big = range(2000)
  t.deepEqual(
    await within(W, pool.map(square, big, { chunksize: 7 }), 'chunksize 7'),
    big.map((x) => x * x),
  )
})

test('map results keep input order when later tasks finish first', async (t) => {
  const pool = shared()
  // item i sleeps (5 - i) * 15 ms: the last ones finish first
  const out = await within(
    W,
    pool.starmap(
      slowTimesTen,
      range(6).map((i) => [i, (5 - i) * 15]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  t.deepEqual(out, [0, 10, 20, 30, 40, 50])
})

test('starmap / starmapAsync call fn(...args) for each array of arguments, in order', async (t) => {
  const pool = shared()
  const args = range(30).map((i) => [i, 100 * i])
  const expected = args.map(([a, b]) => a + b)
  t.deepEqual(await within(W, pool.starmap(add, args), 'starmap'), expected)
  t.deepEqual(await within(W, pool.starmap(add, args.values()), 'starmap iterator'), expected)
  t.deepEqual(
    await within(
      W,
      pool.starmap(
        add,
        (async function* () {
          yield* args
        })(),
      ),
      'starmap async',
    ),
    expected,
  )
  const r = pool.starmapAsync(add, args, { chunksize: 4 })
  t.true(r instanceof AsyncResult)
  t.deepEqual(await within(W, r.get(), 'starmapAsync'), expected)
  t.true(r.successful())
  t.deepEqual(await within(W, pool.starmap(add, []), 'empty'), [])
})

test('mapAsync returns an AsyncResult of the whole list', async (t) => {
  const pool = shared()
  const r = pool.mapAsync(square, gen(20))
  t.true(r instanceof AsyncResult)
  t.deepEqual(
    await within(W, r, 'await mapAsync'),
    range(20).map((x) => x * x),
  )
  t.true(r.ready())
  t.true(r.successful())
})

test('map rejects on the first failure (RemoteError) and the pool stays usable', async (t) => {
  const pool = shared()
  const { error } = await within(W, settle(pool.map(failOn13, range(40), { chunksize: 2 })), 'map')
  t.true(error instanceof RemoteError, `${error}`)
  t.is(error.cause.message, 'bad item 13')
  const r = pool.mapAsync(failOn13, range(40))
  await within(W, r.wait(), 'wait')
  t.false(r.successful())
  t.deepEqual(
    await within(W, pool.map(square, range(10)), 'map after'),
    range(10).map((x) => x * x),
  )
  if (backend.localProcesses) t.is(pool.workers.length, 2)
})

test('an error thrown by the input iterable rejects the call with that very error', async (t) => {
  const pool = shared()
  const boom = new Error('input exploded')
  function* bad() {
    yield 1
    yield 2
    throw boom
  }
  async function* badAsync() {
    yield 1
    throw boom
  }
  t.is((await within(W, settle(pool.map(square, bad())), 'map')).error, boom)
  t.is((await within(W, settle(pool.map(square, badAsync())), 'map async')).error, boom)
  t.is((await within(W, settle(pool.starmap(add, badAsync())), 'starmap')).error, boom)
  t.is((await within(W, settle(pool.mapAsync(square, bad()).get()), 'mapAsync')).error, boom)
  // imap: the error arrives at its position, after the items pulled before it
  const it = pool.imap(square, bad())
  t.deepEqual(await within(W, it.next(), 'imap next'), { value: 1, done: false })
  t.deepEqual(await within(W, it.next(), 'imap next'), { value: 4, done: false })
  t.is((await within(W, settle(it.next()), 'imap next')).error, boom)
  const un = await within(
    W,
    settle(
      (async () => {
        for await (const _ of pool.imapUnordered(square, badAsync())) {
        }
      })(),
    ),
    'imapUnordered',
  )
  t.is(un.error, boom)
  t.deepEqual(await within(W, pool.map(square, [5]), 'map after'), [25])
})

// ---- chunking ----

test('chunksize 3 over 10 items: each chunk runs in one worker, in order, back to back', async (t) => {
  const pool = shared()
  const out = await within(W, pool.map(probe, range(10), { chunksize: 3 }), 'map')
  t.deepEqual(
    out.map((r) => r.x),
    range(10),
  )
  const chunks = chunksOf(out)
  t.deepEqual(
    chunks.map((c) => c.map((r) => r.x)),
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]],
  )
  for (const c of chunks) {
    t.is(new Set(c.map((r) => r.pid)).size, 1, 'one process per chunk')
    for (let i = 1; i < c.length; i++) t.is(c[i].n, c[i - 1].n + 1, 'consecutive in that process')
  }
  // imap with a chunksize, too
  const viaImap = await collect(pool.imap(probe, gen(10), { chunksize: 3 }), W, 'imap')
  t.deepEqual(
    chunksOf(viaImap).map((c) => c.map((r) => r.x)),
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]],
  )
})

test("map's default chunksize is Python's: ceil(n / (4 × processes))", async (t) => {
  const pool = shared()
  // A backend may set a floor (a remote one does: a job must carry enough work).
  const floor = backend.minChunksize ?? 1
  for (const [n, python] of [
    [40, 5], // 40 / 8
    [10, 2], // ceil(10 / 8)
    [3, 1],
    [100, 13], // ceil(100 / 8)
  ]) {
    const size = Math.max(floor, python)
    const out = await within(W, pool.map(probe, range(n)), `map of ${n}`)
    const sizes = chunksOf(out).map((c) => c.length)
    const expected = range(Math.ceil(n / size)).map((i) => Math.min(size, n - i * size))
    t.deepEqual(sizes, expected, `${n} items on 2 processes: chunks of ${size}`)
    for (const c of chunksOf(out)) t.is(new Set(c.map((r) => r.pid)).size, 1)
  }
  // generators are materialised first (Python: list(iterable)), so the same rule applies
  const fromGen = await within(W, pool.map(probe, gen(40)), 'map of a generator')
  t.deepEqual(
    chunksOf(fromGen).map((c) => c.length),
    chunkSizes(40, Math.max(floor, 5)),
  )
})

/** The sizes of the chunks of n items cut `size` at a time. */
function chunkSizes(n, size) {
  return range(Math.ceil(n / size)).map((i) => Math.min(size, n - i * size))
}

test('imap / imapUnordered default chunksize is 1', async (t) => {
  const pool = shared()
  const out = await collect(pool.imap(probe, range(6)), W, 'imap')
  t.deepEqual(
    chunksOf(out).map((c) => c.length),
    [1, 1, 1, 1, 1, 1],
  )
})

// ---- imap / imapUnordered ----

test('imap yields results in input order; imapUnordered yields all of them', async (t) => {
  const pool = shared()
  t.deepEqual(
    await collect(pool.imap(square, range(100)), W, 'imap'),
    range(100).map((x) => x * x),
  )
  const delays = range(8).map((i) => [i, (7 - i) * 10])
  t.deepEqual(
    await collect(
      pool.imap((pair) => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pair[1])
        return pair[0]
      }, delays),
      W,
      'imap with later items faster',
    ),
    range(8),
  )
  const un = await collect(pool.imapUnordered(square, gen(100), { chunksize: 3 }), W, 'imapUnordered')
  t.is(un.length, 100)
  t.deepEqual(
    [...un].sort((a, b) => a - b),
    range(100).map((x) => x * x),
  )
  t.deepEqual(await collect(pool.imap(square, []), W, 'empty imap'), [])
  t.deepEqual(await collect(pool.imapUnordered(square, gen(0)), W, 'empty imapUnordered'), [])
})

takingBack.serial('imapUnordered yields in completion order: a slow task does not hold back the others', async (t) => {
  const pool = makePool(t)
  // warm up: both workers running and fast tasks timed
  t.is(
    new Set(
      await within(
        W,
        pool.map(
          sleepPid,
          range(8).map(() => 2),
          { chunksize: 1 },
        ),
        'warm-up',
      ),
    ).size,
    2,
  )
  // item 0 takes 1.5 s, the others ~0: with a worker free all that time, all of them come first
  const out = await collect(
    pool.imapUnordered((x) => {
      if (x === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500)
      return x
    }, range(6)),
    W,
    'imapUnordered',
  )
  t.deepEqual(
    [...out].sort((a, b) => a - b),
    range(6),
  )
  t.is(out.at(-1), 0, `order: ${out}`)
})

test('imap over an async generator', async (t) => {
  const pool = shared()
  t.deepEqual(
    await collect(pool.imap(square, agen(30)), W, 'imap'),
    range(30).map((x) => x * x),
  )
  const un = await collect(pool.imapUnordered(square, agen(30), { chunksize: 4 }), W, 'imapUnordered')
  t.deepEqual(
    un.sort((a, b) => a - b),
    range(30).map((x) => x * x),
  )
})

test('imap: a failing task rejects next() at its position, and iteration can go on (Python IMapIterator)', async (t) => {
  const pool = shared()
  const it = pool.imap(failOn13, [11, 12, 13, 14])
  t.deepEqual(await within(W, it.next(), 'next'), { value: 11, done: false })
  t.deepEqual(await within(W, it.next(), 'next'), { value: 12, done: false })
  const { error } = await within(W, settle(it.next()), 'next')
  t.true(error instanceof RemoteError)
  t.is(error.cause.message, 'bad item 13')
  t.deepEqual(await within(W, it.next(), 'next'), { value: 14, done: false })
  t.deepEqual(await within(W, it.next(), 'next'), { value: undefined, done: true })
  // for await stops at the throw
  const r = await within(
    W,
    settle(
      (async () => {
        const got = []
        for await (const v of pool.imap(failOn13, [12, 13, 14])) got.push(v)
        return got
      })(),
    ),
    'for await',
  )
  t.true(r.error instanceof RemoteError)
})

test('breaking out of for await over imap stops pulling the input', async (t) => {
  const pool = shared()
  let pulled = 0
  let finalised = false
  function* endless() {
    try {
      for (let i = 0; ; i++) {
        pulled++
        yield i
      }
    } finally {
      finalised = true
    }
  }
  const got = []
  await within(
    W,
    (async () => {
      for await (const v of pool.imap(square, endless())) {
        got.push(v)
        if (got.length === 10) break
      }
    })(),
    'imap with break',
  )
  t.deepEqual(
    got,
    range(10).map((x) => x * x),
  )
  t.true(finalised, 'the input generator was closed (return() called)')
  const after = pulled
  await new Promise((r) => setTimeout(r, 200))
  t.is(pulled, after, 'nothing pulled after the break')
  t.true(pulled < 10 + 2000, `pulled ${pulled}`)
  // the same with an async generator
  let apulled = 0
  let afinalised = false
  async function* aendless() {
    try {
      for (let i = 0; ; i++) {
        apulled++
        yield i
      }
    } finally {
      afinalised = true
    }
  }
  let n = 0
  await within(
    W,
    (async () => {
      for await (const _ of pool.imapUnordered(square, aendless())) if (++n === 5) break
    })(),
    'imapUnordered with break',
  )
  await new Promise((r) => setTimeout(r, 200))
  const aafter = apulled
  await new Promise((r) => setTimeout(r, 200))
  t.is(apulled, aafter, 'nothing pulled after the break')
  t.true(afinalised, 'the async input generator was closed')
  t.deepEqual(await within(W, pool.map(square, [3]), 'map after'), [9])
})

// ---- progress ----

test('onProgress reports { done, total } monotonically, ending at { done: n, total: n }', async (t) => {
  const pool = shared()
  const seen = []
  const out = await within(W, pool.map(square, range(50), { chunksize: 4, onProgress: (p) => seen.push({ ...p }) }), 'map')
  const shown = JSON.stringify(seen)
  t.deepEqual(
    out,
    range(50).map((x) => x * x),
  )
  t.true(seen.length >= 2, `${seen.length} progress reports: ${shown}`)
  t.true(
    seen.every((p, i) => i === 0 || p.done >= seen[i - 1].done),
    `monotonic: ${shown}`,
  )
  t.true(
    seen.every((p) => p.done >= 0 && p.done <= 50 && p.total === 50),
    `within 0..50, total 50 (an array): ${shown}`,
  )
  t.deepEqual(seen.at(-1), { done: 50, total: 50 }, shown)

  // imap over a generator: the total is known at the end
  const seenImap = []
  await collect(pool.imap(square, gen(20), { onProgress: (p) => seenImap.push({ ...p }) }), W, 'imap')
  t.true(
    seenImap.every((p, i) => i === 0 || p.done >= seenImap[i - 1].done),
    JSON.stringify(seenImap),
  )
  t.deepEqual(seenImap.at(-1), { done: 20, total: 20 }, JSON.stringify(seenImap))

  // apply too
  const seenApply = []
  await within(W, pool.apply(square, [2], { onProgress: (p) => seenApply.push({ ...p }) }), 'apply')
  t.deepEqual(seenApply, [{ done: 1, total: 1 }])
})

test("the pool emits 'progress' events", async (t) => {
  const pool = makePool(t)
  const seen = []
  const listener = (p) => seen.push({ ...p })
  pool.on('progress', listener)
  await within(W, pool.map(square, range(30), { chunksize: 3 }), 'map')
  pool.off('progress', listener)
  t.true(seen.length >= 2)
  for (let i = 1; i < seen.length; i++) t.true(seen[i].done >= seen[i - 1].done)
  t.deepEqual(seen.at(-1), { done: 30, total: 30 })
})

// ---- initializer ----

test('initializer(...initargs) runs once per worker, before its tasks', async (t) => {
  const pool = makePool(t, { initializer: init, initargs: ['alpha', 7] })
  const out = await within(W, pool.map(readInit, range(20), { chunksize: 1 }), 'map')
  for (const r of out) {
    t.is(r.a, 'alpha')
    t.is(r.b, 7)
    t.is(r.runs, 1, 'once per worker')
  }
  // also as { module, name }
  const pool2 = makePool(t, { processes: 1, modules: [], initializer: fixture('pool-tasks.mjs', 'init'), initargs: [[1, 2], null] })
  const r = await within(W, pool2.apply(fixture('pool-tasks.mjs', 'readInit')), 'apply')
  t.deepEqual([r.a, r.b, r.runs], [[1, 2], null, 1])
})

test('a failing initializer rejects calls with an error and never hangs', async (t) => {
  const pool = makePool(t, { initializer: fixture('pool-tasks.mjs', 'badInit') })
  const a = await within(W, settle(pool.apply(square, [2])), 'apply')
  t.true(a.error instanceof Error, 'apply rejects')
  t.regex(`${a.error?.message} ${a.error?.cause?.message}`, /initializer exploded/)
  const m = await within(W, settle(pool.map(square, [1, 2, 3])), 'map')
  t.true(m.error instanceof Error, 'map rejects')
  const i = await within(W, settle(collect(pool.imap(square, [1, 2]))), 'imap')
  t.true(i.error instanceof Error, 'imap rejects')
  pool.close()
  await within(W, pool.join(), 'join')
  t.is(pool.workers.length, 0)
})

// ---- maxTasksPerChild ----

local('maxTasksPerChild: 10 replaces workers (new pids) and loses no task', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 10 })
  const first = pool.workers.map((w) => w.pid)
  const out = await within(W, pool.map(probe, range(60), { chunksize: 1 }), 'map')
  t.deepEqual(
    out.map((r) => r.x),
    range(60),
    'every task ran and answered',
  )
  const perPid = new Map()
  for (const r of out) perPid.set(r.pid, (perPid.get(r.pid) ?? 0) + 1)
  t.true(perPid.size >= 6, `${perPid.size} worker processes ran the 60 tasks`)
  for (const [p, n] of perPid) t.true(n <= 10, `pid ${p} ran ${n} tasks`)
  // afterwards the pool has its full count again, not the first workers
  const deadline = Date.now() + 10000
  while (pool.workers.length !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.is(pool.workers.length, 2)
  t.false(pool.workers.every((w) => first.includes(w.pid)))
  t.deepEqual(
    await within(W, pool.map(square, range(30)), 'map again'),
    range(30).map((x) => x * x),
  )
})

// ---- timeout on a whole call ----

test('map with { timeout } that the work fits in resolves normally', async (t) => {
  const pool = makePool(t) // its own: on the shared pool a timed call can starve behind other tests' calls (bug 16)
  t.deepEqual(
    await within(W, pool.map(square, range(10), { timeout: 10000 }), 'map'),
    range(10).map((x) => x * x),
  )
  t.is(await within(W, pool.apply(square, [3], { timeout: 10000 }), 'apply'), 9)
  const ac = new AbortController()
  t.deepEqual(
    await within(W, pool.map(square, range(10), { signal: ac.signal }), 'map with a signal'),
    range(10).map((x) => x * x),
  )
})

// ---- close / join / dispose ----

test('close() then join() finishes queued work and the workers exit', async (t) => {
  const pool = makePool(t)
  const pids = pool.workers.map((w) => w.pid)
  const m = pool.map(slowTimesTen, range(20), { chunksize: 1 })
  const a = pool.applyAsync(square, [12])
  const it = pool.imap(square, range(10))
  pool.close()
  await within(W, pool.join(), 'join')
  t.deepEqual(
    await within(W, m, 'map'),
    range(20).map((x) => x * 10),
  )
  t.is(await a.get(0), 144)
  t.deepEqual(
    await collect(it),
    range(10).map((x) => x * x),
  )
  for (const p of pids) t.true(isDead(p), `worker ${p} exited`)
  t.is(pool.workers.length, 0)
  for (const p of pids) t.false(childPids().includes(p), `worker ${p} reaped`)
})

test('calls after close() reject with ClosedError; join() before close throws InvalidStateError', async (t) => {
  const pool = makePool(t)
  const e = await t.throwsAsync(async () => pool.join(), { instanceOf: InvalidStateError })
  t.is(e.code, 'ERR_INVALID_STATE')
  pool.close()
  const c = await t.throwsAsync(async () => pool.apply(square, [1]), { instanceOf: ClosedError })
  t.is(c.code, 'ERR_CLOSED')
  await t.throwsAsync(async () => pool.applyAsync(square, [1]).get(), { instanceOf: ClosedError })
  await t.throwsAsync(async () => pool.map(square, [1]), { instanceOf: ClosedError })
  await t.throwsAsync(async () => pool.map(square, []), { instanceOf: ClosedError })
  await t.throwsAsync(async () => pool.mapAsync(square, [1]).get(), { instanceOf: ClosedError })
  await t.throwsAsync(async () => pool.starmap(add, [[1, 2]]), { instanceOf: ClosedError })
  await t.throwsAsync(async () => pool.starmapAsync(add, [[1, 2]]).get(), { instanceOf: ClosedError })
  await t.throwsAsync(async () => collect(pool.imap(square, [1])), { instanceOf: ClosedError })
  await t.throwsAsync(async () => collect(pool.imapUnordered(square, [1])), { instanceOf: ClosedError })
  pool.close() // a second close is harmless
  await within(W, pool.join(), 'join')
  await within(W, pool.join(), 'second join')
})

test('pool[Symbol.asyncDispose]() closes and joins: queued work finishes, no worker process remains', async (t) => {
  const pool = makePool(t)
  const pids = pool.workers.map((w) => w.pid)
  if (backend.localProcesses) t.is(pids.length, 2)
  const m = pool.map(slowTimesTen, range(10), { chunksize: 1 })
  await within(W, pool[Symbol.asyncDispose](), 'asyncDispose')
  t.deepEqual(
    await within(W, m, 'map'),
    range(10).map((x) => x * 10),
  )
  for (const p of pids) {
    t.true(isDead(p))
    t.false(childPids().includes(p))
  }
  t.is(pool.workers.length, 0)
  await t.throwsAsync(async () => pool.apply(square, [1]), { instanceOf: ClosedError })
})

let supportsUsing = true
try {
  new Function('return async () => { await using x = null }')
} catch {
  supportsUsing = false
}

/**
 * The `await using` fixture as this node can run it: as it is where the syntax is supported,
 * else lowered by TypeScript (its `__addDisposableResource` helpers call the same
 * `Symbol.asyncDispose`), written to a temporary file with absolute imports.
 */
async function usingFixture(t) {
  const file = fixtureUrl('pool-using.mjs')
  if (supportsUsing) return fileURLToPath(file)
  const ts = (await import('typescript')).default
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const source = readFileSync(file, 'utf8')
    .replace("'../pool-backend.mjs'", `'${new URL('./pool-backend.mjs', import.meta.url).href}'`)
    .replace("'./pool-tasks.mjs'", `'${fixtureUrl('pool-tasks.mjs').href}'`)
    .replace("new URL('./pool-tasks.mjs', import.meta.url)", `new URL('${fixtureUrl('pool-tasks.mjs').href}')`)
  const out = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } })
  const dir = mkdtempSync(join(tmpdir(), 'pool-using-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const lowered = join(dir, 'pool-using.mjs')
  writeFileSync(lowered, out.outputText)
  return lowered
}

test('`await using pool = new Pool()` leaves no worker process behind once the block is left (fixture)', async (t) => {
  const script = await usingFixture(t)
  const out = await within(
    30000,
    new Promise((resolve, reject) => {
      execFile(process.execPath, [script], { timeout: 25000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      )
    }),
    'pool-using.mjs',
  )
  const r = JSON.parse(out.trim().split('\n').at(-1))
  t.deepEqual(r.result, [1, 4, 9])
  if (backend.localProcesses) t.is(r.pids.length, 2)
  t.deepEqual(r.alive, [], 'no worker process remains once the scope is left')
  t.deepEqual(r.children, [])
})

test('values of many kinds travel both ways (structured-clone-like)', async (t) => {
  const pool = shared()
  const value = [
    undefined,
    null,
    10n,
    new Map([[1, { a: 2 }]]),
    new Set(['x']),
    new Date(0),
    new Uint8Array([1, 2]),
    { a: { b: [1] } },
    Number.NaN,
    -0,
    'ü€',
  ]
  const back = await within(
    W,
    pool.apply((v) => v, [value]),
    'apply identity',
  )
  t.deepEqual(back, value)
  t.true(Object.is(back[9], -0))
  t.deepEqual(
    await within(
      W,
      pool.map((v) => typeof v, value, { chunksize: 1 }),
      'map typeof',
    ),
    value.map((v) => typeof v),
  )
  t.deepEqual(
    await within(
      W,
      pool.map((c) => c.toUpperCase(), 'abc'),
      'map over a string',
    ),
    ['A', 'B', 'C'],
  )
})

test('large maps of numbers come back exact both ways: -0, NaN, ±Infinity, int32 limits, mixed and holey inputs', async (t) => {
  const pool = shared()
  const specials = [0, -0, Number.NaN, Infinity, -Infinity, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 + 2, Number.MIN_VALUE, -1.5]
  // Default chunks of 2,500 items: each chunk and its results go packed (int32 or float64).
  const xs = Array.from({ length: 20_000 }, (_, i) => (i % 97 === 0 ? specials[(i / 97) % specials.length] : i - 10_000))
  const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]))
  t.true(
    same(
      await within(
        W,
        pool.map((x) => x, xs),
        'identity map',
      ),
      xs,
    ),
  )
  t.true(
    same(
      await within(
        W,
        pool.map((x) => x * 0.5, xs),
        'halving map',
      ),
      xs.map((x) => x * 0.5),
    ),
  )
  // Results that are not all numbers (a string in each chunk, undefined, objects) fall back exactly.
  const mixed = await within(
    W,
    pool.map((x) => (x % 1000 === 0 ? `s${x}` : x % 777 === 0 ? undefined : x % 555 === 0 ? { x } : -x), xs),
    'mixed results',
  )
  t.deepEqual(
    mixed,
    xs.map((x) => (x % 1000 === 0 ? `s${x}` : x % 777 === 0 ? undefined : x % 555 === 0 ? { x } : -x)),
  )
  t.is(mixed[1], 9999)
  // An input with holes: each hole is an undefined item, as in Python's list of the iterable.
  const holey = Array.from({ length: 5000 }, (_, i) => i)
  delete holey[1234]
  const back = await within(
    W,
    pool.map((x) => (x === undefined ? 'hole' : x + 1), holey),
    'holey input',
  )
  t.is(back[1234], 'hole')
  t.is(back[4999], 5000)
  // Strings with surrogate pairs and lone surrogates, in long arrays both ways.
  const strings = Array.from({ length: 3000 }, (_, i) => ['a', '😀', '\ud800', 'x\udc00y', 'é'.repeat(i % 5)][i % 5] + i)
  t.deepEqual(
    await within(
      W,
      pool.map((s) => s, strings),
      'strings',
    ),
    strings,
  )
})

test('large arguments and results (9 MB, larger than the queues) go through', async (t) => {
  const pool = shared()
  const big = Buffer.alloc(9 << 20, 7)
  t.is(
    await within(
      W,
      pool.apply((b) => b.length + b[12345], [big]),
      'big argument',
    ),
    (9 << 20) + 7,
  )
  const r = await within(
    W,
    pool.apply((n) => new Uint8Array(n).fill(3), [9 << 20]),
    'big result',
  )
  t.is(r.length, 9 << 20)
  t.is(r[r.length - 1], 3)
  const rs = await within(
    W,
    pool.map((n) => 'x'.repeat(n), [3 << 20, 5, 3 << 20], { chunksize: 3 }),
    'big results in one chunk',
  )
  t.deepEqual(
    rs.map((s) => s.length),
    [3 << 20, 5, 3 << 20],
  )
})

test('a task that throws a non-Error value rejects with RemoteError naming the value', async (t) => {
  const pool = shared()
  for (const [f, shown] of [
    [
      () => {
        throw 42
      },
      /42/,
    ],
    [
      () => {
        throw 'just a string'
      },
      /just a string/,
    ],
    [
      async () => {
        throw null
      },
      /null/,
    ],
  ]) {
    const { error } = await within(W, settle(pool.apply(f)), 'apply')
    t.true(error instanceof RemoteError, `${error}`)
    t.regex(`${error.message} ${error.cause?.message}`, shown)
  }
})

test('an error whose cause is itself (a cycle) arrives without hanging', async (t) => {
  const pool = shared()
  const { error } = await within(
    W,
    settle(
      pool.apply(() => {
        const e = new Error('cyclic')
        e.cause = e
        throw e
      }),
    ),
    'apply',
  )
  t.true(error instanceof RemoteError)
  t.is(error.cause.message, 'cyclic')
})

test('imap with chunksize: a failing chunk rejects once at its position and the next chunks follow (Python)', async (t) => {
  const pool = shared()
  const it = pool.imap(failOn13, range(20), { chunksize: 5 })
  const out = []
  for (let i = 0; i < 25; i++) {
    const r = await within(W, settle(it.next()), 'next')
    if (r.error) {
      t.true(r.error instanceof RemoteError)
      out.push('error')
    } else if (r.value.done) break
    else out.push(r.value.value)
  }
  t.deepEqual(out, [...range(10), 'error', 15, 16, 17, 18, 19])
})

test('many calls of every kind at once on one pool all get their own results', async (t) => {
  const pool = shared()
  const jobs = range(6).map((k) => {
    switch (k % 4) {
      case 0:
        return pool
          .map(
            square,
            range(60).map((i) => i + k),
          )
          .then((r) => ['map', k, r])
      case 1:
        return pool
          .starmap(
            add,
            range(60).map((i) => [i, k]),
          )
          .then((r) => ['starmap', k, r])
      case 2:
        return collect(pool.imap(square, gen(60))).then((r) => ['imap', k, r])
      default:
        return Promise.all(range(20).map((i) => pool.apply(add, [i, k]))).then((r) => ['apply', k, r])
    }
  })
  for (const [kind, k, r] of await within(W, Promise.all(jobs), 'all calls')) {
    if (kind === 'map')
      t.deepEqual(
        r,
        range(60).map((i) => (i + k) * (i + k)),
      )
    if (kind === 'starmap')
      t.deepEqual(
        r,
        range(60).map((i) => i + k),
      )
    if (kind === 'imap')
      t.deepEqual(
        r,
        range(60).map((i) => i * i),
      )
    if (kind === 'apply')
      t.deepEqual(
        r,
        range(20).map((i) => i + k),
      )
  }
})

test('bad call options and wait arguments: TypeError / RangeError', async (t) => {
  const pool = shared()
  await t.throwsAsync(async () => pool.apply(square, [1], { timeout: Number.NaN }), { instanceOf: RangeError })
  await t.throwsAsync(async () => pool.apply(square, [1], { timeout: 'soon' }), { instanceOf: TypeError })
  await t.throwsAsync(async () => pool.apply(square, [1], { signal: {} }), { instanceOf: TypeError })
  await t.throwsAsync(async () => pool.map(square, [1], { onProgress: 5 }), { instanceOf: TypeError })
  await t.throwsAsync(async () => collect(pool.imap(square, [1], { chunksize: 0 })), { instanceOf: RangeError })
  await t.throwsAsync(async () => pool.starmap(add, [[1, 2]], { chunksize: 1.5 }), { instanceOf: RangeError })
  const r = pool.applyAsync(square, [3])
  await t.throwsAsync(async () => r.get(Number.NaN), { instanceOf: RangeError })
  await t.throwsAsync(async () => r.get('x'), { instanceOf: TypeError })
  await t.throwsAsync(async () => r.wait(Number.NaN), { instanceOf: RangeError })
  t.is(await within(W, r.get(), 'get'), 9)
})

test('close() and join() before consuming an imap: join resolves and every result is still delivered', async (t) => {
  const pool = makePool(t)
  const it = pool.imap(square, range(500))
  const un = pool.imapUnordered(square, gen(300))
  pool.close()
  await within(W, pool.join(), 'join with unconsumed imap results')
  t.is(pool.workers.length, 0)
  t.deepEqual(
    await collect(it),
    range(500).map((x) => x * x),
  )
  t.is((await collect(un)).length, 300)
})

test('close() while an imap is being consumed: the imap completes, then join resolves', async (t) => {
  const pool = makePool(t)
  const it = pool.imap(square, gen(300))
  const got = []
  for await (const v of it) {
    got.push(v)
    if (got.length === 10) pool.close()
  }
  t.deepEqual(
    got,
    range(300).map((x) => x * x),
  )
  await within(W, pool.join(), 'join')
})

test('an async initializer is awaited before the first task', async (t) => {
  const pool = makePool(t, {
    processes: 1,
    initializer: async (v) => {
      await new Promise((r) => setTimeout(r, 100))
      globalThis.__asyncInit = v
    },
    initargs: ['ready'],
  })
  t.deepEqual(
    await within(
      W,
      pool.map(() => globalThis.__asyncInit, range(3)),
      'map',
    ),
    ['ready', 'ready', 'ready'],
  )
})

test('maxTasksPerChild with an initializer: each new worker runs it once', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 3, initializer: init, initargs: ['again', 1] })
  const out = await within(W, pool.map(readInit, range(24), { chunksize: 1 }), 'map')
  t.true(new Set(out.map((r) => r.pid)).size >= 8)
  for (const r of out) t.deepEqual([r.a, r.b, r.runs], ['again', 1, 1])
})

local('two pools side by side do not mix their work', async (t) => {
  const a = makePool(t, { processes: 1 })
  const b = makePool(t, { processes: 1 })
  const [ra, rb] = await within(W, Promise.all([a.map(pid, range(20), { chunksize: 1 }), b.map(pid, range(20), { chunksize: 1 })]), 'maps')
  t.deepEqual(new Set(ra), new Set(a.workers.map((w) => w.pid)))
  t.deepEqual(new Set(rb), new Set(b.workers.map((w) => w.pid)))
  t.not(ra[0], rb[0])
})

test('a typed array in a result keeps its bytes while more results arrive', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const first = await within(
    W,
    pool.apply((v) => v, [{ u: new Uint8Array([1, 2, 3]), f: new Float64Array([0.5, 1.5]) }]),
    'apply',
  )
  const firstArr = await within(
    W,
    pool.apply((v) => v, [new Uint8Array([4, 5])]),
    'apply',
  )
  const inList = await within(
    W,
    pool.map((v) => v, [new Uint16Array([7, 8])]),
    'map',
  )
  // more traffic through the same channels
  await within(
    W,
    pool.map(() => ({ junk: new Uint8Array(64).fill(0xee), s: 'z'.repeat(200) }), range(100), { chunksize: 1 }),
    'more traffic',
  )
  t.deepEqual([...first.u], [1, 2, 3])
  t.deepEqual([...first.f], [0.5, 1.5])
  t.deepEqual([...firstArr], [4, 5])
  t.deepEqual([...inList[0]], [7, 8])
})

test('a typed array argument keeps its bytes in an async task while the worker receives more work', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const slow = pool.apply(
    async (arg) => {
      const before = [...arg.u]
      await new Promise((r) => setTimeout(r, 300))
      return { before, after: [...arg.u] }
    },
    [{ u: new Uint8Array([1, 2, 3]) }],
  )
  // queued for the same worker meanwhile
  const others = range(20).map(() => pool.applyAsync((v) => v.u.length, [{ u: new Uint8Array(32).fill(0xab) }]))
  const r = await within(W, slow, 'slow apply')
  t.deepEqual(r.before, [1, 2, 3])
  t.deepEqual(r.after, [1, 2, 3])
  for (const o of others) t.is(await within(W, o.get(), 'other'), 32)
})

test('an unserialisable item: map rejects with SerializationError; imap rejects that position and goes on', async (t) => {
  const pool = shared()
  const m = await within(W, settle(pool.map(square, [1, Symbol('no')])), 'map')
  t.true(m.error instanceof SerializationError, `${m.error}`)
  const it = pool.imap((x) => x, [1, () => 2, 3])
  const out = []
  for (let i = 0; i < 4; i++) {
    const r = await within(W, settle(it.next()), 'next')
    out.push(r.error ? r.error.constructor.name : r.value.done ? 'done' : r.value.value)
  }
  t.deepEqual(out, [1, 'SerializationError', 3, 'done'])
})

test('an initializer that exits the worker rejects calls with an error and never hangs', async (t) => {
  const pool = makePool(t, { processes: 1, initializer: fixture('pool-tasks.mjs', 'exitMidTask'), initargs: [2] })
  const a = await within(10000, settle(pool.apply(square, [2])), 'apply with an initializer that exits')
  t.true(a.error instanceof Error, `${a.error}`)
  pool.terminate()
  await within(W, pool.join(), 'join')
})

test('an initializer that never finishes: a call with a timeout rejects with TimeoutError', async (t) => {
  const pool = makePool(t, {
    processes: 1,
    initializer: () =>
      new Promise(() => {
        setInterval(() => {}, 1000)
      }),
  })
  const a = await within(W, settle(pool.apply(square, [2], { timeout: 400 })), 'apply')
  t.true(a.error instanceof TimeoutError, `${a.error}`)
})

test("an onProgress callback or 'progress' listener that throws does not wedge the pool", async (t) => {
  const pool = makePool(t)
  const unhandled = []
  const onUnhandled = (e) => unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => process.off('unhandledRejection', onUnhandled))
  const r = await within(
    W,
    settle(
      pool.map(square, [1, 2], {
        onProgress: () => {
          throw new Error('progress callback failed')
        },
      }),
    ),
    'map with a throwing onProgress',
  )
  t.true('value' in r || r.error?.message === 'progress callback failed', `${r.error}`)
  t.deepEqual(await within(W, pool.map(square, [3, 4]), 'the next map'), [9, 16])
  const listener = () => {
    throw new Error('progress listener failed')
  }
  pool.on('progress', listener)
  await within(W, settle(pool.map(square, [1, 2])), 'map with a throwing listener')
  pool.off('progress', listener)
  t.deepEqual(await within(W, pool.map(square, [5]), 'the next map'), [25])
})

test('progress total is null while a lazy input has not ended, and known from the start for arrays', async (t) => {
  const pool = shared()
  const lazy = []
  await collect(pool.imap(square, gen(3000), { onProgress: (p) => lazy.push({ ...p }) }), W, 'imap over a generator')
  t.is(lazy[0].total, null, `the generator has not ended when the first results arrive: ${JSON.stringify(lazy.slice(0, 3))}`)
  for (const p of lazy) t.true(p.total === null || p.total === 3000)
  t.deepEqual(lazy.at(-1), { done: 3000, total: 3000 })
  const eager = []
  await collect(pool.imap(square, range(300), { onProgress: (p) => eager.push({ ...p }) }), W, 'imap over an array')
  t.true(
    eager.every((p) => p.total === 300),
    JSON.stringify(eager.filter((p) => p.total !== 300).slice(0, 3)),
  )
  t.deepEqual(eager.at(-1), { done: 300, total: 300 })
  // map and starmap read the whole input first (as Python's list(iterable)): the total is known
  const viaMap = []
  await within(W, pool.map(square, gen(40), { chunksize: 2, onProgress: (p) => viaMap.push(p.total) }), 'map over a generator')
  t.deepEqual([...new Set(viaMap)], [40])
  const viaStarmap = []
  await within(
    W,
    pool.starmap(
      add,
      (async function* () {
        for (let i = 0; i < 30; i++) yield [i, 1]
      })(),
      { onProgress: (p) => viaStarmap.push(p.total) },
    ),
    'starmap over an async generator',
  )
  t.deepEqual([...new Set(viaStarmap)], [30])
})

test('many calls with a timeout at once (each has its worker to itself) all complete', async (t) => {
  const pool = makePool(t) // its own: timed calls on the busy shared pool could starve (bug 16)
  const out = await within(W, Promise.all(range(20).map((i) => pool.apply(add, [i, 1], { timeout: 15000 }))), '20 timed applies')
  t.deepEqual(
    out,
    range(20).map((i) => i + 1),
  )
  const maps = await within(
    W,
    Promise.all(range(4).map((k) => pool.map(add, range(10), { timeout: 15000, chunksize: 2 }).then((r) => r.length + k))),
    'timed maps',
  )
  t.deepEqual(maps, [10, 11, 12, 13])
})

test('targets: method shorthand and async functions sent by source; a built-in or bound function is refused with TargetError', async (t) => {
  const pool = shared()
  const o = {
    double(x) {
      return 2 * x
    },
    async later(x) {
      await new Promise((r) => setTimeout(r, 5))
      return x + 0.5
    },
  }
  t.is(await within(W, pool.apply(o.double, [21]), 'method shorthand'), 42)
  t.is(await within(W, pool.apply(o.later, [1]), 'async method shorthand'), 1.5)
  for (const f of [Math.max, square.bind(null)]) {
    const { error } = await within(W, settle(pool.apply(f, [1, 2])), 'apply')
    t.true(error instanceof TargetError, `${error}`)
    t.is(error?.code, 'ERR_TARGET')
  }
  t.deepEqual(await within(W, pool.map(fixture('pool-tasks.mjs', 'square'), [Math.max(1, 2)]), 'map by module'), [4])
})

test('modules given as a path string: functions are found by identity', async (t) => {
  const pool = makePool(t, { processes: 1, modules: [fileURLToPath(tasks)] })
  // probe keeps module state: it only works when found in its module, not when sent by source
  const out = await within(W, pool.map(probe, range(3), { chunksize: 1 }), 'map')
  t.deepEqual(
    out.map((r) => r.x),
    [0, 1, 2],
  )
})

test('a large map with the default chunksize', async (t) => {
  const pool = shared()
  const n = 100000
  const out = await within(W, pool.map(square, range(n)), 'map of 100,000')
  t.is(out.length, n)
  t.is(out[n - 1], (n - 1) * (n - 1))
  t.true(out.every((v, i) => v === i * i))
})

local('pool workers are daemon processes named PoolWorker-N, listed by activeChildren() while they run', async (t) => {
  const { activeChildren } = await import('../dist/index.js')
  const pool = makePool(t)
  const workers = pool.workers
  for (const w of workers) {
    t.regex(w.name, /^PoolWorker-\d+$/)
    t.true(w.daemon)
    t.true(w.isAlive())
  }
  t.not(workers[0].name, workers[1].name)
  for (const w of workers) t.true(activeChildren().includes(w))
  pool.close()
  await within(W, pool.join(), 'join')
  for (const w of workers) {
    t.false(w.isAlive())
    t.false(activeChildren().includes(w))
  }
})

test("an AbortError's cause is the signal's reason", async (t) => {
  const pool = shared()
  const reason = new Error('user cancelled')
  const ac = new AbortController()
  ac.abort(reason)
  const { error } = await within(W, settle(pool.apply(square, [1], { signal: ac.signal })), 'apply')
  t.is(error?.code, 'ABORT_ERR')
  t.is(error?.cause, reason)
})

test('imap: several next() calls pending at once resolve in order; next() after return() is done', async (t) => {
  const pool = shared()
  const it = pool.imap(failOn13, [11, 12, 13, 14, 15])
  const pending = [it.next(), it.next(), it.next(), it.next()]
  const got = await within(W, Promise.all(pending.map(settle)), 'pending next() calls')
  t.deepEqual(got[0].value, { value: 11, done: false })
  t.deepEqual(got[1].value, { value: 12, done: false })
  t.true(got[2].error instanceof RemoteError)
  t.deepEqual(got[3].value, { value: 14, done: false })
  t.deepEqual(await it.return(), { value: undefined, done: true })
  t.deepEqual(await within(W, it.next(), 'next after return'), { value: undefined, done: true })
  t.deepEqual(await it.return(), { value: undefined, done: true }, 'return() twice')
  t.is(it[Symbol.asyncIterator](), it)
})

test('an imap nobody reads does not hold up other calls', async (t) => {
  const pool = makePool(t)
  const idle = pool.imap(square, gen(10000))
  await new Promise((r) => setTimeout(r, 100))
  t.deepEqual(
    await within(W, pool.map(square, range(100)), 'map while an imap waits for its reader'),
    range(100).map((x) => x * x),
  )
  t.is(await within(W, pool.apply(square, [12]), 'apply'), 144)
  t.deepEqual(await within(W, idle.next(), 'the imap'), { value: 0, done: false })
  await idle.return()
})

test('starmap with an item that is not an array of arguments rejects; the pool goes on', async (t) => {
  const pool = shared()
  const { error } = await within(W, settle(pool.starmap(add, [[1, 2], 3])), 'starmap')
  t.true(error instanceof Error, `${error}`)
  t.deepEqual(await within(W, pool.starmap(add, [[1, 2]]), 'starmap after'), [3])
})

test('maxTasksPerChild: 5 over two maps of 60 tasks (chunksize 1): every map completes', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 5 })
  t.is(await within(W, pool.apply(square, [2]), 'apply'), 4)
  for (let round = 0; round < 2; round++) {
    let done = 0
    const out = await within(W, pool.map(pid, range(60), { chunksize: 1, onProgress: (p) => (done = p.done) }), `map ${round}`).catch(
      (e) => {
        throw new Error(`${e.message}; progress ${done}/60; live workers ${pool.workers.map((w) => w.pid)}`)
      },
    )
    t.is(out.length, 60)
    const perPid = new Map()
    for (const p of out) perPid.set(p, (perPid.get(p) ?? 0) + 1)
    for (const n of perPid.values()) t.true(n <= 5)
  }
})

test('built-in error classes keep their class as the cause, AggregateError with its errors', async (t) => {
  const pool = shared()
  for (const Ctor of [RangeError, SyntaxError, ReferenceError, EvalError, URIError]) {
    const { error } = await within(
      W,
      settle(
        pool.apply(
          (name) => {
            throw new globalThis[name](`a ${name}`)
          },
          [Ctor.name],
        ),
      ),
      'apply',
    )
    t.true(error instanceof RemoteError, `${error}`)
    t.true(error.cause instanceof Ctor, `${error.cause?.name} is a ${Ctor.name}`)
  }
  const { error } = await within(
    W,
    settle(
      pool.apply(() => {
        throw new AggregateError([new Error('first'), new TypeError('second')], 'many failed')
      }),
    ),
    'apply',
  )
  t.true(error instanceof RemoteError)
  t.is(error.cause?.name, 'AggregateError')
  t.is(error.cause?.message, 'many failed')
  t.true(error.cause instanceof AggregateError, 'AggregateError keeps its class')
  t.deepEqual(
    error.cause?.errors?.map((e) => [e.constructor.name, e.message]),
    [
      ['Error', 'first'],
      ['TypeError', 'second'],
    ],
    'its errors are revived',
  )
})

test('multiproc errors thrown in a task keep their name and code', async (t) => {
  const pool = shared()
  const { error } = await within(
    W,
    settle(
      pool.apply(
        async (url) => {
          const { Queue } = await import(url)
          new Queue().getNowait()
        },
        [new URL('../dist/index.js', import.meta.url).href],
      ),
    ),
    'apply',
  )
  t.true(error instanceof RemoteError, `${error}`)
  t.is(error.cause?.name, 'Empty')
  t.is(error.cause?.code, 'ERR_EMPTY')
})

local('on one worker process, applyAsync calls run in the order they were made', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const results = range(30).map((i) => pool.applyAsync(probe, [i]))
  const out = await within(W, Promise.all(results.map((r) => r.get())), 'applies')
  for (let i = 1; i < out.length; i++) t.true(out[i].n > out[i - 1].n, `call ${i} ran after call ${i - 1}`)
})

test('starmap uses the same default chunksize as map; imapUnordered yields the items of a chunk together, in order', async (t) => {
  const pool = shared()
  const out = await within(
    W,
    pool.starmap(
      probe,
      range(40).map((i) => [i, 0]),
    ),
    'starmap',
  )
  t.deepEqual(
    chunksOf(out).map((c) => c.length),
    chunkSizes(40, Math.max(backend.minChunksize ?? 1, 5)),
  )
  const un = await collect(pool.imapUnordered(probe, range(20), { chunksize: 4 }), W, 'imapUnordered')
  t.is(un.length, 20)
  for (let c = 0; c < 5; c++) {
    const at = un.findIndex((r) => r.x === c * 4)
    t.deepEqual(
      un.slice(at, at + 4).map((r) => r.x),
      [c * 4, c * 4 + 1, c * 4 + 2, c * 4 + 3],
      `chunk ${c} together and in order`,
    )
  }
})

test('a signal shared by many calls is left without listeners once they are done', async (t) => {
  const { getEventListeners } = await import('node:events')
  const pool = makePool(t) // its own: timed calls on the busy shared pool could starve (bug 16)
  const ac = new AbortController()
  for (let i = 0; i < 5; i++) await within(W, pool.apply(square, [i], { signal: ac.signal, timeout: 10000 }), 'apply')
  await within(W, pool.map(square, range(20), { signal: ac.signal, chunksize: 3 }), 'map')
  await within(W, pool.starmap(add, [[1, 2]], { signal: ac.signal }), 'starmap')
  await collect(pool.imap(square, range(10), { signal: ac.signal }), W, 'imap')
  const it = pool.imap(square, gen(1000), { signal: ac.signal })
  await within(W, it.next(), 'next')
  await it.return()
  const failing = await within(W, settle(pool.map(failOn13, range(20), { signal: ac.signal })), 'failing map')
  t.true(failing.error instanceof RemoteError)
  t.is(getEventListeners(ac.signal, 'abort').length, 0)
})

test('a task can run a Pool of its own (nested pools)', async (t) => {
  const pool = makePool(t, { processes: 1 })
  const out = await within(
    W,
    pool.apply(
      async (url) => {
        const { Pool } = await import(url)
        const inner = new Pool({ processes: 1 })
        const r = await inner.map((x) => x * 3, [1, 2, 3])
        inner.close()
        await inner.join()
        return r
      },
      [new URL('../dist/index.js', import.meta.url).href],
    ),
    'nested pool',
  )
  t.deepEqual(out, [3, 6, 9])
})

test('a module in `modules` that fails to import in the worker: calls reject with TargetError; the pool goes on', async (t) => {
  const { triple } = await import('./fixtures/pool-bad-module.mjs')
  const pool = makePool(t, { processes: 1, modules: [fixtureUrl('pool-bad-module.mjs'), tasks] })
  const { error } = await within(W, settle(pool.apply(triple, [2])), 'apply')
  t.true(error instanceof TargetError, `${error}`)
  t.regex(error?.message ?? '', /pool-bad-module/)
  t.is(await within(W, pool.apply(fixture('pool-tasks.mjs', 'square'), [5]), 'apply of another target'), 25)
})

test('large initargs arrive', async (t) => {
  const big = makePool(t, { processes: 1, initializer: init, initargs: [Buffer.alloc(6 << 20, 1), 'big'] })
  const r = await within(W, big.apply(readInit), 'apply')
  t.is(r.a.length, 6 << 20)
  t.is(r.b, 'big')
})

test('functions among `modules` are found by identity: two modules exporting the same source each run their own', async (t) => {
  const { scale: scaleA } = await import('./fixtures/pool-scale-a.mjs')
  const { scale: scaleB } = await import('./fixtures/pool-scale-b.mjs')
  t.is(scaleA(1), 2)
  t.is(scaleB(1), 3)
  const pool = makePool(t, { processes: 1, modules: [fixtureUrl('pool-scale-a.mjs'), fixtureUrl('pool-scale-b.mjs')] })
  t.is(await within(W, pool.apply(scaleA, [1]), 'apply A'), 2)
  t.is(await within(W, pool.apply(scaleB, [1]), 'apply B'), 3, 'module B’s scale, not module A’s')
  t.deepEqual(await within(W, pool.map(scaleB, [1, 2]), 'map B'), [3, 6])
  // a local function with the very same text is none of the exports: it is sent by source, and
  // its outer FACTOR is missing there
  const FACTOR = 5
  // biome-ignore format: the text must match the fixtures' exactly
  function scale(x) {
  return x * FACTOR
}
  t.is(scale(1), 5)
  const local = await within(W, settle(pool.apply(scale, [1])), 'apply of the local twin')
  t.true(
    local.error instanceof TargetError,
    `expected TargetError (FACTOR is not defined in the worker), got ${local.error ?? local.value}`,
  )
})
