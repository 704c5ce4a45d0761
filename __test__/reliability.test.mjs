// Defects found by attacking the package: programs given with `node -e`/`-p` that start a Pool
// (every worker used to run the program again: a fork bomb), a module that starts a Pool at its
// top level, timeouts beyond what a timer holds, replies the parent cannot decode, a child that
// never runs its target, signal names, and a pool too large for the descriptor limit.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import { Process, ProcessError, ResourceError, SerializationError, WorkerExitedError } from '../dist/index.js'
import { echo, poison, poisonSerializer } from './fixtures/pool-bad-decode.mjs'
import { checkNoLeaks, fixtureUrl, guard, throttled, within } from './helpers.mjs'
import { createPool, needs } from './pool-backend.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

/** Tests that need the workers to be processes of this machine (pids, kills, /proc). */
const local = needs(test, 'localProcesses')

const INDEX = new URL('../dist/index.js', import.meta.url).href

/**
 * Runs `node ...args` in its own process group, killing the whole group after `ms` (a runaway
 * program's descendants included). Resolves with its exit code and output.
 */
function run(args, { ms = 30_000, env = {}, shell = false } = {}) {
  return new Promise((resolve) => {
    const child = shell
      ? spawn('sh', ['-c', args], { detached: true, env: { ...process.env, ...env } })
      : spawn(process.execPath, args, { detached: true, env: { ...process.env, ...env } })
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
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      // Whatever the program left in its group goes too.
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {}
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
}

/** A program that maps with a pool, then reports how many processes each worker started. */
const POOL_PROGRAM = `
const { readdirSync, readFileSync } = await import('node:fs')
const { Pool } = await import(${JSON.stringify(INDEX)})
const kids = (pid) => readdirSync('/proc/' + pid + '/task').flatMap((t) => readFileSync('/proc/' + pid + '/task/' + t + '/children', 'utf8').trim().split(/\\s+/).filter(Boolean))
const pool = new Pool({ processes: 2 })
const out = await pool.map((x) => x * 2, [1, 2, 3])
await new Promise((r) => setTimeout(r, 300))
const grandchildren = pool.workers.flatMap((w) => kids(w.pid)).length
console.log(JSON.stringify({ out, grandchildren }))
pool.terminate()
await pool.join()
`

for (const [title, args] of [
  ['node --input-type=module -e', ['--input-type=module', '-e', POOL_PROGRAM]],
  ['node -e (CommonJS)', ['-e', `(async () => { ${POOL_PROGRAM} })()`]],
  ['node -p', ['-p', `(async () => { ${POOL_PROGRAM} })(), ''`]],
]) {
  local(`a Pool in a program given with ${title} runs once, without recursion`, async (t) => {
    const r = await run(args)
    t.false(r.timedOut, `the program did not finish: ${r.stderr.slice(-2000)}`)
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'))
    t.truthy(line, r.stderr)
    const report = JSON.parse(line)
    t.deepEqual(report.out, [2, 4, 6])
    t.is(report.grandchildren, 0)
  })
}

test('a Process in an eval’d program runs a function sent as source', async (t) => {
  const program = `
    const { Process, Queue } = await import(${JSON.stringify(INDEX)})
    const q = new Queue()
    const p = new Process({ target: async (q, n) => { await q.put(n + 1) }, args: [q, 41] })
    await p.start()
    console.log(JSON.stringify({ got: await q.get({ timeout: 10000 }) }))
    await p.join()
  `
  const r = await run(['--input-type=module', '-e', program])
  t.false(r.timedOut, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(JSON.parse(r.stdout.trim()), { got: 42 })
})

local('a module that starts a Pool at its top level is refused in the worker, not re-run without end', async (t) => {
  const r = await run([fileURLToPath(fixtureUrl('unguarded-pool.mjs'))])
  t.false(r.timedOut, r.stderr.slice(-2000))
  const outcome = JSON.parse(r.stdout.trim().split('\n').pop())
  t.is(outcome.error, 'TargetError')
  t.is(outcome.cause, 'ERR_BOOTSTRAP')
  t.regex(outcome.message, /still starting up/)
  t.regex(outcome.message, /parentProcess\(\)/)
})

test('a module that starts a Process at its top level: the child refuses and exits 1', async (t) => {
  const r = await run([fileURLToPath(fixtureUrl('unguarded-pool.mjs'))], { env: { UNGUARDED_KIND: 'process' } })
  t.false(r.timedOut, r.stderr.slice(-2000))
  t.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()), { exitCode: 1 })
  t.regex(r.stderr, /still starting up/)
})

test('execArgv flags that would replace the target are refused', (t) => {
  for (const flag of ['-e', '--eval=1', '-p', '--test', '--watch', '-i', '--inspect=0', '--input-type=module']) {
    const err = t.throws(() => new Process({ target: () => {}, execArgv: [flag] }), { instanceOf: RangeError })
    t.is(err.code, 'ERR_INVALID_ARG_VALUE')
  }
})

test('start() rejects for a child that never ran its target', async (t) => {
  const p = guard(t, new Process({ target: () => {}, execArgv: ['--no-such-node-flag'] }))
  const err = await within(20_000, t.throwsAsync(p.start(), { instanceOf: ProcessError }), 'start')
  t.regex(err.message, /exited before it started/)
  t.not(p.exitCode, 0)
})

test('join() with a timeout of 2^31 ms or more waits for the child', async (t) => {
  const p = guard(t, new Process({ target: () => new Promise((r) => setTimeout(r, 500)) }))
  await p.start()
  await within(20_000, p.join(1e12), 'join(1e12)')
  t.is(p.exitCode, 0)
  await within(20_000, p.join({ timeout: 2 ** 31 }), 'join(2 ** 31)')
})

test('a result the parent cannot decode rejects its call; the pool goes on and joins', async (t) => {
  const pool = createPool({ processes: 1, serializer: poisonSerializer, modules: [fixtureUrl('pool-bad-decode.mjs')] })
  t.teardown(() => pool.terminate())
  const err = await within(20_000, t.throwsAsync(pool.apply(poison, []), { instanceOf: SerializationError }), 'apply')
  t.is(err.code, 'ERR_SERIALIZATION')
  t.regex(err.message, /cannot be decoded/)
  t.is(await within(20_000, pool.apply(echo, [7]), 'apply after'), 7)
  const [a, b, c] = await within(
    20_000,
    Promise.allSettled([pool.apply(echo, [1]), pool.apply(poison, []), pool.apply(echo, [3])]),
    'mixed',
  )
  t.deepEqual([a.value, b.reason?.code, c.value], [1, 'ERR_SERIALIZATION', 3])
  pool.close()
  await within(20_000, pool.join(), 'join')
})

test('terminate() then join() after an undecodable result', async (t) => {
  const pool = createPool({ processes: 2, serializer: poisonSerializer, modules: [fixtureUrl('pool-bad-decode.mjs')] })
  const pending = pool.apply(poison, []).catch((e) => e)
  t.true((await within(20_000, pending, 'apply')) instanceof SerializationError)
  pool.terminate()
  await within(20_000, pool.join(), 'join after terminate')
})

test('a worker killed by signal 6 is reported as SIGABRT', async (t) => {
  const pool = createPool({ processes: 1 })
  t.teardown(() => pool.terminate())
  const err = await within(
    20_000,
    t.throwsAsync(
      pool.apply(() => {
        process.stderr.write = () => true // keep the test output free of the abort report
        process.abort()
      }),
      { instanceOf: WorkerExitedError },
    ),
    'apply',
  )
  t.is(err.signal, 'SIGABRT')
  t.is(
    await within(
      20_000,
      pool.apply((x) => x + 1, [1]),
      'apply after',
    ),
    2,
  )
  pool.close()
  await within(20_000, pool.join(), 'join')
})

local('SIGINT (a Ctrl-C reaching the process group) leaves pool workers and their running task alone', async (t) => {
  const pool = createPool({ processes: 1 })
  t.teardown(() => pool.terminate())
  await within(
    20_000,
    pool.apply((x) => x, [0]),
    'first apply',
  )
  const [worker] = pool.workers
  const running = pool.apply(
    () =>
      new Promise((resolve) => {
        setTimeout(() => resolve(process.pid), 500)
      }),
  )
  await new Promise((r) => setTimeout(r, 100))
  process.kill(worker.pid, 'SIGINT')
  t.is(await within(20_000, running, 'the running task'), worker.pid)
  t.true(worker.isAlive())
  pool.close()
  await within(20_000, pool.join(), 'join')
})

test('processes is bounded', (t) => {
  for (const n of [2 ** 53, 1025, 0, -1, 1.5, Number.NaN]) {
    const err = t.throws(() => createPool({ processes: n }), { instanceOf: RangeError })
    t.is(err.code, 'ERR_OUT_OF_RANGE')
  }
  t.is(t.throws(() => createPool({ processes: '2' }), { instanceOf: TypeError }).code, 'ERR_INVALID_ARG_TYPE')
})

local('a pool too large for the descriptor limit fails with ResourceError and leaves no worker', async (t) => {
  const script = fileURLToPath(fixtureUrl('pool-emfile.mjs'))
  const r = await run(`ulimit -n 96 && exec "${process.execPath}" "${script}"`, { shell: true, ms: 60_000 })
  t.false(r.timedOut, r.stderr.slice(-2000))
  const outcome = JSON.parse(r.stdout.trim().split('\n').pop())
  t.is(outcome.error, ResourceError.name, JSON.stringify(outcome))
  t.is(outcome.code, 'ERR_NO_DESCRIPTORS')
  t.is(outcome.errno, 'EMFILE')
  t.is(outcome.children, 0)
})

test('eval flags do not reach a Process started by an eval’d program (joined, exit 0)', async (t) => {
  const program = `
    const { Process } = await import(${JSON.stringify(INDEX)})
    const p = new Process({ target: () => { if (process.execArgv.some((a) => a === '-e' || a.startsWith('--input-type'))) process.exit(3) } })
    await p.start()
    await p.join()
    console.log(p.exitCode)
  `
  const r = await run(['--input-type=module', '-e', program])
  t.is(r.stdout.trim(), '0', r.stderr)
})
