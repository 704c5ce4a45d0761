// The forkserver start method through the public API, with real processes: every guarantee a
// spawned child gives holds for a forked one (exit codes, stdio, identity, env, daemon death,
// handles, activeChildren), the server dies with its program and is replaced when it dies.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  activeChildren,
  getAllStartMethods,
  getContext,
  getStartMethod,
  InvalidStateError,
  Lock,
  Pool,
  Process,
  Queue,
  setForkserverPreload,
  setStartMethod,
  Value,
} from '../dist/index.js'
import { osParent } from './fixtures/forkserver.mjs'
import { checkNoLeaks, childPids, fixtureUrl, isDead, joined, procStat, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const fixtures = fixtureUrl('forkserver.mjs')
const modules = [fixtures]
const target = (name) => ({ module: fixtures, name })

/** The fork server of this test process (the OS parent of a forked child). */
let serverPid = null

async function describeChild(opts = {}) {
  const q = new Queue()
  const p = new Process({ target: target('describe'), args: [q, 'FORKSERVER_TEST_VAR'], startMethod: 'forkserver', ...opts })
  await within(30000, p.start(), 'start')
  const seen = await within(30000, q.get(), 'the child describing itself')
  await joined(p, 30000)
  q.close()
  return { p, seen }
}

function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return -1
  }
}

/** Runs a fixture program to its end, collecting stdout and stderr. */
function runProgram(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('forkserver-program.mjs')), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

// The defaults are what this test is about: in a run whose environment sets the start method
// (npm run test:forkserver) it runs in the other one.
const defaults = process.env.MULTIPROC_START ? test.serial.skip : test.serial

defaults('start methods: the list, the default, setting once, forcing, resetting, bad values', (t) => {
  t.deepEqual(getAllStartMethods(), ['spawn', 'forkserver'])
  t.is(getStartMethod(), 'spawn')
  setStartMethod('spawn')
  const twice = t.throws(() => setStartMethod('forkserver'), { instanceOf: InvalidStateError })
  t.is(twice.code, 'ERR_INVALID_STATE')
  t.is(getStartMethod(), 'spawn')
  setStartMethod('forkserver', { force: true })
  t.is(getStartMethod(), 'forkserver')
  setStartMethod(null, { force: true })
  t.is(getStartMethod(), 'spawn')
  t.throws(() => setStartMethod(null), { instanceOf: TypeError })
  for (const bad of ['fork', 'Spawn', '']) {
    const e = t.throws(() => setStartMethod(bad), { instanceOf: RangeError })
    t.is(e.code, 'ERR_INVALID_ARG_VALUE')
  }
  t.regex(t.throws(() => setStartMethod('fork')).message, /forkserver/)
  for (const bad of [1, {}, undefined]) t.is(t.throws(() => setStartMethod(bad), { instanceOf: TypeError }).code, 'ERR_INVALID_ARG_TYPE')
  t.throws(() => setStartMethod('spawn', { force: 'yes' }), { instanceOf: TypeError })
  t.throws(() => setStartMethod('spawn', 3), { instanceOf: TypeError })
  t.is(
    t.throws(() => new Process({ target: target('describe'), startMethod: 'fork' }), { instanceOf: RangeError }).code,
    'ERR_INVALID_ARG_VALUE',
  )
  t.throws(() => new Process({ target: target('describe'), startMethod: 1 }), { instanceOf: TypeError })
  t.is(t.throws(() => new Pool({ processes: 1, startMethod: 'thread' }), { instanceOf: RangeError }).code, 'ERR_INVALID_ARG_VALUE')
  t.throws(() => setForkserverPreload('x'), { instanceOf: TypeError })
  t.throws(() => setForkserverPreload([3]), { instanceOf: TypeError })
  t.is(t.throws(() => getContext('fork'), { instanceOf: RangeError }).code, 'ERR_INVALID_ARG_VALUE')
  const ctx = getContext('forkserver')
  t.is(ctx, getContext('forkserver'))
  t.is(ctx.getStartMethod(), 'forkserver')
  t.is(getContext().startMethod, 'spawn')
  t.is(ctx.Queue, Queue)
})

test.serial('a forked child: its pid, ppid, parentProcess(), env, cwd, execArgv and a Math.random of its own', async (t) => {
  const a = await describeChild({ env: { FORKSERVER_TEST_VAR: 'forked' } })
  const b = await describeChild()
  serverPid = a.seen.osParent
  t.is(a.seen.pid, a.p.pid)
  t.is(a.seen.ppid, process.pid, 'process.ppid is the requester')
  t.is(a.seen.parent, process.pid, 'parentProcess().pid is the requester')
  t.true(a.seen.parentAlive)
  t.not(a.seen.osParent, process.pid, 'the OS parent is the fork server')
  t.is(procStat(serverPid)?.state !== undefined, true, 'the server runs')
  t.false(childPids().includes(serverPid), 'the server is nobody’s child here')
  t.is(a.seen.env, 'forked')
  t.is(b.seen.env, null)
  t.is(a.seen.cwd, process.cwd())
  t.deepEqual(a.seen.execArgv, process.execArgv)
  t.is(a.seen.argv1, fileURLToPath(new URL('../dist/child/main.js', import.meta.url)))
  t.not(a.seen.random, b.seen.random, 'each forked child draws its own random numbers')
  t.not(a.seen.bytes, b.seen.bytes)
  t.is(a.p.exitCode, 0)
  t.deepEqual(activeChildren(), [])
})

const EXITS = {
  return: 0,
  exit: 7,
  exitCode: 5,
  throw: 1,
  reject: 1,
  uncaught: 1,
  unhandled: 1,
  dry: 0,
  beforeExit: 3,
  sigterm: -15,
  sigkill: -9,
}

test('each way out of a forked child gives the exit code a spawned one gives', async (t) => {
  const run = async (how, startMethod) => {
    const p = new Process({ target: target('exitBy'), args: [how], startMethod })
    await within(30000, p.start(), `start (${how}, ${startMethod})`)
    return joined(p, 30000)
  }
  for (const [how, code] of Object.entries(EXITS)) {
    const [forked, spawned] = await Promise.all([run(how, 'forkserver'), run(how, 'spawn')])
    t.is(forked, code, `forkserver: ${how}`)
    t.is(spawned, code, `spawn: ${how}`)
  }
})

test('terminate() and kill() of a forked child give -SIGTERM and -SIGKILL; isAlive() and activeChildren() follow', async (t) => {
  for (const [stop, code] of [
    ['terminate', -15],
    ['kill', -9],
  ]) {
    const p = new Process({ target: target('sleepForever'), startMethod: 'forkserver' })
    await within(30000, p.start(), 'start')
    t.true(p.isAlive())
    t.true(activeChildren().includes(p))
    p[stop]()
    t.is(await joined(p, 30000), code)
    t.false(p.isAlive())
    t.false(activeChildren().includes(p))
  }
})

test('joinSync on a forked child blocks until it exits', async (t) => {
  const p = new Process({ target: target('exitBy'), args: ['exit'], startMethod: 'forkserver' })
  await within(30000, p.start(), 'start')
  p.joinSync(30000)
  t.is(p.exitCode, 7)
})

test('stdout and stderr of a forked child are the requester’s; a throw prints its stack; exit listeners run', async (t) => {
  const r = await within(60000, runProgram(['output']), 'the program')
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^out:forked$/m)
  t.regex(r.stderr, /^err:forked$/m)
  t.regex(r.stderr, /Error: thrown by the target\n\s+at exitBy/)
  t.regex(r.stderr, /Error: uncaught in a timer\n\s+at/)
  t.regex(r.stdout, /^exit listener ran$/m)
  t.deepEqual(JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{'))), { codes: [0, 1, 1, 0] })
})

test('handles in args: a lock, a shared value and a queue work in a forked child', async (t) => {
  const q = new Queue()
  const lock = new Lock()
  const value = Value('i32', 41)
  const p = new Process({ target: target('useHandles'), args: [q, lock, value], startMethod: 'forkserver' })
  await within(30000, p.start(), 'start')
  t.is(await within(30000, q.get(), 'the child'), 42)
  t.is(await joined(p, 30000), 0)
  t.is(value.value, 42)
  q.close()
})

test('a forked child starts forked children of its own through the same server', async (t) => {
  const q = new Queue()
  const p = new Process({ target: target('startGrandchild'), args: [q, false], startMethod: 'forkserver' })
  await within(30000, p.start(), 'start')
  const r = await within(30000, q.get(), 'the child')
  t.is(await joined(p, 30000), 0)
  t.is(r.seen.pid, r.grandchild)
  t.is(r.seen.ppid, r.me)
  t.is(r.seen.parent, r.me)
  t.is(r.seen.osParent, r.myOsParent, 'the grandchild was forked by the server that forked its parent')
  t.not(r.seen.osParent, r.me)
  t.not(r.myOsParent, process.pid)
  t.is(r.seen.method, 'forkserver', 'the start method is passed down')
  t.is(r.exitCode, 0)
  t.is(r.active, 0)
  q.close()
})

test('a child whose execArgv differs from the server’s is spawned', async (t) => {
  const q = new Queue()
  const p = new Process({
    target: target('describe'),
    args: [q, 'X'],
    startMethod: 'forkserver',
    execArgv: [...process.execArgv, '--stack-size=900'],
  })
  await within(30000, p.start(), 'start')
  const seen = await within(30000, q.get(), 'the child')
  t.is(seen.osParent, process.pid, 'spawned: its OS parent is the requester')
  t.true(seen.execArgv.includes('--stack-size=900'))
  t.is(await joined(p, 30000), 0)
  q.close()
})

test.serial('daemon children of a SIGKILLed requester die, also when the requester is itself a forked child', async (t) => {
  const q = new Queue()
  const middle = new Process({ target: target('startSleepingGrandchild'), args: [q], startMethod: 'forkserver' })
  await within(30000, middle.start(), 'start')
  const r = await within(30000, q.get(), 'the middle child')
  t.false(isDead(r.grandchild))
  middle.kill()
  t.is(await joined(middle, 30000), -9)
  const since = performance.now()
  while (!isDead(r.grandchild) && performance.now() - since < 5000) await delay(20)
  t.true(isDead(r.grandchild), 'the daemon grandchild died with its SIGKILLed requester')
  q.close()
})

test.serial(
  'SIGKILL of a program with busy forked workers: the server and every daemon child are gone within a second; a non-daemon child runs on',
  async (t) => {
    const child = spawn(process.execPath, [fileURLToPath(fixtureUrl('forkserver-program.mjs')), 'busy'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    const line = new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d
        const nl = out.indexOf('\n')
        if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)))
      })
      child.on('exit', () => reject(new Error(`the program exited early: ${out}`)))
    })
    let info
    try {
      info = await within(60000, line, 'the program reporting its workers')
    } catch (err) {
      child.kill('SIGKILL')
      throw err
    }
    const exited = new Promise((resolve) => child.once('exit', resolve))
    t.is(info.workers.length, 2)
    for (const pid of [...info.workers, info.daemon]) t.is(osParent(pid), info.server, `${pid} was forked by the server`)
    child.kill('SIGKILL')
    await within(10000, exited, 'the program dying')
    const since = performance.now()
    const all = [info.server, ...info.workers, info.daemon]
    while (all.some((pid) => !isDead(pid)) && performance.now() - since < 3000) await delay(20)
    const left = all.filter((pid) => !isDead(pid))
    t.log(`server and workers gone ${(performance.now() - since).toFixed(0)} ms after the program's death was seen`)
    for (const pid of left) process.kill(pid, 'SIGKILL')
    t.deepEqual(left, [], 'the server or a worker outlived the program')
    t.false(isDead(info.outliver), 'the non-daemon child outlived its program')
    process.kill(info.outliver, 'SIGKILL')
  },
)

test.serial('a killed server is replaced at the next start; a child it left running reports 255 when it exits', async (t) => {
  const q = new Queue()
  const running = new Process({ target: target('readyThenSleep'), args: [q, 'up'], startMethod: 'forkserver' })
  await within(30000, running.start(), 'start')
  await within(30000, q.get(), 'the child')
  const server = osParent(running.pid)
  process.kill(server, 'SIGKILL')
  const since = performance.now()
  while (!isDead(server) && performance.now() - since < 5000) await delay(10)
  t.true(isDead(server))
  // The next start finds the server gone and starts another.
  const { seen } = await describeChild()
  t.not(seen.osParent, server)
  t.false(isDead(seen.osParent))
  serverPid = seen.osParent
  t.true(running.isAlive(), 'a child of the dead server runs on')
  running.kill()
  t.is(await joined(running, 30000), 255)
  q.close()
})

test.serial('500 forked starts and joins leave the descriptor counts of the program and the server flat, and no zombie', async (t) => {
  const { seen } = await describeChild()
  const server = seen.osParent
  const started = new Set()
  const run = async () => {
    const p = new Process({ target: target('exitBy'), args: ['return'], startMethod: 'forkserver', daemon: true })
    await p.start()
    started.add(p.pid)
    await p.join()
    return p.exitCode
  }
  for (let i = 0; i < 20; i++) await run()
  const before = { mine: fdCount(process.pid), server: fdCount(server) }
  const codes = []
  for (let i = 0; i < 500; i++) codes.push(await within(30000, run(), `start ${i}`))
  const after = { mine: fdCount(process.pid), server: fdCount(server) }
  t.true(codes.every((c) => c === 0))
  t.log(`descriptors before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`)
  t.true(after.mine <= before.mine, 'the program holds no more descriptors than before')
  t.true(after.server <= before.server, 'the server holds no more descriptors than before')
  // What is left is the spare the server forked for the next request, never one it handed out.
  const left = childPids(server)
  t.true(left.length <= 1, `the server has one spare at most (${left})`)
  t.false(
    left.some((pid) => started.has(pid)),
    'the server reaped every child',
  )
})

test('a Pool on forkserver: results, recycled workers (maxTasksPerChild) forked by the server', async (t) => {
  const pool = new Pool({ processes: 2, startMethod: 'forkserver', maxTasksPerChild: 1, modules })
  try {
    const q = new Queue()
    const seen = await within(
      60000,
      pool.map(
        target('describe'),
        [q, q, q, q].map(() => q),
      ),
      'the map',
    )
    t.is(seen.length, 4)
    const views = []
    for (let i = 0; i < 4; i++) views.push(await within(30000, q.get(), 'a worker'))
    t.is(new Set(views.map((v) => v.pid)).size, 4, 'each task ran in a fresh worker')
    for (const v of views) t.is(v.ppid, process.pid)
    q.close()
  } finally {
    pool.close()
    await within(30000, pool.join(), 'pool join')
  }
})

test('getContext("forkserver") gives a Process and a Pool that fork', async (t) => {
  const ctx = getContext('forkserver')
  const q = new Queue()
  const p = new ctx.Process({ target: target('describe'), args: [q, 'X'] })
  await within(30000, p.start(), 'start')
  const seen = await within(30000, q.get(), 'the child')
  t.not(seen.osParent, process.pid)
  t.is(await joined(p, 30000), 0)
  const pool = new ctx.Pool({ processes: 1, modules })
  try {
    await within(60000, pool.apply(target('describe'), [q, 'X']), 'apply')
    t.not((await q.get({ timeout: 30000 })).osParent, process.pid)
  } finally {
    pool.close()
    await within(30000, pool.join(), 'pool join')
  }
  q.close()
})
