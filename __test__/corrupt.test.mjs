import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import { Empty, Process, ProtocolError, Queue, SerializationError, TimeoutError } from '../dist/index.js'
import { checkNoLeaks, fixture, fixtureUrl, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const native = createRequire(import.meta.url)('../native/index.cjs')

// Segment layout (crates/core/src/ring.rs): a 256-byte segment header, then per ring a 256-byte
// ring header (tail u64 at +0, head u64 at +128) followed by the ring's data.
const RING = 256
const TAIL = RING + 0
const HEAD = RING + 128
const DATA = 512

const corrupt = (q, offset, bytes) => native.channelCorruptForTest(q.chan, offset, bytes)
const u64 = (v) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(v))
  return b
}
/** The check word of a frame header, as the Rust side computes it. */
const frameCheck = (len, kind) => ((len ^ (len >>> 16)) & 0xffff) ^ ((kind * 0x0101) & 0xffff) ^ 0x5a3c
/** A frame header that passes the check word: u32 length, kind, 0, u16 check. */
function frameHeader(len, kind, reserved = 0) {
  const h = Buffer.alloc(8)
  h.writeUInt32LE(len >>> 0, 0)
  h[4] = kind
  h[5] = reserved
  h.writeUInt16LE(frameCheck(len >>> 0, kind), 6)
  return h
}

/** Runs fixtures/run-corrupt.mjs <what> in a separate node, to capture its child's stderr. */
function runCorrupt(what) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [fileURLToPath(fixtureUrl('run-corrupt.mjs')), what],
      { timeout: 20000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`run-corrupt ${what} failed: ${err.message}; stderr: ${stderr}`))
        else resolve({ stdout, stderr })
      },
    )
  })
}

/** Every receive form fails with ProtocolError (code ERR_PROTOCOL), none hangs. */
async function allReceivesFail(t, q, what) {
  const e = t.throws(() => q.getNowait(), { instanceOf: ProtocolError }, `${what}: getNowait`)
  t.is(e?.code, 'ERR_PROTOCOL')
  await t.throwsAsync(within(5000, q.get({ timeout: 2000 }), 'get'), { instanceOf: ProtocolError }, `${what}: get`)
  t.throws(() => q.getSync({ timeout: 2000 }), { instanceOf: ProtocolError }, `${what}: getSync`)
}

test('the test hook checks its bounds', (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  t.throws(() => corrupt(q, 1 << 30, Buffer.from([1])), { code: 'ERR_INVALID_ARG' })
})

test('a garbage frame header gives ProtocolError, not a crash', async (t) => {
  const q = new Queue()
  await q.put({ hello: 'world' })
  corrupt(q, DATA, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x42, 0x99]))
  await allReceivesFail(t, q, 'garbage header')
  t.is(q.qsize(), 1, 'the message is still counted; nothing was taken')
})

test("the test's frame header encoder matches the real one (control for the tests below)", async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  const payload = Buffer.from('0123456789')
  await q.put(payload)
  corrupt(q, DATA, frameHeader(10, 1)) // kind 1: a Buffer; rewriting the same header is a no-op
  t.deepEqual(await q.get({ timeout: 1000 }), payload)
})

test('a frame header with a non-zero reserved byte gives ProtocolError', async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  const probe = new Queue({ capacityBytes: 4096 })
  await q.put(Buffer.from('0123456789'))
  await probe.put('abc')
  corrupt(q, DATA, frameHeader(10, 1, 7))
  await allReceivesFail(t, q, 'reserved byte')
  t.is(probe.getNowait(), 'abc', 'other queues are untouched')
})

test('a tail far beyond the head gives ProtocolError on both sides', async (t) => {
  const q = new Queue()
  await q.put(1)
  corrupt(q, TAIL, u64(2n ** 62n))
  await allReceivesFail(t, q, 'huge tail')
  t.throws(() => q.putNowait(2), { instanceOf: ProtocolError, code: 'ERR_PROTOCOL' })
  await t.throwsAsync(within(5000, q.put(2, { timeout: 2000 }), 'put'), { instanceOf: ProtocolError })
  t.throws(() => q.putSync(2, { timeout: 2000 }), { instanceOf: ProtocolError })
})

test('a head beyond the tail gives ProtocolError', async (t) => {
  const q = new Queue()
  await q.put(1)
  corrupt(q, HEAD, u64(1n << 40n))
  await allReceivesFail(t, q, 'head past tail')
})

test('tail ahead of the committed bytes by less than a frame header gives ProtocolError', async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  corrupt(q, TAIL, u64(3))
  await allReceivesFail(t, q, 'three bytes')
})

test('a valid-looking header whose length exceeds the message limit gives ProtocolError', async (t) => {
  const q = new Queue()
  await q.put('x')
  corrupt(q, DATA, frameHeader(0xffff_fff0, 0))
  await allReceivesFail(t, q, 'length over the limit')
})

test('a valid-looking header whose frame fits the ring but is longer than what is committed gives ProtocolError', async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  await q.put('x')
  corrupt(q, DATA, frameHeader(1000, 0))
  await allReceivesFail(t, q, 'frame longer than committed')
})

test('a valid frame whose payload is garbage gives SerializationError; the next message is fine', async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  await q.put({ a: 'first message, to be garbled' })
  await q.put('second')
  // Keep the header, garble the structured-clone payload right after it.
  corrupt(q, DATA + 8, Buffer.from([0xff, 0x0f, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]))
  await t.throwsAsync(q.get({ timeout: 2000 }), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
  t.is(await q.get({ timeout: 2000 }), 'second')
})

test('a valid frame of an unknown kind gives SerializationError; the next message is fine', async (t) => {
  const q = new Queue({ capacityBytes: 4096 })
  await q.put(Buffer.from('0123456789'))
  await q.put('next')
  corrupt(q, DATA, frameHeader(10, 9))
  const e = await t.throwsAsync(q.get({ timeout: 2000 }), { instanceOf: SerializationError })
  t.regex(e.message, /kind/)
  t.is(q.getNowait(), 'next')
})

test('a forged length larger than the ring, with nothing streaming: no crash, no hang', async (t) => {
  // Hardening gap (see the report): the consumer takes this for a streamed message and waits for
  // bytes that never come, instead of a ProtocolError. What must hold in any case: the process
  // lives and a timed get ends.
  const q = new Queue({ capacityBytes: 4096 })
  await q.put('x')
  corrupt(q, DATA, frameHeader(0x7fff_ffff, 0))
  let outcome
  try {
    outcome = q.getNowait()
  } catch (err) {
    outcome = err
  }
  t.true(outcome instanceof ProtocolError || outcome instanceof Empty, `getNowait gave ${outcome}`)
  const err = await t.throwsAsync(within(5000, q.get({ timeout: 300 }), 'get'))
  t.true(err instanceof ProtocolError || err instanceof TimeoutError, `get gave ${err}`)
})

test('a child given a channel with a corrupt segment header fails with ProtocolError; the parent lives', async (t) => {
  for (const what of ['magic', 'capacity']) {
    const { stdout, stderr } = await runCorrupt(what)
    t.deepEqual(JSON.parse(stdout), { started: 'ERR_PROCESS', exitCode: 1, parentStillReads: 'in the parent' }, `${what}: ${stderr}`)
    t.regex(stderr, /ProtocolError: corrupt channel/, what)
  }
})

test('corruption seen by a child is reported there as ProtocolError', async (t) => {
  const q = new Queue()
  const report = new Queue()
  await q.put('will be garbled')
  corrupt(q, DATA, Buffer.alloc(8, 0xab))
  const p = guard(t, new Process({ target: fixture('corrupt.mjs', 'getAndReport'), args: [q, report] }))
  await p.start()
  const r = await report.get({ timeout: 10000 })
  t.like(r, { ok: false, name: 'ProtocolError', code: 'ERR_PROTOCOL' })
  t.is(await joined(p), 0)
})
