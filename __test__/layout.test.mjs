// The shared-memory layout of the synchronisation objects is defined once, in the Rust core, and
// read by TypeScript from the binding (src/sync-layout.ts). This checks that the two sides agree:
// the names TypeScript reads are exactly the ones the core exports, and every word the Atomics
// fast paths touch means to the core what it means to TypeScript (a write on one side is seen by
// the other).
import { createRequire } from 'node:module'

import test from 'ava'

import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from '../dist/index.js'
import * as layout from '../dist/sync-layout.js'

const native = createRequire(import.meta.url)('../native/index.cjs')
/** The binding's handle of a synchronisation object (a protected field in TypeScript). */
const handleOf = (obj) => obj.handle
const wordsOf = (obj) => new Int32Array(native.syncView(handleOf(obj)))

test('TypeScript reads every name of the core layout, and no other', (t) => {
  const { read, defined } = layout.layoutNames()
  t.deepEqual(
    read,
    defined.filter((n) => n !== 'size' && n !== 'body'),
  )
  const raw = native.syncLayout()
  for (const name of read.filter((n) => /^[a-z]+\.[a-z]+$/i.test(n) && !/(Mask|Bit|Ns|Ms)$/.test(n))) {
    t.true(raw[name] >= raw.body && raw[name] + 4 <= raw.size, `${name} lies inside the segment's body`)
  }
})

test('Lock and RLock: the state, depth and record words mean the same on both sides', (t) => {
  const lock = new Lock()
  t.true(lock.acquireSync({ block: false }), 'taken by the fast path')
  const w = wordsOf(lock)
  t.is(w[layout.LOCK_STATE] & layout.LOCK_ID_MASK, process.pid, 'the state word names this process')
  const record = new BigUint64Array(w.buffer, 0, 8)[layout.LOCK_RECORD]
  t.is(Number(record >> 32n), process.pid, 'the record names this process')
  t.is(native.lockTryRecover(handleOf(lock)), -1, 'the core sees it held by a live owner')
  lock.release()
  t.is(w[layout.LOCK_STATE], 0)
  t.is(native.lockAcquireSync(handleOf(lock), 0), 0, 'the core takes it once the fast path released it')
  t.true(lock.locked())
  native.lockRelease(handleOf(lock))
  t.false(lock.locked())

  const rlock = new RLock()
  t.true(rlock.acquireSync({ block: false }))
  t.true(rlock.acquireSync({ block: false }))
  t.is(wordsOf(rlock)[layout.LOCK_COUNT], 2)
  t.is(native.lockReleaseAll(handleOf(rlock)), 2, 'the core reads the depth the fast path wrote')
  t.false(rlock.locked())
})

test('Semaphore and BoundedSemaphore: the value, sleepers and maximum words', (t) => {
  const sem = new Semaphore(1)
  t.true(sem.acquireSync({ block: false }))
  t.is(wordsOf(sem)[layout.SEM_VALUE], 0)
  t.false(native.semAcquireSync(handleOf(sem), 0), 'the core sees the value the fast path took')
  sem.release()
  t.true(native.semAcquireSync(handleOf(sem), 0), 'and the value it gave back')
  t.is(wordsOf(sem)[layout.SEM_SLEEPERS], 0)

  const bounded = new BoundedSemaphore(2)
  t.is(wordsOf(bounded)[layout.SEM_MAX], 2, 'the maximum the core stored')
  t.throws(() => bounded.release(), { code: 'ERR_INVALID_STATE' })
})

test('Event: the flag word', (t) => {
  const event = new Event()
  native.eventSet(handleOf(event))
  t.true(event.isSet(), 'the fast path reads the flag the core set')
  event.clear()
  t.false(native.eventWaitSync(handleOf(event), 0), 'the core reads the flag the fast path cleared')
  t.is(wordsOf(event)[layout.EVENT_SLEEPERS], 0)
  t.is(wordsOf(event)[layout.EVENT_FLAG], 0)
})

test('Condition and Barrier: the sequence and generation words', (t) => {
  const cond = new Condition()
  t.is(wordsOf(cond)[layout.COND_SEQ] >>> 0, native.condObserve(handleOf(cond)))
  native.condNotify(handleOf(cond), 1)
  t.is(wordsOf(cond)[layout.COND_SEQ] >>> 0, native.condObserve(handleOf(cond)))

  const barrier = new Barrier(1)
  const gen = wordsOf(barrier)[layout.BARRIER_GEN] >>> 0
  t.is(native.barrierOutcome(handleOf(barrier), gen), -1, 'the generation the fast path reads is the current one')
  t.is(barrier.waitSync(), 0)
  t.is(wordsOf(barrier)[layout.BARRIER_GEN] >>> 0, gen + 1)
  t.is(native.barrierOutcome(handleOf(barrier), gen), 0, 'that generation crossed')
})

test('the spin policy is the core one', (t) => {
  const raw = native.syncLayout()
  t.is(layout.SPIN_START_MS, raw['spin.startNs'] / 1e6)
  t.is(layout.SPIN_MAX_MS, raw['spin.maxNs'] / 1e6)
  t.true(layout.SPIN_START_MS > 0 && layout.SPIN_START_MS <= layout.SPIN_MAX_MS)
  t.is(layout.WAITERS_BIT, 2 ** 31)
  t.is(layout.LOCK_ID_MASK, 2 ** 31 - 1)
})
