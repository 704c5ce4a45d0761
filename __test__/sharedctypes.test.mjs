// Value, RawValue, RawArray and SharedArray: typed views of shared memory that travel to other
// processes with their locks.
import avaTest from 'ava'

import { InvalidStateError, Process, Queue, RawArray, RawValue, RLock, Semaphore, SharedArray, Value } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

test('values of every type hold what is written; i64/u64 are bigint, bool boolean', (t) => {
  const cases = [
    ['i8', -5],
    ['u8', 250],
    ['i16', -30000],
    ['u16', 60000],
    ['i32', -2e9],
    ['u32', 4e9],
    ['i64', -(2n ** 62n)],
    ['u64', 2n ** 63n],
    ['f32', 1.5],
    ['f64', Math.PI],
    ['bool', true],
  ]
  for (const [type, v] of cases) {
    const value = Value(type, v)
    t.is(value.value, v, type)
  }
  t.is(Value('f64').value, 0)
  t.is(Value('i64').value, 0n)
  t.is(Value('bool').value, false)
  t.is(Value('d', 2.5).value, 2.5, 'Python type codes are accepted')
  const v = Value('i64', 7)
  t.is(v.value, 7n, 'an integer number is taken for an i64')
})

test('the lock: an RLock by default, none with { lock: false }, or the one given', (t) => {
  const v = Value('i32', 1)
  t.true(v.getLock() instanceof RLock)
  v.getLock().withLockSync(() => {
    v.value += 1 // .value takes the (re-entrant) lock too
  })
  t.is(v.value, 2)
  const raw = Value('i32', 1, { lock: false })
  t.throws(() => raw.getLock(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE' })
  t.throws(() => RawValue('u8').getLock(), { instanceOf: InvalidStateError })
  const lock = new RLock()
  t.is(Value('u8', 0, { lock }).getLock(), lock)
  const arr = SharedArray('f64', 3, { lock: false })
  t.throws(() => arr.getLock(), { instanceOf: InvalidStateError })
})

test('arrays: RawArray is the typed array itself; SharedArray has array, length and a lock', (t) => {
  const raw = RawArray('f64', [1, 2, 3])
  t.true(raw instanceof Float64Array)
  t.deepEqual([...raw], [1, 2, 3])
  const zeros = RawArray('i16', 4)
  t.deepEqual([...zeros], [0, 0, 0, 0])
  const big = RawArray('u64', [1n, 2n])
  t.deepEqual([...big], [1n, 2n])
  const shared = SharedArray('i32', [5, 6])
  t.true(shared.array instanceof Int32Array)
  t.is(shared.length, 2)
  t.deepEqual(shared.toArray(), [5, 6])
  t.deepEqual(SharedArray('bool', [true, false]).toArray(), [true, false])
  t.is(RawArray('u8', 0).length, 0)
})

test('wrong uses give clear errors with a code', (t) => {
  t.throws(() => Value('x', 1), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /unknown type/ })
  t.throws(() => Value('i64', 1.5), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Value('i32', 'one'), { instanceOf: TypeError })
  t.throws(() => RawArray('f64', -1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => RawArray('f64', 1.5), { instanceOf: RangeError })
  t.throws(() => RawArray('f64', {}), { instanceOf: TypeError })
  t.throws(() => SharedArray('i8', 2, { lock: 'yes' }), { instanceOf: TypeError })
  const v = Value('u8', 0)
  t.throws(
    () => {
      v.value = 'a'
    },
    { instanceOf: TypeError },
  )
})

test('values and arrays travel to a child process and arrive live, with their locks', async (t) => {
  const v = Value('f64', 1.25)
  const raw = RawArray('i32', [1, 2, 3])
  const shared = SharedArray('i64', 2)
  const flag = Value('bool', false, { lock: false })
  const done = new Semaphore(0)
  const p = guard(t, new Process({ target: fixture('values.mjs', 'touch'), args: [v, raw, shared, flag, done] }))
  await p.start()
  t.true(await done.acquire({ timeout: 10000 }))
  t.is(await joined(p), 0)
  t.is(v.value, 2.5)
  t.deepEqual([...raw], [2, 3, 4])
  t.deepEqual(shared.toArray(), [42n, 0n])
  t.true(flag.value)
})

test('a Value whose lock holder was SIGKILLed is still readable and writable; the lock is free after', async (t) => {
  const v = Value('i32', 7)
  const report = new Queue()
  const p = guard(t, new Process({ target: fixture('sync.mjs', 'holdForever'), args: [v.getLock(), report] }))
  await p.start()
  t.is(await report.get({ timeout: 10000 }), 'holding')
  p.kill()
  t.is(await joined(p), -9)
  t.is(v.value, 7)
  v.value = 8
  t.is(v.value, 8)
  t.false(v.getLock().locked())
})
