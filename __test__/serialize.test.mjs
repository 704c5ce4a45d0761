import avaTest from 'ava'

import { Pipe, Process, Queue, SerializationError } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

/** Values that structured clone (or the raw byte path) must carry intact, each with a label. */
function samples() {
  const cyclic = { name: 'root', children: [] }
  cyclic.self = cyclic
  cyclic.children.push({ parent: cyclic, n: 1 })
  const cyclicArray = [1, 2]
  cyclicArray.push(cyclicArray)
  const sharedChild = { shared: true }
  const cyclicMap = new Map()
  cyclicMap.set('me', cyclicMap).set('a', sharedChild).set('b', sharedChild)

  const pooled = Buffer.from('a short buffer from the pool slab') // byteOffset ≠ 0 in a shared slab
  const backing = new Uint8Array(64).map((_, i) => i)
  const view = new Uint8Array(backing.buffer, 7, 11) // a view into the middle of a larger buffer

  return [
    ['number', 42.5],
    ['special numbers', [Number.NaN, -0, Number.POSITIVE_INFINITY, Number.MIN_VALUE, Number.MAX_SAFE_INTEGER]],
    ['string', 'héllo wörld 🌍 \u0000 end'],
    ['booleans, null, undefined', [true, false, null, undefined]],
    // biome-ignore lint/suspicious/noSparseArray: the hole is what is being tested
    ['sparse array', [1, , 3]],
    ['nested object', { a: { b: { c: { d: [1, { e: 'deep' }] } } }, list: [[1, [2, [3]]]] }],
    [
      'Map',
      new Map([
        [1, 'one'],
        ['two', { two: 2 }],
        [{ k: 1 }, [1, 2]],
      ]),
    ],
    ['Set', new Set([1, 'a', { b: 2 }, 3n])],
    ['Date', new Date(Date.UTC(2020, 1, 29, 12, 34, 56, 789))],
    ['BigInt', 2n ** 100n + 1n],
    ['negative BigInt', -(2n ** 64n)],
    ['Int8Array', Int8Array.from([-128, -1, 0, 1, 127])],
    ['Uint16Array', Uint16Array.from([0, 1, 65535])],
    ['Int32Array', Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1])],
    ['Float32Array', Float32Array.from([1.5, -2.25, Number.NaN])],
    ['Float64Array', Float64Array.from([Math.PI, -Math.E, Number.POSITIVE_INFINITY])],
    ['BigInt64Array', BigInt64Array.from([-(2n ** 63n), 0n, 2n ** 63n - 1n])],
    ['BigUint64Array', BigUint64Array.from([0n, 2n ** 64n - 1n])],
    ['Uint8ClampedArray', Uint8ClampedArray.from([0, 128, 255])],
    ['DataView', new DataView(Uint8Array.from([1, 2, 3, 4]).buffer, 1, 2)],
    ['Buffer', Buffer.from([0, 1, 2, 253, 254, 255])],
    ['pooled Buffer', pooled],
    ['Uint8Array', Uint8Array.from([9, 8, 7, 6])],
    ['Uint8Array view with an offset', view],
    ['empty Uint8Array', new Uint8Array(0)],
    ['ArrayBuffer', Uint8Array.from([5, 4, 3, 2, 1]).buffer],
    ['empty ArrayBuffer', new ArrayBuffer(0)],
    ['RegExp', /a+(b|c)*\d?$/giu],
    ['object cycle', cyclic],
    ['array cycle', cyclicArray],
    ['Map cycle with a shared child', cyclicMap],
    ['typed arrays inside an object', { f: Float64Array.from([1, 2]), b: Buffer.from('xy'), u: Uint8Array.from([3]) }],
    ['larger than the 64 KiB scratch buffer', { big: Float64Array.from({ length: 20000 }, (_, i) => i * 0.5), s: 'x'.repeat(100_000) }],
    ['boxed primitives', [new Number(3), new String('s'), new Boolean(false)]],
  ]
}

/** Checks a received value against what was sent, including identities that cycles need. */
function checkSame(t, label, got, sent) {
  if (sent instanceof ArrayBuffer) {
    t.true(got instanceof ArrayBuffer, `${label}: an ArrayBuffer`)
    t.deepEqual(Buffer.from(got), Buffer.from(sent), label)
    return
  }
  if (sent instanceof DataView) {
    t.true(got instanceof DataView, `${label}: a DataView`)
    t.deepEqual(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(sent.buffer, sent.byteOffset, sent.byteLength), label)
    return
  }
  if (Buffer.isBuffer(sent)) {
    t.true(Buffer.isBuffer(got), `${label}: a Buffer`)
    t.true(sent.equals(got), label)
    return
  }
  if (sent instanceof Uint8Array && sent.constructor === Uint8Array) {
    t.is(got.constructor, Uint8Array, `${label}: a plain Uint8Array`)
    t.deepEqual([...got], [...sent], label)
    return
  }
  if (sent instanceof RegExp) {
    t.true(got instanceof RegExp, label)
    t.is(got.source, sent.source, label)
    t.is(got.flags, sent.flags, label)
    return
  }
  t.deepEqual(got, sent, label)
  if (label === 'object cycle') {
    t.is(got.self, got, 'the cycle closes on the received object')
    t.is(got.children[0].parent, got)
  }
  if (label === 'array cycle') t.is(got[2], got)
  if (label === 'Map cycle with a shared child') {
    t.is(got.get('me'), got)
    t.is(got.get('a'), got.get('b'), 'a shared child stays shared')
  }
}

function checkError(t, got, sent) {
  t.true(got instanceof Error, 'an Error')
  t.is(got.constructor, sent.constructor, 'the same built-in class')
  t.is(got.name, sent.name)
  t.is(got.message, sent.message)
  t.is(got.stack, sent.stack, 'the stack travels')
}

test('every structured-clone type round-trips through a Queue and a child process', async (t) => {
  const input = new Queue()
  const output = new Queue()
  const p = guard(t, new Process({ target: fixture('echo.mjs', 'echoQueue'), args: [input, output] }))
  await p.start()
  const values = samples()
  for (const [, v] of values) await input.put(v)
  const errors = [new Error('plain'), new TypeError('typed'), new RangeError('ranged')]
  for (const e of errors) await input.put(e)
  input.close()
  for (const [label, v] of values) checkSame(t, label, await output.get({ timeout: 10000 }), v)
  for (const e of errors) checkError(t, await output.get({ timeout: 10000 }), e)
  t.is(await joined(p), 0)
})

test('every structured-clone type round-trips through a Pipe and a child process', async (t) => {
  const [mine, theirs] = Pipe()
  const p = guard(t, new Process({ target: fixture('echo.mjs', 'echoPipe'), args: [theirs] }))
  await p.start()
  theirs.close()
  for (const [label, v] of samples()) {
    await mine.send(v)
    checkSame(t, label, await mine.recv({ timeout: 10000 }), v)
  }
  const err = new SyntaxError('through the pipe')
  await mine.send(err)
  checkError(t, await mine.recv({ timeout: 10000 }), err)
  mine.close()
  t.is(await joined(p), 0)
})

test('sync twins carry the same values (putSync/getSync, sendSync/recvSync)', async (t) => {
  const q = new Queue()
  const [a, b] = Pipe()
  for (const [label, v] of samples()) {
    q.putSync(v)
    checkSame(t, `queue: ${label}`, q.getSync({ timeout: 5000 }), v)
    a.sendSync(v)
    checkSame(t, `pipe: ${label}`, b.recvSync({ timeout: 5000 }), v)
  }
  a.close()
  b.close()
})

const unserialisable = [
  ['a function', () => 1],
  ['a symbol', Symbol('nope')],
  ['an object holding a function', { ok: 1, fn() {} }],
  ['a Map holding a symbol', new Map([['k', Symbol.iterator]])],
  ['a WeakMap', new WeakMap()],
]

for (const [label, value] of unserialisable) {
  test(`${label} gives SerializationError at put, and the queue stays usable`, async (t) => {
    const q = new Queue()
    await q.put('before')
    const e1 = await t.throwsAsync(q.put(value), { instanceOf: SerializationError })
    t.is(e1.code, 'ERR_SERIALIZATION')
    const e2 = t.throws(() => q.putSync(value), { instanceOf: SerializationError })
    t.is(e2.code, 'ERR_SERIALIZATION')
    t.throws(() => q.putNowait(value), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
    t.is(q.qsize(), 1, 'nothing was enqueued by the failed puts')
    await q.put('after')
    t.is(await q.get({ timeout: 1000 }), 'before')
    t.is(await q.get({ timeout: 1000 }), 'after')
    t.true(q.empty())
  })
}

test('an unserialisable value gives SerializationError at send on a Pipe, which stays usable', async (t) => {
  const [a, b] = Pipe()
  await t.throwsAsync(
    a.send(() => 1),
    { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' },
  )
  t.throws(() => a.sendSync(Symbol('s')), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
  await a.send({ still: 'works' })
  t.deepEqual(await b.recv({ timeout: 1000 }), { still: 'works' })
  a.close()
  b.close()
})

test('the queue stays usable across processes after a failed put', async (t) => {
  const input = new Queue()
  const output = new Queue()
  const p = guard(t, new Process({ target: fixture('echo.mjs', 'echoQueue'), args: [input, output] }))
  await p.start()
  await t.throwsAsync(input.put({ f: () => {} }), { instanceOf: SerializationError })
  await input.put(new Map([['after', 1n]]))
  input.close()
  t.deepEqual(await output.get({ timeout: 10000 }), new Map([['after', 1n]]))
  t.is(await joined(p), 0)
})

/** A JSON serializer that tags what it wrote, so the test can tell it was used. */
function jsonSerializer() {
  return {
    calls: 0,
    serialize(v) {
      this.calls++
      return Buffer.from(`J${JSON.stringify(v)}`)
    },
    deserialize(bytes) {
      const text = Buffer.from(bytes).toString()
      if (!text.startsWith('J')) throw new Error('not written by this serializer')
      return JSON.parse(text.slice(1))
    },
  }
}

test('a custom serializer on a queue is used for its items (within one process)', async (t) => {
  const serializer = jsonSerializer()
  const q = new Queue({ serializer })
  const date = new Date(Date.UTC(2021, 0, 2))
  await q.put({ when: date, n: 1 })
  q.putSync([1, 'two'])
  q.putNowait(Buffer.from('ab')) // the serializer replaces the raw byte path too
  t.is(serializer.calls, 3)
  // JSON turns a Date into its ISO string: proof the custom serializer, not structured clone, ran.
  t.deepEqual(await q.get({ timeout: 1000 }), { when: date.toISOString(), n: 1 })
  t.deepEqual(q.getSync({ timeout: 1000 }), [1, 'two'])
  t.deepEqual(q.getNowait(), { type: 'Buffer', data: [97, 98] })
})

test('a custom serializer that throws, or returns no bytes, gives SerializationError', async (t) => {
  const throwing = new Queue({
    serializer: {
      serialize() {
        throw new Error('cannot')
      },
      deserialize: (b) => b,
    },
  })
  const e = await t.throwsAsync(throwing.put(1), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
  t.regex(e.message, /cannot/)
  const wrong = new Queue({ serializer: { serialize: () => 'not bytes', deserialize: (b) => b } })
  t.throws(() => wrong.putSync(1), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
  t.true(wrong.empty())
})

test('a custom serializer that cannot read a message gives SerializationError at get, and the queue goes on', async (t) => {
  let fail = true
  const q = new Queue({
    serializer: {
      serialize: (v) => Buffer.from(JSON.stringify(v)),
      deserialize(b) {
        if (fail) throw new Error('unreadable')
        return JSON.parse(Buffer.from(b).toString())
      },
    },
  })
  await q.put({ first: 1 })
  await q.put({ second: 2 })
  await t.throwsAsync(q.get({ timeout: 1000 }), { instanceOf: SerializationError, code: 'ERR_SERIALIZATION' })
  fail = false
  t.deepEqual(await q.get({ timeout: 1000 }), { second: 2 })
})

test('a custom serializer on a Pipe is used by both ends in one process', async (t) => {
  const [a, b] = Pipe({ serializer: jsonSerializer() })
  await a.send({ d: new Date(0) })
  t.deepEqual(await b.recv({ timeout: 1000 }), { d: '1970-01-01T00:00:00.000Z' })
  a.close()
  b.close()
})

test('the timeout watchdog itself works (sanity of the helper)', async (t) => {
  await t.throwsAsync(within(20, new Promise(() => {}), 'never'), { message: /watchdog: never/ })
})
