// The Pool over BullMQ with a real Redis (started here, on a Unix socket, no persistence) and
// real `multiproc worker` hosts: values and errors across, large results, what Redis keeps, and
// the faults: a worker process or a whole host SIGKILLed mid-task, timeouts and aborts that
// kill the remote process, chunks given up while still waiting in Redis, Redis restarting or
// gone, bad arguments, draining on SIGTERM. The pool suites themselves run over this backend
// through `npm run test:bullmq`.
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'
import { Redis } from 'ioredis'
import { bullmq } from 'multiproc/bullmq'
import {
  AbortError,
  BrokerError,
  Pool,
  Queue,
  RemoteError,
  SerializationError,
  TargetError,
  TimeoutError,
  WorkerExitedError,
} from '../dist/index.js'
import { checkNoLeaks, isDead, throttled, within } from './helpers.mjs'
import { startRedis, startWorkerHost, stopWorkerHost } from './redis-server.mjs'

const test = throttled(avaTest)

const TASKS = new URL('./fixtures/bullmq-tasks.mjs', import.meta.url)
const tasks = await import(TASKS)
const QUEUE = 'bullmq-test'
/** Short lock and stall intervals: a job whose host died runs again within about LOCK + 2 × STALL. */
const LOCK_MS = 2000
const STALL_MS = 1000
const STALL_BOUND_MS = LOCK_MS + 2 * STALL_MS
const HOST_ARGS = ['--lock-duration', String(LOCK_MS), '--stalled-interval', String(STALL_MS)]
const W = 60_000

let redis
const hosts = []
let scratch

test.before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'multiproc-bullmq-test-'))
  redis = await startRedis()
  for (let i = 0; i < 2; i++) hosts.push(await startWorkerHost({ url: redis.url, queue: QUEUE, modules: [TASKS], args: HOST_ARGS }))
})

// Registered before the leak check, so that it runs first.
test.after.always('stop the worker hosts and Redis', async () => {
  for (const h of hosts) await stopWorkerHost(h)
  await redis?.stop()
  if (scratch) rmSync(scratch, { recursive: true, force: true })
})

checkNoLeaks(test, { graceMs: 10_000 })

let files = 0
/** A fresh path in the scratch directory (tasks write their pid and host there). */
function scratchFile() {
  return join(scratch, `f${files++}`)
}

/** The `{ pid, host }` a task wrote to `file`, once it has. */
async function written(file, what) {
  return within(
    W,
    (async () => {
      for (;;) {
        if (existsSync(file)) {
          const text = readFileSync(file, 'utf8')
          if (text) return JSON.parse(text)
        }
        await new Promise((r) => setTimeout(r, 20))
      }
    })(),
    what,
  )
}

async function until(cond, ms, what) {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function backend(opts = {}) {
  return bullmq({ connection: redis.url, queue: QUEUE, ...opts })
}

/** A pool on the BullMQ backend, terminated when the test ends. */
function makePool(t, { backendOptions, url, ...opts } = {}) {
  const b = url ? bullmq({ connection: url, queue: QUEUE, ...backendOptions }) : backend(backendOptions)
  const pool = new Pool({ processes: 2, backend: b, modules: [TASKS], ...opts })
  t.teardown(async () => {
    pool.terminate()
    await within(10_000, pool.join(), 'teardown join')
  })
  return pool
}

async function settle(p) {
  try {
    return { value: await p }
  } catch (error) {
    return { error }
  }
}

/** Hosts of their own, on their own queue (a test that kills hosts leaves the shared ones alone). */
async function ownHosts(t, n, { queue, url = redis.url, processes = 1 } = {}) {
  const own = []
  t.teardown(async () => {
    for (const h of own) await stopWorkerHost(h, 'SIGKILL')
  })
  for (let i = 0; i < n; i++) own.push(await startWorkerHost({ url, queue, modules: [TASKS], processes, args: HOST_ARGS }))
  return own
}

function redisClient(t, socket = redis.socket) {
  const c = new Redis(socket)
  t.teardown(() => c.disconnect())
  return c
}

// ---- the API over remote workers ----

test('apply, map, starmap, imap and imapUnordered run on the remote workers, results in input order', async (t) => {
  const pool = makePool(t)
  t.is(await within(W, pool.apply(tasks.square, [7]), 'apply'), 49)
  const xs = Array.from({ length: 1000 }, (_, i) => i)
  t.deepEqual(
    await within(W, pool.map(tasks.square, xs), 'map'),
    xs.map((x) => x * x),
  )
  t.deepEqual(await within(W, pool.map(tasks.slow, [3, 1, 2], { chunksize: 1 }), 'map of async tasks'), [30, 10, 20])
  t.deepEqual(
    await within(
      W,
      pool.starmap(
        tasks.slow,
        [
          [1, 30],
          [2, 1],
          [3, 10],
        ],
        { chunksize: 1 },
      ),
      'starmap',
    ),
    [10, 20, 30],
  )
  const ordered = []
  for await (const v of pool.imap(tasks.square, xs.slice(0, 50), { chunksize: 4 })) ordered.push(v)
  t.deepEqual(
    ordered,
    xs.slice(0, 50).map((x) => x * x),
  )
  const unordered = []
  for await (const v of pool.imapUnordered(tasks.square, xs.slice(0, 50))) unordered.push(v)
  t.deepEqual(
    unordered.sort((a, b) => a - b),
    xs.slice(0, 50).map((x) => x * x),
  )
  const seen = []
  await within(W, pool.map(tasks.square, xs.slice(0, 64), { chunksize: 8, onProgress: (p) => seen.push(p.done) }), 'progress')
  t.deepEqual(seen, [8, 16, 24, 32, 40, 48, 56, 64])
  const r = pool.applyAsync(tasks.square, [9])
  t.is(await within(W, r.get(), 'AsyncResult'), 81)
  t.true(r.ready() && r.successful())
})

test("map's default chunk size has the backend's floor (8 tasks a job)", async (t) => {
  const pool = makePool(t)
  const jobs = new Set((await within(W, pool.map(tasks.where, Array.from({ length: 20 })), 'map')).map((w) => JSON.stringify(w)))
  // 20 tasks in jobs of at least 8: at most 3 jobs, so at most 3 processes ran them.
  t.true(jobs.size <= 3, `${jobs.size} processes`)
})

test('values travel in the structured-clone format both ways (not JSON)', async (t) => {
  const pool = makePool(t)
  const cyclic = { name: 'loop' }
  cyclic.self = cyclic
  const value = {
    map: new Map([[1, { a: 2n ** 70n }]]),
    set: new Set(['x', 'y']),
    date: new Date(1_700_000_000_000),
    big: -(2n ** 64n),
    buf: Buffer.from([1, 2, 3]),
    f64: new Float64Array([1.5, Number.NaN, -0]),
    undef: undefined,
    regexp: /ab+c/gi,
    cyclic,
  }
  const back = await within(W, pool.apply(tasks.echo, [value]), 'echo')
  t.true(back.map instanceof Map && back.map.get(1).a === 2n ** 70n)
  t.deepEqual([...back.set], ['x', 'y'])
  t.true(back.date instanceof Date && back.date.getTime() === 1_700_000_000_000)
  t.is(back.big, -(2n ** 64n))
  t.deepEqual([...back.buf], [1, 2, 3])
  t.true(back.f64 instanceof Float64Array && Object.is(back.f64[2], -0) && Number.isNaN(back.f64[1]))
  t.true('undef' in back)
  t.true(back.regexp instanceof RegExp && back.regexp.flags === 'gi')
  t.is(back.cyclic.self, back.cyclic)
})

test('an error thrown by a task is a RemoteError with the class, message, stack, code and cause', async (t) => {
  const pool = makePool(t)
  const { error } = await settle(pool.apply(tasks.fail, ['m1']))
  t.true(error instanceof RemoteError, `${error}`)
  t.is(error.code, 'ERR_REMOTE')
  t.is(error.cause.name, 'QuotaError')
  t.is(error.cause.message, 'over quota m1')
  t.is(error.cause.code, 'E_QUOTA')
  t.true(error.cause.stack.includes('bullmq-tasks.mjs'), error.cause.stack)
  t.true(error.cause.cause instanceof RangeError)
  t.is(error.cause.cause.code, 'E_LIMIT')
  t.true(error.stack.includes('[remote]'))
})

test('an unserialisable argument or result is a SerializationError, a handle a TypeError ERR_NOT_REMOTE; the pool goes on', async (t) => {
  const pool = makePool(t)
  const arg = await settle(pool.apply(tasks.echo, [() => 1]))
  t.true(arg.error instanceof SerializationError, `${arg.error}`)
  const result = await settle(pool.apply(tasks.unclonable, []))
  t.true(result.error instanceof SerializationError, `${result.error}`)
  const q = new Queue()
  t.teardown(() => q.close())
  const handle = await settle(pool.apply(tasks.echo, [{ inside: [q] }]))
  t.true(handle.error instanceof TypeError, `${handle.error}`)
  t.is(handle.error.code, 'ERR_NOT_REMOTE')
  const mapped = await settle(pool.map(tasks.echo, [1, 2, q]))
  t.is(mapped.error?.code, 'ERR_NOT_REMOTE')
  t.is(await within(W, pool.apply(tasks.square, [5]), 'after'), 25)
})

test('a custom serializer is refused at construction with ERR_NOT_REMOTE; bad backend options are TypeError / RangeError', async (t) => {
  const { jsonSerializer } = await import('./fixtures/pool-serializer.mjs')
  const err = t.throws(
    () =>
      new Pool({
        processes: 1,
        backend: backend(),
        serializer: jsonSerializer,
        modules: [new URL('./fixtures/pool-serializer.mjs', import.meta.url)],
      }),
  )
  t.is(err.code, 'ERR_NOT_REMOTE')
  t.is(t.throws(() => bullmq({ connection: 42, queue: 'q' }), { instanceOf: TypeError }).code, 'ERR_INVALID_ARG_TYPE')
  t.is(t.throws(() => bullmq({ connection: 'http://x', queue: 'q' }), { instanceOf: RangeError }).code, 'ERR_OUT_OF_RANGE')
  t.throws(() => bullmq({ connection: redis.url, queue: 'a:b' }), { instanceOf: RangeError })
  t.throws(() => bullmq({ connection: redis.url }), { instanceOf: TypeError })
  t.throws(() => bullmq({ connection: redis.url, queue: 'q', minChunksize: 0 }), { instanceOf: RangeError })
  t.throws(() => bullmq({ connection: redis.url, queue: 'q', reconnectTimeout: -1 }), { instanceOf: RangeError })
  t.throws(() => bullmq(null), { instanceOf: TypeError })
  // The hosts start their processes: options for processes the pool would start are refused.
  for (const opts of [{ execArgv: [] }, { env: { A: '1' } }, { maxOldSpaceSize: 256 }]) {
    t.is(t.throws(() => new Pool({ processes: 1, backend: backend(), ...opts }), { instanceOf: TypeError }).code, 'ERR_UNSUPPORTED_OPTION')
  }
})

test('a 10 MiB result arrives whole; once delivered, neither its reply nor its job is left in Redis', async (t) => {
  const pool = makePool(t)
  const size = 10 * 1024 * 1024
  const out = await within(W, pool.apply(tasks.bytes, [size]), '10 MiB result')
  t.true(Buffer.isBuffer(out))
  t.is(out.length, size)
  let bad = -1
  for (let i = 0; i < size; i += 4093) if (out[i] !== i % 251) bad = i
  t.is(bad, -1)
  t.is(out[size - 1], (size - 1) % 251)
  const big = await within(W, pool.apply(tasks.echo, [Buffer.alloc(size, 7)]), '10 MiB argument')
  t.is(big.length, size)
  const c = redisClient(t)
  await until(async () => (await c.keys(`bull:${QUEUE}:mp.*`)).length === 0, W, 'the jobs removed')
  t.deepEqual(await c.keys(`bull:${QUEUE}:multiproc:replies:*`), [])
})

test('a host runs only what it may: functions sent as source and unlisted modules are a TargetError', async (t) => {
  const pool = makePool(t, { modules: [] })
  const bySource = await settle(pool.apply((x) => x + 1, [1]))
  t.true(bySource.error instanceof TargetError, `${bySource.error}`)
  t.regex(bySource.error.message, /--allow-source/)
  const unlisted = await settle(pool.apply({ module: new URL('./fixtures/pool-tasks.mjs', import.meta.url), name: 'square' }, [3]))
  t.true(unlisted.error instanceof TargetError, `${unlisted.error}`)
  t.regex(unlisted.error.message, /--modules/)
  t.is(await within(W, pool.apply({ module: TASKS, name: 'square' }, [3]), 'a listed module'), 9)
})

// ---- faults ----

test.serial('a worker process SIGKILLed mid-task: its chunk runs again on another process and resolves', async (t) => {
  const pool = makePool(t)
  const file = scratchFile()
  const call = pool.apply(tasks.holdOnce, [file, 60_000])
  const first = await written(file, 'the task starting')
  process.kill(first.pid, 'SIGKILL')
  const begun = performance.now()
  const r = await within(W, call, 'the retried task')
  t.log(`retried and answered ${(performance.now() - begun).toFixed(0)} ms after the kill`)
  t.true(r.again)
  t.not(r.pid, first.pid)
})

test.serial('a task whose process dies on both tries rejects with WorkerExitedError (SIGKILL)', async (t) => {
  const pool = makePool(t)
  const { error } = await within(W, settle(pool.apply(tasks.die, [])), 'the task')
  t.true(error instanceof WorkerExitedError, `${error}`)
  t.is(error.signal, 'SIGKILL')
  t.is(error.exitCode, null)
  t.is(await within(W, pool.apply(tasks.square, [4]), 'after'), 16)
})

test.serial('a worker host SIGKILLed while it holds a task: another host runs it, within the stall bound', async (t) => {
  const queue = 'bullmq-test-host-kill'
  const own = await ownHosts(t, 2, { queue })
  const pool = new Pool({ processes: 1, backend: bullmq({ connection: redis.url, queue }), modules: [TASKS] })
  t.teardown(() => pool.terminate())
  const file = scratchFile()
  const call = pool.apply(tasks.holdOnce, [file, 60_000])
  const first = await written(file, 'the task starting')
  const victim = own.find((h) => h.pid === first.host)
  t.truthy(victim, 'the task runs on one of the hosts')
  victim.kill('SIGKILL')
  const begun = performance.now()
  const r = await within(W, call, 'the task on the other host')
  const ms = performance.now() - begun
  t.log(`run again ${ms.toFixed(0)} ms after the host was killed (stall bound ${STALL_BOUND_MS} ms)`)
  t.true(r.again)
  t.not(r.host, first.host)
  await until(() => isDead(first.pid), 10_000, "the killed host's pool process dying with it")
})

test.serial('a task whose hosts die on both tries rejects with WorkerExitedError', async (t) => {
  const queue = 'bullmq-test-two-stalls'
  const own = await ownHosts(t, 3, { queue })
  const pool = new Pool({ processes: 1, backend: bullmq({ connection: redis.url, queue }), modules: [TASKS] })
  t.teardown(() => pool.terminate())
  const file = scratchFile()
  const call = settle(pool.apply(tasks.hold, [file, 60_000]))
  const first = await written(file, 'the first try starting')
  own.find((h) => h.pid === first.host).kill('SIGKILL')
  rmSync(file)
  const second = await written(file, 'the second try starting')
  t.not(second.host, first.host)
  own.find((h) => h.pid === second.host).kill('SIGKILL')
  const begun = performance.now()
  const { error } = await within(W, call, 'the task')
  t.log(`rejected ${(performance.now() - begun).toFixed(0)} ms after the second host was killed (stall bound ${STALL_BOUND_MS} ms)`)
  t.true(error instanceof WorkerExitedError, `${error}`)
  t.regex(error.message, /lock/)
})

test.serial('apply with a timeout on a remote worker: TimeoutError, and the process running it is killed there', async (t) => {
  const pool = makePool(t)
  const file = scratchFile()
  const { error } = await within(W, settle(pool.apply(tasks.spin, [file], { timeout: 1500 })), 'the timed call')
  t.true(error instanceof TimeoutError, `${error}`)
  const { pid } = await written(file, 'the task starting')
  await until(() => isDead(pid), 15_000, 'the spinning process killed on its host')
  t.is(await within(W, pool.apply(tasks.square, [6]), 'after'), 36)
})

test.serial('an abort: AbortError, and the remote process running the task is killed', async (t) => {
  const pool = makePool(t)
  const file = scratchFile()
  const ac = new AbortController()
  const call = settle(pool.map(tasks.spin, [file], { signal: ac.signal }))
  const { pid } = await written(file, 'the task starting')
  ac.abort(new Error('enough'))
  const { error } = await within(W, call, 'the aborted call')
  t.true(error instanceof AbortError, `${error}`)
  t.is(error.code, 'ABORT_ERR')
  await until(() => isDead(pid), 15_000, 'the spinning process killed on its host')
})

test.serial('taskTimeout over remote workers: the task over it is a TimeoutError, its process killed', async (t) => {
  const pool = makePool(t, { taskTimeout: 1500 })
  const file = scratchFile()
  const [slowOne, fast] = await within(
    W,
    Promise.all([settle(pool.apply(tasks.spin, [file])), settle(pool.apply(tasks.square, [3]))]),
    'calls',
  )
  t.true(slowOne.error instanceof TimeoutError, `${slowOne.error}`)
  t.is(fast.value, 9)
  const { pid } = await written(file, 'the task starting')
  await until(() => isDead(pid), 15_000, 'the spinning process killed on its host')
})

test.serial('a timeout or abort while the chunks still wait in Redis: they reject and their jobs are removed', async (t) => {
  const queue = 'bullmq-test-nobody'
  const pool = new Pool({ processes: 2, backend: bullmq({ connection: redis.url, queue }), modules: [TASKS] })
  t.teardown(() => pool.terminate())
  const timed = await within(W, settle(pool.apply(tasks.square, [2], { timeout: 500 })), 'the timed call')
  t.true(timed.error instanceof TimeoutError, `${timed.error}`)
  const ac = new AbortController()
  const aborted = settle(pool.map(tasks.square, [1, 2, 3, 4], { chunksize: 1, signal: ac.signal }))
  const c = redisClient(t)
  await until(async () => (await c.llen(`bull:${queue}:wait`)) > 0, W, 'the jobs waiting')
  ac.abort()
  t.true((await within(W, aborted, 'the aborted call')).error instanceof AbortError)
  await until(async () => (await c.llen(`bull:${queue}:wait`)) === 0, W, 'the waiting jobs removed')
  t.deepEqual(await c.keys(`bull:${queue}:mp.*`), [])
})

test.serial(
  'Redis restarting mid-run (losing everything): the pool reconnects, re-adds what was lost, and the map completes',
  async (t) => {
    const own = await startRedis()
    t.teardown(() => own.stop())
    const queue = 'bullmq-test-restart'
    await ownHosts(t, 2, { queue, url: own.url, processes: 2 })
    const pool = new Pool({ processes: 4, backend: bullmq({ connection: own.url, queue }), modules: [TASKS] })
    t.teardown(() => pool.terminate())
    const xs = Array.from({ length: 60 }, (_, i) => i)
    let done = 0
    const star = pool.starmap(
      tasks.slow,
      xs.map((x) => [x, 100]),
      { chunksize: 1, onProgress: (p) => (done = p.done) },
    )
    await until(() => done > 0, W, 'the first results')
    await own.restart(300)
    const out = await within(120_000, star, 'the map across the restart')
    t.deepEqual(
      out,
      xs.map((x) => x * 10),
    )
  },
)

test.serial('Redis gone for good: calls in flight and new ones reject with BrokerError after reconnectTimeout, never hang', async (t) => {
  const own = await startRedis()
  t.teardown(() => own.stop())
  const pool = new Pool({
    processes: 1,
    backend: bullmq({ connection: own.url, queue: 'bullmq-test-gone', reconnectTimeout: 1500 }),
    modules: [TASKS],
  })
  t.teardown(() => pool.terminate())
  // Nobody serves this queue: the call waits in Redis, then Redis goes.
  const waiting = settle(pool.apply(tasks.square, [2]))
  await new Promise((r) => setTimeout(r, 300))
  await own.stop()
  const { error } = await within(W, waiting, 'the call in flight')
  t.true(error instanceof BrokerError, `${error}`)
  t.is(error.code, 'ERR_BROKER')
  const later = await within(W, settle(pool.apply(tasks.square, [3])), 'a later call')
  t.true(later.error instanceof BrokerError, `${later.error}`)
})

test.serial('SIGTERM or SIGINT on a host drains it: the running task finishes, then the host exits 0', async (t) => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    const queue = `bullmq-test-drain-${signal}`
    const [host] = await ownHosts(t, 1, { queue })
    const pool = new Pool({ processes: 1, backend: bullmq({ connection: redis.url, queue }), modules: [TASKS] })
    t.teardown(() => pool.terminate())
    const file = scratchFile()
    const call = pool.apply(tasks.hold, [file, 1500, 42])
    await written(file, 'the task starting')
    const stopped = stopWorkerHost(host, signal)
    t.is(await within(W, call, 'the task'), 42, signal)
    t.deepEqual(await within(W, stopped, 'the host exiting'), { code: 0, signal: null }, `${signal}: ${host.output}`)
  }
})

// ---- packaging ----

test('the main entry works without bullmq and ioredis installed; multiproc/bullmq then says what to install', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dir = mkdtempSync(join(tmpdir(), 'multiproc-no-peers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pkg = join(dir, 'node_modules', 'multiproc')
  mkdirSync(pkg, { recursive: true })
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true })
  cpSync(join(root, 'native'), join(pkg, 'native'), { recursive: true })
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'))
  writeFileSync(
    join(dir, 'main.mjs'),
    `import { Pool, Queue } from 'multiproc'
const q = new Queue(); q.putNowait(1); const got = q.getNowait(); q.close()
const pool = new Pool({ processes: 1 }); const r = await pool.apply((x) => x * 2, [21]); pool.close(); await pool.join()
let peer = null
try { (await import('multiproc/bullmq')).bullmq({ connection: 'redis://127.0.0.1:1', queue: 'q' }) } catch (e) { peer = { code: e.code, message: e.message } }
console.log(JSON.stringify({ got, r, peer }))`,
  )
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, [join(dir, 'main.mjs')], { cwd: dir, timeout: W }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  )
  const { got, r, peer } = JSON.parse(out)
  t.is(got, 1)
  t.is(r, 42)
  t.is(peer?.code, 'ERR_MISSING_PEER')
  t.regex(peer.message, /npm i bullmq ioredis/)
})

test('multiproc/bullmq loads through require() as well', (t) => {
  const require = createRequire(import.meta.url)
  const cjs = require('multiproc/bullmq')
  t.is(typeof cjs.bullmq, 'function')
  t.is(cjs.bullmq({ connection: redis.url, queue: 'q' }).name, 'bullmq')
})
