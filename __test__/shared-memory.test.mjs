// Named shared memory: attachable by name from Node and CPython, mode 0600, unlinked by the
// resource tracker when the creator's process tree ends, crashed or not.
import { execFile, spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { promisify } from 'node:util'

import avaTest from 'ava'

import { ClosedError, Process, Queue, SharedMemory } from '../dist/index.js'
import { checkNoLeaks, fixture, fixtureUrl, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const run = promisify(execFile)

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('a CPython process attaches by name, reads what Node wrote and writes back; unlink leaves nothing', async (t) => {
  const shm = new SharedMemory({ size: 1000 })
  t.regex(shm.name, /^mp-[0-9a-f]{32}$/)
  t.is(shm.size, 1000)
  t.is(statSync(`/dev/shm/${shm.name}`).mode & 0o777, 0o600)
  shm.buf.set(Buffer.from('hello'))
  const { stdout } = await within(30000, run('python3', [new URL('./fixtures/py_shm.py', import.meta.url).pathname, shm.name]), 'python')
  t.is(Number(stdout.trim()), 1000)
  t.is(Buffer.from(shm.buf.subarray(0, 11)).toString(), 'hellopython')
  shm.unlink()
  t.false(existsSync(`/dev/shm/${shm.name}`))
  shm.close()
  t.throws(() => shm.buf, { instanceOf: ClosedError })
})

test('attach by name from Node; a larger size is ignored on attach; a given name is used as is', async (t) => {
  const name = `mp-test-${process.pid}-${Date.now()}`
  const a = new SharedMemory({ name, size: 64, create: true })
  const b = new SharedMemory({ name, size: 1 << 20 })
  t.is(b.size, 64)
  a.buf[3] = 99
  t.is(b.buf[3], 99)
  const err = t.throws(() => new SharedMemory({ name, size: 64, create: true }))
  t.is(err.code, 'EEXIST')
  b.close()
  a.unlink()
  a.close()
  t.is(t.throws(() => new SharedMemory({ name })).code, 'ENOENT')
})

test('wrong sizes and names give clear errors with a code', (t) => {
  t.throws(() => new SharedMemory({ size: -1 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new SharedMemory({ size: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new SharedMemory({ size: 1.5 }), { instanceOf: RangeError })
  t.throws(() => new SharedMemory({}), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new SharedMemory({ name: 'a/b', size: 10, create: true }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => new SharedMemory({ name: 'x'.repeat(300), size: 10, create: true }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /at most 255/,
  })
  t.throws(() => new SharedMemory(), { instanceOf: TypeError })
})

test('a SharedMemory travels to a child Process and arrives live', async (t) => {
  const shm = new SharedMemory({ size: 16 })
  const report = new Queue()
  const p = guard(t, new Process({ target: fixture('shm.mjs', 'writeAndReport'), args: [shm, report] }))
  await p.start()
  t.is(await report.get({ timeout: 10000 }), shm.name)
  t.is(await joined(p), 0)
  t.deepEqual([...shm.buf.subarray(0, 3)], [1, 2, 3])
  shm.unlink()
  shm.close()
})

for (const signal of ['SIGKILL', 'SIGTERM']) {
  test(`the creator's process tree ends (${signal}): the tracker unlinks the segment`, async (t) => {
    const child = spawn(process.execPath, [fixtureUrl('shm-creator.mjs').pathname], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => child.kill('SIGKILL'))
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    await until(() => out.includes('\n'), 20000, 'the creator printing its name')
    const name = out.trim()
    t.true(existsSync(`/dev/shm/${name}`))
    const exited = new Promise((r) => child.once('exit', r))
    child.kill(signal)
    await within(10000, exited, 'creator exit')
    await until(() => !existsSync(`/dev/shm/${name}`), 10000, `the tracker unlinking ${name}`)
    t.pass()
  })
}

test('{ track: false } leaves the segment after the creator ends', async (t) => {
  const child = spawn(process.execPath, [fixtureUrl('shm-creator.mjs').pathname, 'untracked'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  await until(() => out.includes('\n'), 20000, 'the creator printing its name')
  const name = out.trim()
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGKILL')
  await within(10000, exited, 'creator exit')
  await new Promise((r) => setTimeout(r, 300))
  t.true(existsSync(`/dev/shm/${name}`))
  const shm = new SharedMemory({ name })
  t.is(shm.buf[0], 1)
  shm.unlink()
  shm.close()
})

test('a segment a child creates belongs to the whole tree: it outlives the child', async (t) => {
  const mine = new SharedMemory({ size: 8 }) // starts this tree's tracker before the child
  const report = new Queue()
  const p = guard(t, new Process({ target: fixture('shm.mjs', 'createAndExit'), args: [report] }))
  await p.start()
  const name = await report.get({ timeout: 10000 })
  t.is(await joined(p), 0)
  await new Promise((r) => setTimeout(r, 300))
  const shm = new SharedMemory({ name })
  t.is(shm.buf[0], 5)
  shm.unlink()
  shm.close()
  mine.unlink()
  mine.close()
})

test('Node attaches by name to a segment CPython created', async (t) => {
  const py = spawn('python3', [new URL('./fixtures/py_shm_create.py', import.meta.url).pathname], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => py.kill('SIGKILL'))
  let out = ''
  py.stdout.on('data', (d) => (out += d))
  await until(() => out.includes('\n'), 20000, 'python printing the name')
  const name = out.trim()
  const shm = new SharedMemory({ name })
  t.is(shm.size, 100)
  t.is(Buffer.from(shm.buf.subarray(0, 11)).toString(), 'from python')
  shm.buf.set(Buffer.from('node'), 11)
  shm.close()
  const exited = new Promise((r) => py.once('exit', r))
  py.stdin.end('done\n')
  t.is(await within(20000, exited, 'python exit'), 0)
  t.is(out.trim().split('\n')[1], 'ok')
  t.false(existsSync(`/dev/shm/${name}`))
})
