// Locks, semaphores, events, conditions and barriers shared between real processes.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  AbortError,
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  Event,
  InvalidStateError,
  Lock,
  OwnerDiedError,
  Process,
  Queue,
  RawArray,
  RLock,
  Semaphore,
  Value,
} from '../dist/index.js'
import { checkNoLeaks, fixture, fixtureUrl, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const start = async (t, target, args) => {
  const p = guard(t, new Process({ target: fixture('sync.mjs', target), args }))
  await p.start()
  return p
}

test('4 processes add 1 to a Value 100,000 times each under its lock: exactly 400,000', async (t) => {
  const v = Value('i64', 0n)
  const ps = []
  for (let i = 0; i < 4; i++) ps.push(await start(t, i < 3 ? 'addSync' : 'addAsync', [v, 100_000]))
  for (const p of ps) t.is(await joined(p, 60000), 0)
  t.is(v.value, 400_000n)
})

test('a Barrier(4) is crossed 1,000 times by 4 processes', async (t) => {
  const barrier = new Barrier(4)
  const rounds = RawArray('i32', 4)
  const ps = []
  for (let i = 0; i < 4; i++) ps.push(await start(t, 'crossBarrier', [barrier, rounds, i, 1000, i % 2 === 0]))
  for (const p of ps) t.is(await joined(p, 60000), 0)
  t.deepEqual([...rounds], [999, 999, 999, 999])
  t.false(barrier.broken)
  t.is(barrier.nWaiting, 0)
})

test('Barrier: the action runs once per crossing before anyone goes on; indices are arrival order', async (t) => {
  let actions = 0
  const barrier = new Barrier(3, { action: () => actions++ })
  const indices = await within(10000, Promise.all([barrier.wait(), barrier.wait(), barrier.wait()]), 'barrier')
  t.deepEqual(indices.sort(), [0, 1, 2])
  t.is(actions, 1)
  t.is(barrier.parties, 3)
})

test('Barrier: abort() wakes all waiters, in other processes too, with BrokenBarrierError', async (t) => {
  const barrier = new Barrier(4)
  const report = new Queue()
  const ps = [await start(t, 'waitAndReport', [barrier, report]), await start(t, 'waitAndReport', [barrier, report])]
  const here = barrier.wait({ timeout: 30000 })
  for (const _ of ps) t.is(await report.get({ timeout: 10000 }), 'waiting')
  while (barrier.nWaiting < 3) await new Promise((r) => setTimeout(r, 5))
  barrier.abort()
  await t.throwsAsync(within(5000, here, 'waiter in this process'), { instanceOf: BrokenBarrierError, code: 'ERR_BROKEN_BARRIER' })
  t.deepEqual([await report.get({ timeout: 5000 }), await report.get({ timeout: 5000 })], ['BrokenBarrierError', 'BrokenBarrierError'])
  for (const p of ps) t.is(await joined(p), 0)
  t.true(barrier.broken)
  await t.throwsAsync(barrier.wait(), { instanceOf: BrokenBarrierError })
  barrier.reset()
  t.false(barrier.broken)
})

test('Barrier: a wait that times out breaks the barrier (as Python)', async (t) => {
  const barrier = new Barrier(2)
  await t.throwsAsync(within(5000, barrier.wait({ timeout: 20 }), 'timed wait'), { instanceOf: BrokenBarrierError })
  t.true(barrier.broken)
  t.throws(() => barrier.waitSync(), { instanceOf: BrokenBarrierError })
})

test('Condition: producer/consumer across processes, no lost wake-up over 100,000 hand-offs', async (t) => {
  const cond = new Condition()
  const slot = RawArray('i32', 1)
  const sum = RawArray('i64', 1)
  const n = 100_000
  const consumer = await start(t, 'consume', [cond, slot, n, sum, true])
  const producer = await start(t, 'produce', [cond, slot, n, true])
  t.is(await joined(producer, 120000), 0)
  t.is(await joined(consumer, 120000), 0)
  t.is(sum[0], BigInt((n * (n + 1)) / 2))
})

test('Condition: async waits in this process against a child, 2,000 hand-offs', async (t) => {
  const cond = new Condition(new Lock())
  const slot = RawArray('i32', 1)
  const sum = RawArray('i64', 1)
  const n = 2_000
  const consumer = await start(t, 'consume', [cond, slot, n, sum, false])
  const { produce } = await import('./fixtures/sync.mjs')
  await within(60000, produce(cond, slot, n, false), 'producer')
  t.is(await joined(consumer, 60000), 0)
  t.is(sum[0], BigInt((n * (n + 1)) / 2))
})

test('Condition: wait times out with false and holds the lock again; notify needs the lock', async (t) => {
  const cond = new Condition()
  await t.throwsAsync(cond.wait(10), { instanceOf: InvalidStateError })
  t.throws(() => cond.notify(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE' })
  await cond.acquire()
  t.false(await within(5000, cond.wait({ timeout: 20 }), 'timed wait'))
  t.true(cond.getLock().isMine())
  t.false(cond.waitSync(10))
  t.is(await cond.waitFor(() => 0, { timeout: 20 }), 0)
  cond.release()
  // An abort leaves the lock held, as Python's wait always re-takes it.
  await cond.acquire()
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 20)
  await t.throwsAsync(cond.wait({ signal: ac.signal }), { name: 'AbortError' })
  t.true(cond.getLock().isMine())
  cond.release()
})

test('Semaphore(2) never admits a third holder across processes', async (t) => {
  const sem = new Semaphore(2)
  const counters = RawArray('i32', 2)
  const ps = []
  for (let i = 0; i < 4; i++) ps.push(await start(t, 'holdSemaphore', [sem, counters, 5000, 2, i % 2 === 0]))
  for (const p of ps) t.is(await joined(p, 60000), 0)
  t.is(counters[1], 0, 'a third holder was inside')
  t.is(sem.getValue(), 2)
})

test('SIGKILL of a process holding a Lock: the next acquire takes it over and throws OwnerDiedError', async (t) => {
  for (const [make, how] of [
    [() => new Lock(), 'async'],
    [() => new RLock(), 'sync'],
  ]) {
    const lock = make()
    const report = new Queue()
    const p = await start(t, 'holdForever', [lock, report])
    t.is(await report.get({ timeout: 10000 }), 'holding')
    t.false(lock.acquireSync({ block: false }))
    const waiting = how === 'async' ? lock.acquire() : null
    p.kill()
    t.is(await joined(p), -9)
    const killed = performance.now()
    const err =
      how === 'async'
        ? await t.throwsAsync(within(5000, waiting, 'acquire after the owner died'), { instanceOf: OwnerDiedError })
        : t.throws(() => lock.acquireSync({ timeout: 5000 }), { instanceOf: OwnerDiedError })
    t.log(`${how} acquire: OwnerDiedError ${(performance.now() - killed).toFixed(0)} ms after the holder was reaped`)
    t.is(err.code, 'ERR_OWNER_DIED')
    t.true(lock.isMine(), 'the lock is held after OwnerDiedError')
    lock.release()
    t.true(lock.acquireSync({ block: false }))
    lock.release()
  }
})

test('Event: set wakes a waiter in another process; wait times out with false', async (t) => {
  const ping = new Event()
  const pong = new Event()
  const p = await start(t, 'echoEvent', [ping, pong, 50])
  for (let i = 0; i < 50; i++) {
    ping.set()
    t.true(await within(10000, pong.wait(10000), 'pong'))
    pong.clear()
  }
  t.is(await joined(p), 0)
  t.false(await pong.wait(10))
  t.false(pong.waitSync({ timeout: 10 }))
  pong.set()
  t.true(pong.isSet())
  t.true(pong.waitSync())
})

test('Lock: wrong uses give clear errors with a code', async (t) => {
  const lock = new Lock()
  t.throws(() => lock.release(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE', message: /unlocked/ })
  lock.acquireSync()
  t.false(lock.acquireSync({ timeout: 10 }))
  t.false(await lock.acquire({ timeout: 10 }))
  lock.release()
  const r = new RLock()
  t.throws(() => r.release(), { instanceOf: InvalidStateError })
  const b = new BoundedSemaphore(1)
  t.throws(() => b.release(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE', message: /too many/ })
  t.throws(() => new Semaphore(-1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new Semaphore('2'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new Barrier(0), { instanceOf: RangeError })
  t.throws(() => new Condition({}), { instanceOf: TypeError })
  await t.throwsAsync(lock.acquire({ timeout: Number.NaN }), { instanceOf: RangeError })
})

test('Lock and RLock: async tasks of one process; RLock re-enters, withLock releases on throw', async (t) => {
  const lock = new Lock()
  await lock.acquire()
  let second = false
  const other = lock.acquire().then(() => (second = true))
  await new Promise((r) => setTimeout(r, 20))
  t.false(second, 'a Lock excludes another task of the same process')
  lock.release()
  await within(5000, other, 'second task')
  t.true(second)
  lock.release()
  await t.throwsAsync(
    lock.withLock(() => {
      throw new Error('boom')
    }),
    { message: 'boom' },
  )
  t.false(lock.locked())
  const r = new RLock()
  t.true(r.acquireSync())
  t.true(await r.acquire())
  r.release()
  t.true(r.isMine())
  r.release()
  t.false(r.locked())
  const s = new Semaphore(0)
  setTimeout(() => s.release(), 20)
  t.true(await within(5000, s.acquire({ timeout: 5000 }), 'semaphore'))
  t.false(await s.acquire({ timeout: 10 }))
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 20)
  await t.throwsAsync(s.acquire({ signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR' })
})

test('a Lock may be released by another process (as Python); an RLock may not; BoundedSemaphore travels', async (t) => {
  const lock = new Lock()
  const rlock = new RLock()
  const bounded = new BoundedSemaphore(2)
  lock.acquireSync()
  rlock.acquireSync()
  t.true(bounded.acquireSync())
  const p = await start(t, 'releaseForOthers', [lock, bounded, rlock])
  t.is(await joined(p), 0)
  t.false(lock.locked())
  t.true(rlock.isMine())
  rlock.release()
  t.is(bounded.getValue(), 2)
  t.throws(() => bounded.release(), { instanceOf: InvalidStateError })
})

const IDLE_MS = 2000
const BUDGET_US = 20_000 // 1 % of one core over 2 s

for (const [mode, result] of [
  ['acquire', false],
  ['event', false],
  ['condition', false],
  ['barrier', 'BrokenBarrierError'],
]) {
  test(`an idle async ${mode} wait costs under 1 % of a core and ends on its timeout`, async (t) => {
    const r = await new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        [fileURLToPath(fixtureUrl('sync-idle-probe.mjs')), mode, String(IDLE_MS)],
        { timeout: IDLE_MS + 15000, killSignal: 'SIGKILL' },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}; stderr: ${stderr}`)) : resolve(JSON.parse(stdout))),
      )
    })
    t.log(`${(r.cpuUs / 1000).toFixed(1)} ms of CPU in ${r.waitedMs.toFixed(0)} ms`)
    t.is(r.result, result)
    t.true(r.waitedMs >= IDLE_MS - 10, `waited ${r.waitedMs} ms`)
    t.true(r.cpuUs < BUDGET_US, `used ${r.cpuUs} µs of CPU`)
  })
}

test('revivers take descriptors under any number (as SCM_RIGHTS delivers them) and revive each id once', async (t) => {
  const { packHandles, unpackHandles } = await import('../dist/handles.js')
  const { openSync, readlinkSync } = await import('node:fs')
  const lock = new RLock()
  const cond = new Condition(lock)
  const v = Value('i32', 5, { lock })
  const { value } = packHandles([lock, cond, v])
  // Fresh descriptors for the same files, as another process would receive them.
  const reopen = (marker) => ({ ...marker, fds: marker.fds.map((fd) => openSync(`/proc/self/fd/${fd}`, 'r+')) })
  const first = unpackHandles(value.map(reopen))
  const again = value.map(reopen)
  const second = unpackHandles(again)
  t.is(first[0], second[0], 'one live object per id')
  t.is(first[1], second[1])
  t.is(first[1].getLock(), first[0], 'the Condition revives onto the same lock object')
  t.is(first[2].getLock(), first[0], 'and so does the Value')
  t.is(first[2].value, 5)
  lock.acquireSync()
  t.true(first[0].isMine(), 'the revived lock sees the original holding it')
  lock.release()
  t.false(first[0].locked())
  // The reviver owns what it is given: the second revival's descriptors were closed.
  for (const fd of again.flatMap((m) => m.fds)) t.throws(() => readlinkSync(`/proc/self/fd/${fd}`), { code: 'ENOENT' })
})

test('Barrier: an action given as { module, name } runs in the last arriving process, once per crossing', async (t) => {
  const barrier = new Barrier(3, { action: fixture('sync.mjs', 'countCrossing') })
  const counter = RawArray('i32', 1)
  const ps = []
  for (let i = 0; i < 3; i++) ps.push(await start(t, 'crossWithAction', [barrier, counter, 100]))
  for (const p of ps) t.is(await joined(p, 60000), 0)
  t.is(counter[0], 100)
})

test('Condition: a waiter whose lock was taken by a process that then died gets OwnerDiedError, holding the lock', async (t) => {
  const cond = new Condition(new Lock())
  const report = new Queue()
  await cond.acquire()
  const p = await start(t, 'holdForever', [cond.getLock(), report])
  const waiting = cond.wait({ timeout: 1000 })
  t.is(await report.get({ timeout: 10000 }), 'holding') // it got the lock our wait released
  p.kill()
  t.is(await joined(p), -9)
  await t.throwsAsync(within(10000, waiting, 'wait'), { instanceOf: OwnerDiedError })
  t.true(cond.getLock().isMine())
  cond.release()
})

test('an already aborted signal rejects every wait with AbortError before anything is taken', async (t) => {
  const signal = AbortSignal.abort()
  const lock = new Lock()
  await t.throwsAsync(lock.acquire({ signal }), { instanceOf: AbortError, code: 'ABORT_ERR' })
  t.false(lock.locked())
  const sem = new Semaphore(1)
  await t.throwsAsync(sem.acquire({ signal }), { instanceOf: AbortError })
  t.is(sem.getValue(), 1)
  const ev = new Event()
  ev.set()
  await t.throwsAsync(ev.wait({ signal }), { instanceOf: AbortError })
  const cond = new Condition()
  await cond.acquire()
  await t.throwsAsync(cond.wait({ signal }), { instanceOf: AbortError })
  t.true(cond.getLock().isMine())
  cond.release()
  const barrier = new Barrier(2)
  await t.throwsAsync(barrier.wait({ signal }), { instanceOf: AbortError })
  t.false(barrier.broken)
  t.is(barrier.nWaiting, 0)
})
