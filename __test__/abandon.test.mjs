// Messages larger than the ring that are given up mid-stream (docs/design.md, "The channel"):
// a producer killed in the middle of one, and timed or aborted puts, gets, sends and receives
// that run out in the middle of one. The message is discarded on both sides; the queue or pipe
// goes on for everyone else.
import test from 'ava'

import { AbortError, Pipe, Process, Queue, TimeoutError } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, within } from './helpers.mjs'

checkNoLeaks(test)

const RING = 1 << 20
const HUGE = 64 << 20

/** Settles `promise` to `{ value }` or `{ error }` so both can be asserted on. */
const settle = (promise) =>
  promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

const started = async (t, target, args, name) => {
  const p = guard(t, new Process({ target: fixture(...target), args, name }))
  await p.start()
  return p
}

/** Gets `n` items and checks that each producer's arrive once each, in order (after `seen`). */
async function getAll(t, q, n, seen = {}) {
  const next = new Map(Object.entries(seen))
  for (let k = 0; k < n; k++) {
    const item = await within(15000, q.get(), `get ${k} of ${n}`)
    t.false(Buffer.isBuffer(item), 'a part of the killed producer’s message arrived')
    const want = next.get(item.tag) ?? 0
    if (item.i !== want) t.fail(`${item.tag}: item ${item.i} where ${want} was due`)
    if (item.pad) t.true(item.pad.length === 2 * RING && item.pad.every((b) => b === item.i % 256))
    next.set(item.tag, want + 1)
  }
  return Object.fromEntries(next)
}

test.serial(
  'a child SIGKILLed while putting a message larger than the ring, nobody reading: the parent and another child go on',
  async (t) => {
    const q = new Queue({ capacityBytes: RING })
    const p = await started(t, ['death.mjs', 'putHuge'], [q, HUGE], 'streamer')
    await until(() => q.qsize() >= 1, 10000, 'the large message starting to stream')
    await new Promise((r) => setTimeout(r, 100)) // it fills the ring and waits for room
    p.kill()
    t.is(await joined(p), -9)
    // Another child and this process put, large items among them; every one arrives once.
    const other = await started(t, ['abandon.mjs', 'putMany'], [q, 'child', 60, 2 * RING], 'producer')
    const mine = (async () => {
      for (let i = 0; i < 60; i++) await q.put(i % 10 === 9 ? { tag: 'parent', i, pad: Buffer.alloc(2 * RING, i) } : { tag: 'parent', i })
    })()
    t.deepEqual(await getAll(t, q, 120), { child: 60, parent: 60 })
    await within(10000, mine, 'the parent’s puts')
    t.is(await joined(other), 0)
    t.is(q.qsize(), 0)
  },
)

test.serial('a child SIGKILLed in the middle of the message the parent is reading: the get goes on to the next item', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const report = new Queue()
  const p = await started(t, ['death.mjs', 'stallMidStream'], [q, report, HUGE, 30000, 'never sent'], 'streamer')
  t.is(await report.get({ timeout: 10000 }), 'stalled')
  const got = settle(q.get())
  await new Promise((r) => setTimeout(r, 200)) // the get is inside the message now
  p.kill()
  t.is(await joined(p), -9)
  const other = await started(t, ['abandon.mjs', 'putMany'], [q, 'child', 20, 2 * RING], 'producer')
  const first = await within(15000, got, 'the get that was inside the message')
  t.deepEqual(first, { value: { tag: 'child', i: 0 } })
  t.deepEqual(await getAll(t, q, 19, { child: 1 }), { child: 20 })
  t.is(await joined(other), 0)
})

for (const sync of [false, true]) {
  const how = sync ? 'putSync' : 'put'
  test.serial(`a timed ${how} of a large item whose consumer stops reading ends with TimeoutError; the queue goes on`, async (t) => {
    const q = new Queue({ capacityBytes: RING })
    const report = new Queue()
    const consumer = await started(t, ['abandon.mjs', 'getAfterStall'], [q, report, 1500], 'consumer')
    t.is(await report.get({ timeout: 10000 }), 'ready')
    const big = Buffer.alloc(HUGE, 1)
    if (sync) {
      t.throws(() => q.putSync(big, { timeout: 300 }), { instanceOf: TimeoutError })
    } else {
      await t.throwsAsync(within(10000, q.put(big, { timeout: 300 }), 'timed put'), { instanceOf: TimeoutError })
    }
    // The consumer resumes: what it had of the item is discarded, and it gets the next one.
    await q.put('after')
    t.is(await report.get({ timeout: 10000 }), 'after')
    t.is(await joined(consumer), 0)
    // Large items go through again.
    const [, again] = await within(10000, Promise.all([q.put(Buffer.alloc(4 * RING, 2)), q.get()]), 'a large put and get')
    t.is(again.length, 4 * RING)
    t.is(q.qsize(), 0)
  })
}

for (const sync of [false, true]) {
  const how = sync ? 'getSync' : 'get'
  test.serial(
    `a timed ${how} inside a large item whose producer stalls ends with TimeoutError; the next ${how} gets the next item`,
    async (t) => {
      const q = new Queue({ capacityBytes: RING })
      const report = new Queue()
      const p = await started(t, ['death.mjs', 'stallMidStream'], [q, report, HUGE, 1500, 'next item'], 'producer')
      t.is(await report.get({ timeout: 10000 }), 'stalled')
      if (sync) {
        t.throws(() => q.getSync({ timeout: 300 }), { instanceOf: TimeoutError })
        t.is(q.getSync({ timeout: 15000 }), 'next item', 'the rest of the large item was skipped')
      } else {
        await t.throwsAsync(within(10000, q.get({ timeout: 300 }), 'timed get'), { instanceOf: TimeoutError })
        t.is(await q.get({ timeout: 15000 }), 'next item', 'the rest of the large item was skipped')
      }
      t.is(await joined(p, 15000), 0)
      t.is(q.qsize(), 0)
    },
  )
}

test.serial('an aborted put and an aborted get of large items end with AbortError; the queue goes on', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  // The put: nobody reads, the ring fills, the signal aborts.
  const ac = new AbortController()
  setTimeout(() => ac.abort(new Error('enough')), 300)
  const put = await within(10000, settle(q.put(Buffer.alloc(HUGE, 1), { signal: ac.signal })), 'aborted put')
  t.true(put.error instanceof AbortError, `put: ${put.error ?? 'resolved'}`)
  t.is(put.error.cause?.message, 'enough')
  // Its first part fills the ring until a consumer passes it.
  const [, after] = await within(10000, Promise.all([q.put('after the put'), q.get()]), 'put and get')
  t.is(after, 'after the put')
  // The get: a child's large item stalls midway, the signal aborts.
  const report = new Queue()
  const p = await started(t, ['death.mjs', 'stallMidStream'], [q, report, HUGE, 1500, 'after the get'], 'producer')
  t.is(await report.get({ timeout: 10000 }), 'stalled')
  const bc = new AbortController()
  setTimeout(() => bc.abort(), 300)
  const get = await within(10000, settle(q.get({ signal: bc.signal })), 'aborted get')
  t.true(get.error instanceof AbortError, `get: ${get.error ?? 'resolved'}`)
  t.is(await q.get({ timeout: 15000 }), 'after the get')
  t.is(await joined(p, 15000), 0)
})

for (const sync of [false, true]) {
  const how = sync ? 'sendSync' : 'send'
  test.serial(`a timed ${how} of a large message to a pipe whose reader stops ends with TimeoutError; the pipe goes on`, async (t) => {
    const [mine, theirs] = Pipe({ capacityBytes: RING })
    const report = new Queue()
    const reader = await started(t, ['abandon.mjs', 'recvAfterStall'], [theirs, report, 1500], 'reader')
    theirs.close()
    t.is(await report.get({ timeout: 10000 }), 'ready')
    const big = Buffer.alloc(HUGE, 1)
    if (sync) {
      t.throws(() => mine.sendSync(big, { timeout: 300 }), { instanceOf: TimeoutError })
    } else {
      await t.throwsAsync(within(10000, mine.send(big, { timeout: 300 }), 'timed send'), { instanceOf: TimeoutError })
    }
    await mine.send('after')
    t.is(await report.get({ timeout: 10000 }), 'after')
    t.is(await joined(reader), 0)
    mine.close()
  })
}

for (const sync of [false, true]) {
  const how = sync ? 'recvSync' : 'recv'
  test.serial(
    `a timed ${how} inside a large message whose sender stalls ends with TimeoutError; the next ${how} gets the next message`,
    async (t) => {
      const [mine, theirs] = Pipe({ capacityBytes: RING })
      const report = new Queue()
      const p = await started(t, ['abandon.mjs', 'sendStallMidStream'], [theirs, report, HUGE, 1500, 'next message'], 'sender')
      theirs.close()
      t.is(await report.get({ timeout: 10000 }), 'stalled')
      if (sync) {
        t.throws(() => mine.recvSync({ timeout: 300 }), { instanceOf: TimeoutError })
        t.is(mine.recvSync({ timeout: 15000 }), 'next message')
      } else {
        await t.throwsAsync(within(10000, mine.recv({ timeout: 300 }), 'timed recv'), { instanceOf: TimeoutError })
        const ac = new AbortController()
        t.is(await within(15000, mine.recv({ signal: ac.signal }), 'recv'), 'next message')
      }
      t.is(await joined(p, 15000), 0)
      mine.close()
    },
  )
}
