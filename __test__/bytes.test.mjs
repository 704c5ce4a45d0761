import test from 'ava'

import { BrokenPipeError, BufferTooShort, Full, InvalidStateError, Pipe, Process, Queue } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, within } from './helpers.mjs'

checkNoLeaks(test)

test('recvBytesInto fills a caller-owned buffer, also with messages larger than the ring, async and sync', async (t) => {
  const [mine, theirs] = Pipe({ capacityBytes: 64 << 10 })
  const sizes = [0, 100, 70_000, 1 << 20, 5]
  const p = guard(t, new Process({ target: fixture('bytes.mjs', 'sendSizes'), args: [theirs, sizes] }))
  await p.start()
  theirs.close()
  const buf = Buffer.alloc((1 << 20) + 16, 0xee)
  for (const [i, n] of sizes.entries()) {
    const got =
      i % 2 === 0 ? await within(10000, mine.recvBytesInto(buf, 16, { timeout: 8000 })) : mine.recvBytesIntoSync(buf, 16, { timeout: 8000 })
    t.is(got, n, `message ${i}`)
    t.true(
      buf.subarray(16, 16 + n).every((b) => b === i + 1),
      `content of message ${i}`,
    )
    t.true(
      buf.subarray(0, 16).every((b) => b === 0xee),
      'bytes before the offset are untouched',
    )
  }
  t.is(await joined(p), 0)
  mine.close()
})

test('recvBytesInto with too little room rejects with BufferTooShort carrying the whole message', async (t) => {
  const [a, b] = Pipe()
  await b.sendBytes(Buffer.from('hello, world'))
  const e = await t.throwsAsync(a.recvBytesInto(Buffer.alloc(4), 0, { timeout: 5000 }), { instanceOf: BufferTooShort })
  t.is(e.code, 'ERR_BUFFER_TOO_SHORT')
  t.is(e.data.toString(), 'hello, world')
  b.sendBytesSync(Buffer.alloc(10))
  t.throws(() => a.recvBytesIntoSync(Buffer.alloc(8), 0, 5000), { instanceOf: BufferTooShort })
  t.throws(() => a.recvBytesIntoSync(Buffer.alloc(8), 9), { code: 'ERR_OUT_OF_RANGE' })
  a.close()
  b.close()
})

test('a send to a full pipe whose reader is gone fails with BrokenPipeError instead of waiting', async (t) => {
  const [mine, theirs] = Pipe({ capacityBytes: 64 << 10 })
  const p = guard(t, new Process({ target: fixture('bytes.mjs', 'closeAndExit'), args: [theirs] }))
  await p.start()
  theirs.close()
  t.is(await joined(p), 0)
  const chunk = Buffer.alloc(20 << 10)
  // The ring takes what fits; then the peer's absence is noticed.
  const sync = t.throws(() => {
    for (let i = 0; i < 10; i++) mine.sendBytesSync(chunk, 0, undefined, 5000)
  })
  t.true(sync instanceof BrokenPipeError, `sync: ${sync}`)
  t.is(sync.code, 'ERR_BROKEN_PIPE')
  await t.throwsAsync(within(10000, mine.sendBytes(chunk, 0, undefined, { timeout: 5000 })), { instanceOf: BrokenPipeError })
  mine.close()
})

test('putNowait of an item larger than the ring throws Full at once and says why', (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  const e = t.throws(() => q.putNowait(Buffer.alloc(10_000)), { instanceOf: Full })
  t.regex(e.message, /larger than the queue's ring/)
  q.putNowait(Buffer.alloc(100))
  t.is(q.getNowait().length, 100)
})

test('a one-way pipe used the wrong way round throws InvalidStateError', async (t) => {
  const [reader, writer] = Pipe({ duplex: false })
  t.throws(() => reader.sendSync(1), { instanceOf: InvalidStateError })
  await t.throwsAsync(writer.recv({ timeout: 10 }), { instanceOf: InvalidStateError })
  reader.close()
  writer.close()
})
