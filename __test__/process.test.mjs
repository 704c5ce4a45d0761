import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  activeChildren,
  ClosedError,
  cpuCount,
  currentProcess,
  EOFError,
  InvalidStateError,
  JoinableQueue,
  Pipe,
  Process,
  parentProcess,
  Queue,
} from '../dist/index.js'
import { exitWith, reportIdentity, sleepForever } from './fixtures/misc.mjs'
import { checkNoLeaks, fixture, fixtureUrl, guard, isDead, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const misc = fixtureUrl('misc.mjs')

/** Runs fixtures/run-target.mjs <mode> in a separate node; resolves with its output. */
function runTarget(mode) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [fileURLToPath(fixtureUrl('run-target.mjs')), mode],
      { timeout: 20000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err?.killed) reject(new Error(`run-target ${mode} timed out; stderr: ${stderr}`))
        else resolve({ code: err ? err.code : 0, stdout, stderr })
      },
    )
  })
}

test('exitCode is the code the child passed to process.exit', async (t) => {
  const p = guard(t, new Process({ target: exitWith, modules: [misc], args: [3] }))
  t.is(p.exitCode, null, 'null before start')
  await p.start()
  t.is(await joined(p), 3)
  t.false(p.isAlive())
})

test('exitCode follows process.exitCode set by a target that returns', async (t) => {
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'setExitCode'), args: [5] }))
  await p.start()
  t.is(await joined(p), 5)
})

test('a target that returns normally exits 0', async (t) => {
  const q = new Queue()
  const p = guard(t, new Process({ target: reportIdentity, modules: [misc], args: [q] }))
  await p.start()
  await q.get({ timeout: 10000 })
  t.is(await joined(p), 0)
})

test('terminate() of a sleeping child gives exitCode -15; kill() gives -9', async (t) => {
  const a = guard(t, new Process({ target: sleepForever, modules: [misc] }))
  const b = guard(t, new Process({ target: fixture('misc.mjs', 'sleepForever') }))
  await a.start()
  await b.start()
  t.true(a.isAlive())
  t.true(b.isAlive())
  await a.join(50)
  t.is(a.exitCode, null, 'still running after a timed join')
  t.true(a.isAlive())
  a.terminate()
  b.kill()
  t.is(await joined(a), -15)
  t.is(await joined(b), -9)
  t.false(a.isAlive())
  t.false(b.isAlive())
  t.true(isDead(a.pid) && isDead(b.pid))
})

test('joinSync waits for the exit', async (t) => {
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'exitWith'), args: [4] }))
  await p.start()
  p.joinSync(10000)
  t.is(p.exitCode, 4)
})

test('pid, name, isAlive, activeChildren, and the identity the child sees', async (t) => {
  t.is(parentProcess(), null, 'null in the process the user started')
  t.is(currentProcess().name, 'MainProcess')
  t.is(currentProcess().pid, process.pid)
  t.true(cpuCount() >= 1)

  const q = new Queue()
  const p = guard(
    t,
    new Process({ target: reportIdentity, modules: [misc], args: [q], name: 'reporter', env: { MULTIPROC_TEST_VAR: 'hello env' } }),
  )
  t.is(p.pid, null, 'no pid before start')
  t.false(p.isAlive())
  t.false(activeChildren().includes(p))
  t.is(p.name, 'reporter')
  t.false(p.daemon)
  await p.start()
  t.true(Number.isInteger(p.pid) && p.pid > 0)
  t.not(p.pid, process.pid)
  const seen = await q.get({ timeout: 10000 })
  t.is(seen.pid, p.pid, 'the pid the parent sees is the child')
  t.deepEqual(seen.current, { name: 'reporter', pid: p.pid, daemon: false })
  t.deepEqual(seen.parent, { pid: process.pid, name: 'MainProcess', alive: true })
  t.is(seen.env, 'hello env', 'env adds variables')
  t.is(await joined(p), 0)
  t.false(activeChildren().includes(p), 'gone from activeChildren once exited')
})

test('activeChildren returns the same Process objects while they run', async (t) => {
  const a = guard(t, new Process({ target: fixture('misc.mjs', 'sleepForever'), name: 'active-a' }))
  const b = guard(t, new Process({ target: fixture('misc.mjs', 'sleepForever'), name: 'active-b', daemon: true }))
  await a.start()
  await b.start()
  const active = activeChildren()
  t.true(active.includes(a))
  t.true(active.includes(b))
  t.true(b.daemon)
  a.kill()
  await joined(a)
  t.false(activeChildren().includes(a))
  t.true(activeChildren().includes(b))
  b.kill()
  await joined(b)
  t.false(activeChildren().includes(b))
})

test('a daemon child knows it is a daemon', async (t) => {
  const q = new Queue()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'reportIdentity'), args: [q], daemon: true, name: 'd' }))
  await p.start()
  const seen = await q.get({ timeout: 10000 })
  t.deepEqual(seen.current, { name: 'd', pid: p.pid, daemon: true })
  t.is(await joined(p), 0)
})

test('default names are Process-N and distinct', (t) => {
  const a = guard(t, new Process({ target: exitWith, modules: [misc] }))
  const b = guard(t, new Process({ target: exitWith, modules: [misc] }))
  t.regex(a.name, /^Process-\d+$/)
  t.regex(b.name, /^Process-\d+$/)
  t.not(a.name, b.name)
})

test('start() twice gives InvalidStateError; control of an unstarted or running process is checked', async (t) => {
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sleepForever') }))
  await t.throwsAsync(p.join(), { instanceOf: InvalidStateError })
  t.throws(() => p.terminate(), { instanceOf: InvalidStateError })
  t.throws(() => p.kill(), { instanceOf: InvalidStateError })
  t.throws(() => p.joinSync(10), { instanceOf: InvalidStateError })
  await p.start()
  const e = await t.throwsAsync(p.start(), { instanceOf: InvalidStateError })
  t.is(e.code, 'ERR_INVALID_STATE')
  t.throws(() => p.close(), { instanceOf: InvalidStateError }, 'close() while running')
  p.kill()
  t.is(await joined(p), -9)
  p.close()
  await t.throwsAsync(p.start(), { instanceOf: ClosedError })
})

test('start() after close() of a never-started process gives ClosedError', async (t) => {
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'exitWith'), args: [0] }))
  p.close()
  await t.throwsAsync(p.start(), { instanceOf: ClosedError, code: 'ERR_CLOSED' })
  t.is(p.pid, null)
})

test('a self-contained function is sent by source and runs in the child', async (t) => {
  const q = new Queue()
  const p = guard(
    t,
    new Process({
      target: async (out, x) => {
        await out.put({ doubled: x * 2, pid: process.pid })
      },
      args: [q, 21],
    }),
  )
  await p.start()
  t.deepEqual(await q.get({ timeout: 10000 }), { doubled: 42, pid: p.pid })
  t.is(await joined(p), 0)
})

test('a target that throws exits 1 and prints the error with its stack on stderr', async (t) => {
  const { stdout, stderr, code } = await runTarget('throw')
  t.is(code, 0, stderr)
  t.deepEqual(JSON.parse(stdout), { exitCode: 1 })
  t.regex(stderr, /Process runner-throw:/)
  t.regex(stderr, /Error: target failed: marker-7f3a/)
  t.regex(stderr, /\n\s+at throwMarker .*misc\.mjs:\d+/, 'the stack names the function and its file')
})

test('a target that rejects exits 1 and prints the error with its stack on stderr', async (t) => {
  const { stdout, stderr } = await runTarget('reject')
  t.deepEqual(JSON.parse(stdout), { exitCode: 1 })
  t.regex(stderr, /RangeError: async target failed: marker-async-91c2/)
  t.regex(stderr, /\n\s+at rejectMarker .*misc\.mjs:\d+/)
})

test('a function sent by source that reads an outer variable fails with a TargetError naming it', async (t) => {
  const { stdout, stderr } = await runTarget('outer')
  t.deepEqual(JSON.parse(stdout), { exitCode: 1 })
  t.regex(stderr, /TargetError/)
  t.regex(stderr, /secretOuterValue/, 'the message names the variable')
  t.regex(stderr, /usesOuter/, 'and the function')
  t.regex(stderr, /export/, 'and shows the fixes')
})

test('a { module, name } target that does not exist fails with TargetError', async (t) => {
  const { stdout, stderr } = await runTarget('missing')
  t.deepEqual(JSON.parse(stdout), { exitCode: 1 })
  t.regex(stderr, /TargetError/)
  t.regex(stderr, /noSuchExport/)
})

test('non-daemon children started together all run and are joined', async (t) => {
  const procs = Array.from({ length: 4 }, (_, i) => guard(t, new Process({ target: exitWith, modules: [misc], args: [10 + i] })))
  await within(20000, Promise.all(procs.map((p) => p.start())), 'starts')
  const codes = []
  for (const p of procs) codes.push(await joined(p))
  t.deepEqual(codes, [10, 11, 12, 13])
})

test('handles nested in objects, arrays and Maps arrive live, one object per handle', async (t) => {
  const out = new Queue()
  const jq = new JoinableQueue()
  const [a, b] = Pipe()
  const p = guard(
    t,
    new Process({
      target: fixture('misc.mjs', 'useNested'),
      args: [
        {
          out,
          list: [jq],
          map: new Map([
            ['again', jq],
            ['pipe', b],
          ]),
        },
      ],
    }),
  )
  await p.start()
  b.close()
  t.deepEqual(await out.get({ timeout: 10000 }), { same: true, kind: 'JoinableQueue' })
  t.is(await jq.get({ timeout: 10000 }), 'via the array')
  t.is(await a.recv({ timeout: 10000 }), 'via the map')
  await t.throwsAsync(a.recv({ timeout: 10000 }), { instanceOf: EOFError })
  t.is(await joined(p), 0)
  a.close()
})
