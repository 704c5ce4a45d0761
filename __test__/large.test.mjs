import { createHash, randomFillSync } from 'node:crypto'

import avaTest from 'ava'

import { Pipe, Process, Queue } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const SIZE = 64 << 20 // 64 MiB
const RING = 1 << 20 // 1 MiB
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

// Serial: each test holds several copies of 64 MiB, and two children hashing at once on two
// cores would only slow each other down.

test.serial('a 64 MiB Buffer from a child through a 1 MiB Queue arrives intact (async put/get)', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('large.mjs', 'sendBigQueue'), args: [q, SIZE] }))
  await p.start()
  const meta = await q.get({ timeout: 60000 })
  t.is(meta.length, SIZE)
  const buf = await q.get({ timeout: 60000 })
  t.true(Buffer.isBuffer(buf))
  t.is(buf.length, SIZE)
  t.is(sha256(buf), meta.hash)
  t.is(await joined(p, 30000), 0)
  t.true(q.empty())
})

test.serial('a 64 MiB Buffer from a child through a 1 MiB Queue arrives intact (putSync/getSync)', async (t) => {
  const q = new Queue({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('large.mjs', 'sendBigQueueSync'), args: [q, SIZE] }))
  await p.start()
  // getSync blocks this thread: the child does not need us to run anything meanwhile.
  const meta = q.getSync({ timeout: 60000 })
  const buf = q.getSync({ timeout: 60000 })
  t.is(buf.length, SIZE)
  t.is(meta.length, SIZE)
  t.is(sha256(buf), meta.hash)
  t.is(await joined(p, 30000), 0)
})

test.serial('a 64 MiB Buffer from the parent through a 1 MiB Queue reaches a child intact', async (t) => {
  const input = new Queue({ capacityBytes: RING })
  const output = new Queue()
  const p = guard(t, new Process({ target: fixture('large.mjs', 'hashOne'), args: [input, output] }))
  await p.start()
  const buf = Buffer.allocUnsafe(SIZE)
  randomFillSync(buf)
  await input.put(buf)
  const report = await output.get({ timeout: 60000 })
  t.deepEqual(report, { length: SIZE, hash: sha256(buf), isBuffer: true })
  t.is(await joined(p, 30000), 0)
})

test.serial('a 64 MiB Buffer from a child through a 1 MiB Pipe arrives intact (async send/recv)', async (t) => {
  const [mine, theirs] = Pipe({ duplex: false, capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('large.mjs', 'sendBigPipe'), args: [theirs, SIZE, false] }))
  await p.start()
  theirs.close()
  const meta = await mine.recv({ timeout: 60000 })
  const buf = await mine.recvBytes({ timeout: 60000 })
  t.is(meta.length, SIZE)
  t.is(buf.length, SIZE)
  t.is(sha256(buf), meta.hash)
  t.is(await joined(p, 30000), 0)
  mine.close()
})

test.serial('a 64 MiB Buffer from a child through a 1 MiB Pipe arrives intact (sendBytesSync, for await)', async (t) => {
  const [mine, theirs] = Pipe({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('large.mjs', 'sendBigPipe'), args: [theirs, SIZE, true] }))
  await p.start()
  theirs.close()
  const got = []
  for await (const v of mine) got.push(v)
  t.is(got.length, 2, 'the metadata and the buffer, then the end of the stream')
  const [meta, buf] = got
  t.is(buf.length, SIZE)
  t.is(sha256(buf), meta.hash)
  t.is(await joined(p, 30000), 0)
  mine.close()
})

test.serial('a 64 MiB Buffer from the parent through a 1 MiB Pipe reaches a child intact', async (t) => {
  const [mine, theirs] = Pipe({ capacityBytes: RING })
  const p = guard(t, new Process({ target: fixture('large.mjs', 'hashOnePipe'), args: [theirs] }))
  await p.start()
  theirs.close()
  const buf = Buffer.allocUnsafe(SIZE)
  randomFillSync(buf)
  await mine.sendBytes(buf)
  t.deepEqual(await mine.recv({ timeout: 60000 }), { length: SIZE, hash: sha256(buf) })
  t.is(await joined(p, 30000), 0)
  mine.close()
})
