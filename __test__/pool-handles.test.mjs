// Pool tasks that receive handles (Queue, Connection) although their workers were already
// running: the descriptors travel over each worker's carrier socket, once per worker and object.
// Also the pool's `serializer` option.
import { readdirSync } from 'node:fs'

import test from 'ava'

import { Pipe, Queue, TargetError } from '../dist/index.js'
import { jsonSerializer } from './fixtures/pool-serializer.mjs'
import { checkNoLeaks, fixtureUrl, within } from './helpers.mjs'
import { createPool, needs } from './pool-backend.mjs'

checkNoLeaks(test)

// Tests that pass handles to tasks; some also look at the workers' processes or need chunks
// taken back from a busy worker.
const withHandles = needs(test, 'carriesHandles')
const withHandlesLocally = needs(test, 'carriesHandles', 'localProcesses')
const withHandlesTakenBack = needs(test, 'carriesHandles', 'canTakeBack')

const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length

withHandles.serial('a Queue passed to tasks of a running pool arrives live in every worker', async (t) => {
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  await within(
    10_000,
    pool.map((x) => x, [1, 2, 3, 4]),
    'warm-up',
  ) // the workers are up before the queue exists
  const q = new Queue()
  const pids = await within(
    10_000,
    pool.starmap(
      (queue, x) => {
        queue.putSync(x * 10)
        return process.pid
      },
      Array.from({ length: 20 }, (_, i) => [q, i]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  const got = []
  for (let i = 0; i < 20; i++) got.push(await within(5000, q.get(), 'get'))
  t.deepEqual(
    got.sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i * 10),
  )
  t.true(new Set(pids).size >= 1)
})

withHandles.serial('a Connection passed to apply talks back to the parent', async (t) => {
  const pool = createPool({ processes: 1 })
  t.teardown(() => pool.terminate())
  const [mine, theirs] = Pipe()
  const echoed = pool.apply(
    async (conn) => {
      const v = await conn.recv({ timeout: 5000 })
      conn.sendSync({ echo: v })
      return 'done'
    },
    [theirs],
  )
  await mine.send('ping')
  t.deepEqual(await within(5000, mine.recv(), 'recv'), { echo: 'ping' })
  t.is(await within(5000, echoed, 'apply'), 'done')
})

withHandlesLocally.serial('the same handle in 300 tasks is sent to each worker once: no descriptor grows', async (t) => {
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  const q = new Queue()
  await within(
    10_000,
    pool.map((qq) => qq.qsize(), [q, q, q, q], { chunksize: 1 }),
    'first use',
  )
  // Both workers have had the queue (and set up what a first wait needs) before we count: a map
  // of many chunks is spread over both (one apply at a time would always go to the first).
  await within(
    10_000,
    pool.map((qq) => qq.qsize(), Array(40).fill(q), { chunksize: 1 }),
    'spread',
  )
  await new Promise((resolve) => setTimeout(resolve, 300)) // both idle: each has armed its first wait
  const before = pool.workers.map((p) => fdCount(p.pid))
  const parentBefore = fdCount(process.pid)
  for (let i = 0; i < 300; i++)
    await within(
      5000,
      pool.apply((qq) => qq.qsize(), [q]),
      'apply',
    )
  t.deepEqual(
    pool.workers.map((p) => fdCount(p.pid)),
    before,
  )
  t.true(fdCount(process.pid) <= parentBefore) // (pools of earlier tests may still be closing theirs)
})

withHandlesTakenBack.serial('a handle among the items of a chunk that was taken back and re-sent still arrives', async (t) => {
  // A slow first task holds worker A; the chunks queued behind it are taken back by the idle
  // worker B, descriptors and all.
  const pool = createPool({ processes: 2 })
  t.teardown(() => pool.terminate())
  await within(
    10_000,
    pool.map(
      (x) => x,
      Array.from({ length: 200 }, (_, i) => i),
      { chunksize: 1 },
    ),
    'warm-up',
  )
  const q = new Queue()
  const slow = (queue, i) => {
    if (i === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
    queue.putSync(i)
    return i
  }
  const out = await within(
    20_000,
    pool.starmap(
      slow,
      Array.from({ length: 12 }, (_, i) => [q, i]),
      { chunksize: 1 },
    ),
    'starmap',
  )
  t.deepEqual(
    out,
    Array.from({ length: 12 }, (_, i) => i),
  )
  const got = []
  for (let i = 0; i < 12; i++) got.push(await within(5000, q.get(), 'get'))
  t.is(new Set(got).size, 12)
})

test.serial('serializer: exported from one of `modules`, used for tasks and results on both sides', async (t) => {
  const pool = createPool({ processes: 1, serializer: jsonSerializer, modules: [fixtureUrl('pool-serializer.mjs')] })
  t.teardown(() => pool.terminate())
  const [r] = await within(
    10_000,
    pool.map((x) => ({ x, when: new Date(0) }), [1]),
    'map',
  )
  t.deepEqual(r, { x: 1, when: '1970-01-01T00:00:00.000Z' }) // JSON turned the Date into a string
})

test.serial('serializer that is not exported from `modules` is refused at once', (t) => {
  const err = t.throws(() => createPool({ processes: 1, serializer: { serialize: () => new Uint8Array(), deserialize: () => 0 } }))
  t.true(err instanceof TargetError)
  t.is(err.code, 'ERR_TARGET')
})

withHandlesLocally.serial('a task that returns a handle rejects with SerializationError; the worker lives on', async (t) => {
  const pool = createPool({ processes: 1 })
  t.teardown(() => pool.terminate())
  const q = new Queue()
  const err = await within(
    10_000,
    pool.apply((qq) => qq, [q]),
    'apply',
  ).catch((e) => e)
  t.is(err?.code, 'ERR_SERIALIZATION')
  const pid = pool.workers[0].pid
  t.is(
    await within(
      5000,
      pool.apply(() => process.pid),
      'apply',
    ),
    pid,
  )
})
