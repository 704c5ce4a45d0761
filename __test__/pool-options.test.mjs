// Pool options that shape the workers and the backlog (API.md, "Pool"): `execArgv`, `env` and
// `maxOldSpaceSize` reach every worker, replacements included (checked inside the workers); a
// task beyond the heap limit rejects with WorkerExitedError while the pool heals; `maxQueue`
// refuses the call beyond the limit with `Full`, loses nothing already accepted, and `'drain'`
// fires when the backlog has emptied. A backend that does not start its workers refuses the
// process options instead of ignoring them.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import { Full, Pool, WorkerExitedError } from '../dist/index.js'
import { narrow } from './fixtures/pool-narrow-backend.mjs'
import { logRun, logRunArgs, workerInfo } from './fixtures/pool-options-tasks.mjs'
import { checkNoLeaks, fixtureUrl, throttled, within } from './helpers.mjs'
import { createPool, needs } from './pool-backend.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const tasks = fixtureUrl('pool-options-tasks.mjs')
const W = 30_000
const MIB = 1 << 20
const INDEX = new URL('../dist/index.js', import.meta.url).href

/** Tests of options that only a backend starting its own worker processes honours. */
const configuring = needs(test, 'configuresProcesses')

/** A pool that knows the fixture module, terminated when the test ends. */
function makePool(t, opts = {}) {
  const pool = createPool({ processes: 1, modules: [tasks], ...opts })
  t.teardown(async () => {
    pool.terminate()
    await within(W, pool.join(), 'teardown join').catch(() => {})
  })
  return pool
}

/** A log file in a directory of its own, removed when the test ends. */
function logFile(t) {
  const dir = mkdtempSync(join(tmpdir(), 'multiproc-pool-options-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'runs.log')
}

const runsIn = (log) => {
  try {
    return readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** Settles `promise` to `{ value }` or `{ error }`. */
const settle = (promise) =>
  Promise.resolve(promise).then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

/** Runs `node ...args` (with core dumps off) in its own process group; kills the group after `ms`. */
function run(args, { ms = 60_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', process.execPath, ...args], { detached: true })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {}
    }, ms)
    child.on('close', (code) => {
      clearTimeout(timer)
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {}
      resolve({ code, stdout, stderr, timedOut })
    })
  })
}

// ---- execArgv, env, maxOldSpaceSize ----

configuring('execArgv reaches every worker, replacements included', async (t) => {
  // maxTasksPerChild: 1 replaces the worker after each task.
  const pool = makePool(t, { execArgv: ['--expose-gc', '--no-warnings'], maxTasksPerChild: 1 })
  const infos = []
  for (let i = 0; i < 3; i++) infos.push(await within(W, pool.apply(workerInfo), 'apply'))
  t.is(new Set(infos.map((i) => i.pid)).size, 3, 'each task ran in a fresh worker')
  for (const info of infos) {
    t.deepEqual(info.execArgv, ['--expose-gc', '--no-warnings'])
    t.is(info.gc, 'function', '--expose-gc took effect')
  }
})

configuring('env reaches every worker, added to the parent’s environment', async (t) => {
  const pool = makePool(t, { env: { MULTIPROC_POOL_MARK: 'marked', MULTIPROC_EMPTY: '' }, maxTasksPerChild: 1 })
  for (let i = 0; i < 2; i++) {
    const info = await within(W, pool.apply(workerInfo, ['MULTIPROC_POOL_MARK', 'MULTIPROC_EMPTY', 'PATH']), 'apply')
    t.deepEqual(info.env, { MULTIPROC_POOL_MARK: 'marked', MULTIPROC_EMPTY: '', PATH: process.env.PATH ?? null })
  }
  t.is(process.env.MULTIPROC_POOL_MARK, undefined, 'the parent’s environment is untouched')
})

configuring('maxOldSpaceSize sets each worker’s V8 heap limit', async (t) => {
  const limited = makePool(t, { maxOldSpaceSize: 96, maxTasksPerChild: 1 })
  const plain = makePool(t)
  const [a, b] = [await within(W, limited.apply(workerInfo), 'apply'), await within(W, limited.apply(workerInfo), 'apply')]
  const unlimited = await within(W, plain.apply(workerInfo), 'apply')
  t.not(a.pid, b.pid)
  for (const info of [a, b]) {
    // heap_size_limit is the old generation plus the young one, which V8 sizes from the old
    // one: +48 MiB on Node 20, +96 MiB on Node 26 for 96 MiB.
    t.true(info.heapLimit >= 96 * MIB && info.heapLimit <= 3 * 96 * MIB + 64 * MIB, `heap_size_limit ${info.heapLimit / MIB} MiB`)
    t.true(info.execArgv.includes('--max-old-space-size=96'))
  }
  t.true(unlimited.heapLimit > a.heapLimit, 'a pool without the option keeps the default limit')
})

configuring(
  'maxOldSpaceSize replaces a heap limit the workers would inherit; the inherited flags are filtered as for a Process',
  async (t) => {
    // The parent runs an eval'd program with its own heap limit: the workers get the pool's
    // limit instead, and neither -e nor --input-type.
    const program = `
    const { Pool } = await import(${JSON.stringify(INDEX)})
    const pool = new Pool({ processes: 1, maxOldSpaceSize: 80 })
    const [execArgv, gc] = await pool.apply(() => [process.execArgv, typeof globalThis.gc])
    console.log(JSON.stringify({ execArgv, gc }))
    pool.close()
    await pool.join()
  `
    const r = await run(['--expose-gc', '--max-old-space-size=300', '--input-type=module', '-e', program])
    t.false(r.timedOut, r.stderr)
    t.is(r.code, 0, r.stderr)
    t.deepEqual(JSON.parse(r.stdout.trim()), { execArgv: ['--expose-gc', '--max-old-space-size=80'], gc: 'function' })
  },
)

configuring('a task beyond the heap limit rejects with WorkerExitedError and the pool heals', async (t) => {
  const r = await run([fileURLToPath(fixtureUrl('pool-heap-limit.mjs'))])
  t.false(r.timedOut, r.stderr.slice(-3000))
  t.is(r.code, 0, r.stderr.slice(-3000))
  const out = JSON.parse(r.stdout.trim().split('\n').pop())
  t.true(out.error.isWorkerExited, JSON.stringify(out.error))
  t.is(out.error.code, new WorkerExitedError('', null, null).code)
  t.true(out.error.signal !== null || out.error.exitCode !== 0, JSON.stringify(out.error))
  if (out.error.signal === 'SIGABRT' || out.error.signal === 'SIGTRAP')
    t.regex(out.error.message, /runs out of heap.*64 MiB, maxOldSpaceSize/)
  t.regex(r.stderr, /out of memory|\bOOM\b/i, 'V8 reported the heap limit')
  // The task queued behind it and the next one ran on the replacement, with the same limit.
  t.not(out.after.pid, out.before.pid)
  t.is(out.next.pid, out.after.pid)
  for (const info of [out.before, out.after])
    t.true(info.heapLimit <= 3 * out.mib * MIB + 64 * MIB, `heap_size_limit ${info.heapLimit / MIB} MiB`)
})

configuring('an execArgv the workers cannot start with breaks the pool with WorkerExitedError, no hang', async (t) => {
  const pool = makePool(t, { execArgv: ['--no-such-node-flag'] })
  const r = await within(W, settle(pool.apply(workerInfo)), 'apply')
  t.true(r.error instanceof WorkerExitedError, String(r.error))
  t.regex(r.error.message, /exited before they were ready/)
})

test('execArgv flags that would replace the workers’ program are refused, as for a Process', (t) => {
  for (const flag of [
    '-e',
    '--eval=1',
    '-p',
    '--print',
    '--test',
    '--watch',
    '-i',
    '--inspect=0',
    '--inspect-brk',
    '--input-type=module',
  ]) {
    const err = t.throws(() => new Pool({ processes: 1, execArgv: [flag] }), { instanceOf: RangeError }, flag)
    t.is(err?.code, 'ERR_INVALID_ARG_VALUE')
  }
})

test('a backend that does not start its workers refuses execArgv, env and maxOldSpaceSize', (t) => {
  for (const [name, value] of [
    ['execArgv', ['--expose-gc']],
    ['env', { A: 'b' }],
    ['maxOldSpaceSize', 128],
  ]) {
    const err = t.throws(() => new Pool({ backend: narrow, processes: 1, [name]: value }), { instanceOf: TypeError })
    t.is(err?.code, 'ERR_UNSUPPORTED_OPTION')
    t.true(err?.message.includes(`the narrow backend cannot honour ${name}`), err?.message)
  }
})

// ---- maxQueue and 'drain' ----

test("maxQueue: 'auto' is processes squared; no limit by default", async (t) => {
  const auto = makePool(t, { processes: 2, maxQueue: 'auto' })
  t.is(auto.maxQueue, 4)
  const plain = makePool(t)
  t.is(plain.maxQueue, Number.POSITIVE_INFINITY)
  t.false(plain.needsDrain)
})

test('maxQueue: calls beyond the limit are refused with Full, nothing accepted is lost, and drain fires once the backlog empties', async (t) => {
  const log = logFile(t)
  const pool = makePool(t, { maxQueue: 2 })
  const drained = once(pool, 'drain')
  const calls = []
  for (let i = 0; i < 12; i++) calls.push({ i, outcome: settle(pool.apply(logRun, [log, i, 150])) })
  // Right after the flood: the backlog is at the limit and the pool asks producers to hold back.
  t.is(pool.backlog, 2)
  t.true(pool.needsDrain)
  const outcomes = await within(W, Promise.all(calls.map(async (c) => ({ i: c.i, ...(await c.outcome) }))), 'the calls')
  const accepted = outcomes.filter((o) => !('error' in o))
  const refused = outcomes.filter((o) => 'error' in o)
  t.true(accepted.length >= 3, `${accepted.length} accepted: the running call and the two waiting`)
  t.true(refused.length > 0, 'some calls were refused')
  for (const o of refused) {
    t.true(o.error instanceof Full, String(o.error))
    t.is(o.error.code, 'ERR_FULL')
    t.regex(o.error.message, /maxQueue/)
  }
  // The accepted calls are the first ones made, each ran once; the refused ones never ran.
  t.deepEqual(
    accepted.map((o) => o.i),
    accepted.map((_, k) => k),
  )
  for (const o of accepted) t.is(o.value, o.i)
  t.deepEqual(
    runsIn(log).sort((a, b) => a - b),
    accepted.map((o) => o.i),
  )
  await within(W, drained, "'drain'")
  t.is(pool.backlog, 0)
  t.false(pool.needsDrain)
  // After the drain the pool takes calls again.
  t.is(await within(W, pool.apply(logRun, [log, 100]), 'apply after drain'), 100)
})

test("'drain' is emitted when the backlog empties, not when it merely falls below the limit", async (t) => {
  const log = logFile(t)
  const pool = makePool(t, { maxQueue: 3 })
  const backlogs = []
  pool.on('drain', () => backlogs.push(pool.backlog))
  const accepted = []
  for (let i = 0; i < 10; i++) accepted.push(settle(pool.apply(logRun, [log, i, 100])))
  const outcomes = await within(W, Promise.all(accepted), 'the calls')
  t.true(outcomes.some((o) => 'error' in o))
  await within(W, new Promise((resolve) => setImmediate(resolve)), 'a turn')
  t.deepEqual(backlogs, [0], "one 'drain', with nothing left waiting")
})

test('maxQueue counts calls, not items: a map is one call, and an apply behind it waits or is refused', async (t) => {
  const log = logFile(t)
  const pool = makePool(t, { maxQueue: 1 })
  // One map of 40 items: accepted whatever its size, and waiting for the worker most of its run.
  const items = Array.from({ length: 40 }, (_, i) => [log, i, 20])
  const mapped = pool.map(logRunArgs, items, { chunksize: 1 })
  t.is(pool.backlog, 1)
  const refused = await within(W, settle(pool.apply(logRun, [log, 1000])), 'apply behind the map')
  t.true(refused.error instanceof Full, String(refused.error))
  const lazy = await within(
    W,
    settle(
      pool.map(
        logRunArgs,
        (function* () {
          yield [log, 2000]
        })(),
      ),
    ),
    'a map of a generator behind the map',
  )
  t.true(lazy.error instanceof Full, String(lazy.error))
  const it = pool.imap(logRunArgs, [[log, 3000]])
  const imapRefused = await within(W, settle(it.next()), 'imap next')
  t.true(imapRefused.error instanceof Full, String(imapRefused.error))
  t.deepEqual(
    await within(W, mapped, 'the map'),
    items.map((_, i) => i),
  )
  t.deepEqual(
    runsIn(log).sort((a, b) => a - b),
    items.map((_, i) => i),
    'only the map ran',
  )
})

test('maxQueue: 0 takes a call only when a worker can take it at once; one drain follows the refusals', async (t) => {
  const log = logFile(t)
  const pool = makePool(t, { maxQueue: 0 })
  let drains = 0
  pool.on('drain', () => drains++)
  const outcomes = []
  for (let i = 0; i < 8; i++) outcomes.push(settle(pool.apply(logRun, [log, i, 100])))
  t.true(pool.needsDrain)
  const drained = once(pool, 'drain')
  const settled = await within(W, Promise.all(outcomes), 'the calls')
  const accepted = settled.filter((o) => !('error' in o))
  t.true(accepted.length >= 1)
  t.true(settled.some((o) => o.error instanceof Full))
  t.deepEqual(
    runsIn(log).sort((a, b) => a - b),
    accepted.map((o) => o.value),
  )
  await within(W, drained, "'drain'")
  t.false(pool.needsDrain)
  t.is(await within(W, pool.apply(logRun, [log, 100]), 'apply after drain'), 100)
  // The refusals did not each emit a drain (a producer retrying on it would spin).
  t.is(drains, 1)
})

for (const maxQueue of [0, 1, 3]) {
  test(`a producer that waits for 'drain' while needsDrain is true never sees Full (maxQueue ${maxQueue})`, async (t) => {
    const log = logFile(t)
    const pool = makePool(t, { processes: 2, maxQueue })
    const calls = []
    let waits = 0
    for (let i = 0; i < 40; i++) {
      if (pool.needsDrain) {
        waits++
        await within(W, once(pool, 'drain'), `'drain' before call ${i}`)
      }
      calls.push(pool.apply(logRun, [log, i, 10]))
    }
    const values = await within(W, Promise.all(calls), 'the calls')
    t.deepEqual(
      values,
      calls.map((_, i) => i),
    )
    t.true(waits > 0, 'the producer was held back')
    t.is(runsIn(log).length, 40)
  })
}
