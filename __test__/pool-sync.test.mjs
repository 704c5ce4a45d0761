// Locks, semaphores, events, values, arrays and SharedMemory passed to the tasks of a running
// pool: their descriptors reach the workers over the carrier socket and each object is revived
// once per worker, live.
import test from 'ava'

import { Event, RawArray, Semaphore, SharedMemory, Value } from '../dist/index.js'
import { checkNoLeaks, fixture, within } from './helpers.mjs'
import { createPool, needs } from './pool-backend.mjs'

checkNoLeaks(test)

/** Tests that pass handles (Queue, Lock, …) to tasks. */
const withHandles = needs(test, 'carriesHandles')

withHandles.serial('a Value and its lock passed to pool tasks: 8 tasks × 10,000 increments = 80,000', async (t) => {
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  await within(
    10_000,
    pool.map((x) => x, [1, 2]),
    'warm-up',
  ) // the workers run before the Value exists
  const v = Value('i64', 0n)
  const pids = await within(
    60_000,
    pool.starmap(
      fixture('pool-sync.mjs', 'addUnderLock'),
      Array.from({ length: 8 }, () => [v, 10_000]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  t.is(v.value, 80_000n)
  t.true(new Set(pids).size >= 1)
  pool.close()
  await within(10_000, pool.join(), 'join')
})

withHandles.serial('Semaphore(1) across pool workers admits one holder at a time', async (t) => {
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  const sem = new Semaphore(1)
  const counters = RawArray('i32', 2)
  await within(
    60_000,
    pool.starmap(
      fixture('pool-sync.mjs', 'holdOnce'),
      Array.from({ length: 40 }, () => [sem, counters, 1]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  t.is(counters[1], 0)
  t.is(sem.getValue(), 1)
  pool.close()
  await within(10_000, pool.join(), 'join')
})

withHandles.serial('SharedMemory, RawArray and Event passed to pool tasks arrive live', async (t) => {
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  const shm = new SharedMemory({ size: 16 })
  const arr = RawArray('f64', 8)
  const ev = new Event()
  await within(
    30_000,
    pool.starmap(
      fixture('pool-sync.mjs', 'writeShared'),
      Array.from({ length: 8 }, (_, i) => [shm, arr, i, ev, i === 7]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  t.true(await ev.wait(5000))
  t.deepEqual([...shm.buf.subarray(0, 8)], [1, 2, 3, 4, 5, 6, 7, 8])
  t.deepEqual([...arr], [0, 2, 4, 6, 8, 10, 12, 14])
  shm.unlink()
  shm.close()
  pool.close()
  await within(10_000, pool.join(), 'join')
})
