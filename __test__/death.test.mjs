// Processes that die while using a queue. docs/design.md ("The channel"): a consumer that dies in
// the middle of a large message is taken over by the next consumer, which skips the rest of it;
// a producer that dies in the middle has its message abandoned by whoever next takes its lock,
// and consumers skip what of it is in the ring (more in abandon.test.mjs).
import avaTest from 'ava'

import { Process, Queue } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const RING = 1 << 20
const HUGE = 64 << 20

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

/** Settles `promise` to `{ value }` or `{ error }` so both can be asserted on. */
const settle = (promise) =>
  promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

test.serial('consumers killed while waiting (holding nothing) do not disturb the queue', async (t) => {
  const q = new Queue()
  const report = new Queue()
  const waiters = [0, 1].map(() => guard(t, new Process({ target: fixture('death.mjs', 'waitForever'), args: [q, report] })))
  for (const w of waiters) await w.start()
  for (const _ of waiters) t.is(await report.get({ timeout: 10000 }), 'ready')
  await new Promise((r) => setTimeout(r, 50)) // let them block in getSync
  for (const w of waiters) w.kill()
  for (const w of waiters) t.is(await joined(w), -9)
  await q.put('still works')
  t.is(await q.get({ timeout: 2000 }), 'still works')
  // A streamed message too (its put resolves only once it is all in the ring: get alongside).
  const [, big] = await within(10000, Promise.all([q.put(Buffer.alloc(4 * RING, 1)), q.get({ timeout: 5000 })]), 'put and get')
  t.is(big.length, 4 * RING)
})

test.serial('a producer killed after its puts leaves its items for the consumers', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('death.mjs', 'putHuge'), args: [q, RING / 4] }))
  await p.start()
  t.is(await joined(p), 0)
  t.is((await q.get({ timeout: 2000 })).length, RING / 4)
  t.is(await q.get({ timeout: 2000 }), 'after the huge one')
})

test.serial('a producer killed in the middle of a large message: it is skipped, later puts and gets go on', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('death.mjs', 'putHuge'), args: [q, HUGE] }))
  await p.start()
  // Nobody reads: the producer fills the ring with the first part of the message and waits.
  await until(() => q.qsize() >= 1, 10000, 'the large message starting to stream')
  await new Promise((r) => setTimeout(r, 50))
  p.kill()
  t.is(await joined(p), -9)
  // The next producer finds the dead producer's half-written message and gives it up; it waits
  // for room until a consumer has skipped it.
  const put = settle(q.put('next', { timeout: 5000 }))
  const get = await within(10000, settle(q.get({ timeout: 5000 })), 'get')
  t.deepEqual(await within(10000, put, 'put'), { value: undefined })
  t.deepEqual(get, { value: 'next' })
  t.is(q.qsize(), 0)
})

test.serial('a consumer killed in the middle of a large message: the next consumer skips it and gets the next one', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const report = new Queue()
  const consumer = guard(t, new Process({ target: fixture('death.mjs', 'takeOne'), args: [q, report], name: 'consumer' }))
  await consumer.start()
  t.is(await report.get({ timeout: 10000 }), 'ready')
  // The producer starts the large message, then stalls for 1.5 s with its event loop blocked:
  // the consumer reads the first part and waits for the rest, holding the consumer side.
  const producer = guard(
    t,
    new Process({ target: fixture('death.mjs', 'stallMidStream'), args: [q, report, HUGE, 1500, 'next message'], name: 'producer' }),
  )
  await producer.start()
  t.is(await report.get({ timeout: 10000 }), 'stalled')
  await new Promise((r) => setTimeout(r, 200))
  consumer.kill()
  t.is(await joined(consumer), -9)
  t.true(report.empty(), 'the consumer died before it had the whole message')
  // This process is the next consumer; the producer resumes and finishes the large message.
  const got = await within(15000, settle(q.get({ timeout: 6000 })), 'get')
  t.is(got.error, undefined, `get after the consumer died: ${got.error}`)
  t.is(got.value, 'next message', 'the rest of the large message died with its reader')
  t.is(await joined(producer, 15000), 0)
})
