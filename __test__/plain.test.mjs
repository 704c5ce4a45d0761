// The fast path for plain data must give exactly what V8's structured clone gives: checked here
// against v8.deserialize(v8.serialize(v)) on thousands of generated values, through a real Queue.
import { isDeepStrictEqual } from 'node:util'
import v8 from 'node:v8'

import test from 'ava'

import { Queue } from '../dist/index.js'
import { checkNoLeaks } from './helpers.mjs'

checkNoLeaks(test)

/** A small seeded generator (mulberry32), so that a failure can be replayed. */
function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const NUMBERS = [0, -0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53, 1.5, -1e-300, Number.NaN, Infinity, -Infinity, Number.MIN_VALUE]
const STRINGS = [
  '',
  'a',
  'héllo',
  '日本語',
  '😀',
  'a\u0000b',
  '\ud800',
  'x\udc00y',
  '__proto__',
  '0',
  '10',
  '-1',
  '1.5',
  'constructor',
  'é'.repeat(300),
  // Around the lengths that short ASCII strings are copied by hand (8 to decode, 16 to encode).
  'abcdefgh',
  'abcdefghi',
  'abcdefg\u007f',
  'abcdefgé',
  '\u0080',
  'ab\ud83d',
  'a'.repeat(16),
  'a'.repeat(17),
  `${'a'.repeat(15)}é`,
  `${'a'.repeat(15)}\udfff`,
]

function gen(r, depth) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)]
  const k = Math.floor(r() * (depth > 3 ? 6 : 13))
  switch (k) {
    case 0:
      return undefined
    case 1:
      return null
    case 2:
      return r() < 0.5
    case 3:
      return pick(NUMBERS)
    case 4:
      return Math.floor((r() - 0.5) * 1e6)
    case 5:
      return pick(STRINGS)
    case 6:
    case 7: {
      const a = Array.from({ length: Math.floor(r() * 5) }, () => gen(r, depth + 1))
      if (r() < 0.1) a.length += 2 // holes
      if (r() < 0.05) a.extra = 1 // an extra property
      return a
    }
    case 8:
    case 9: {
      const o = r() < 0.05 ? Object.create(null) : {}
      for (let i = Math.floor(r() * 5); i > 0; i--) {
        const key = pick(STRINGS)
        if (key === '__proto__')
          Object.defineProperty(o, key, { value: gen(r, depth + 1), enumerable: true, writable: true, configurable: true })
        else o[key] = gen(r, depth + 1)
      }
      return o
    }
    case 10:
      return pick([new Date(0), new Map([[1, 2]]), new Set([1]), 10n, new Uint8Array([1, 2]), /x/g, new Number(3), new (class A {})()])
    case 11: {
      const shared = { s: 1 }
      return [shared, shared]
    }
    default: {
      const cyclic = { c: 1 }
      cyclic.self = cyclic
      return cyclic
    }
  }
}

/** Deep equality that also compares key order and the identity structure. */
function same(a, b) {
  if (!isDeepStrictEqual(a, b)) return false
  const order = (v, seen = new Set()) => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return null
    seen.add(v)
    return Object.keys(v).map((k) => [k, order(v[k], seen)])
  }
  return JSON.stringify(order(a)) === JSON.stringify(order(b))
}

test('plain data and everything else come out of a queue exactly as structured clone gives them', (t) => {
  const q = new Queue()
  const r = rng(12345)
  for (let i = 0; i < 5000; i++) {
    const v = gen(r, 0)
    const expected = v8.deserialize(v8.serialize(v))
    q.putSync(v)
    const got = q.getSync({ timeout: 1000 })
    if (!same(got, expected)) {
      t.fail(`value ${i} differs: ${v8.serialize(v).toString('hex')}`)
      return
    }
  }
  t.pass()
})

test('shared references and cycles keep their identity', (t) => {
  const q = new Queue()
  const shared = { n: 1 }
  q.putSync([shared, shared])
  const [a, b] = q.getSync()
  t.is(a, b)
  const c = { x: 1 }
  c.self = c
  q.putSync(c)
  const back = q.getSync()
  t.is(back.self, back)
})

test('a getter that throws while being read gives SerializationError', (t) => {
  const q = new Queue()
  const bad = {
    get boom() {
      throw new Error('no')
    },
  }
  t.throws(() => q.putSync(bad), { code: 'ERR_SERIALIZATION' })
  q.putSync({ fine: true })
  t.deepEqual(q.getSync(), { fine: true })
})

test('undefined and null are messages like any other, async and sync', async (t) => {
  const q = new Queue()
  q.putSync(undefined)
  await q.put(null)
  await q.put(undefined)
  t.is(q.getSync({ timeout: 1000 }), undefined)
  t.is(await q.get({ timeout: 1000 }), null)
  t.is(await q.get({ timeout: 1000 }), undefined)
  t.true(q.empty())
})

test('a getter that itself sends a message does not disturb the message being encoded', (t) => {
  const q = new Queue()
  const inner = new Queue()
  const tricky = {
    a: 1,
    get b() {
      inner.putSync({ nested: [1, 2, 3] })
      return 'bee'
    },
    c: [4, 5],
  }
  q.putSync(tricky)
  t.deepEqual(q.getSync(), { a: 1, b: 'bee', c: [4, 5] })
  t.deepEqual(inner.getSync(), { nested: [1, 2, 3] })
})

test('arrays of numbers (packed as int32 or float64) round-trip exactly, through a real Queue', async (t) => {
  const q = new Queue()
  const cases = [
    Array.from({ length: 1000 }, (_, i) => i - 500),
    Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? -0 : i)),
    Array.from({ length: 64 }, (_, i) => NUMBERS[i % NUMBERS.length]),
    [1, 2, 3, 4, 5, 6, 7, 8, 'nine', 10],
    Object.assign(
      Array.from({ length: 16 }, (_, i) => i),
      { extra: true },
    ),
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    [1, 2, 3, 4, 5, 6, 7, , 9, 10],
  ]
  for (const v of cases) {
    q.putSync({ v })
    const got = q.getSync({ timeout: 5000 })
    t.true(isDeepStrictEqual(got, v8.deserialize(v8.serialize({ v }))), String(v))
    t.is(Object.is(got.v[0], v[0]), true)
  }
  const withNegZero = q.putSync(Array.from({ length: 10 }, () => -0)) ?? q.getSync({ timeout: 5000 })
  t.true(withNegZero.every((x) => Object.is(x, -0)))
})

test('long arrays of numbers round-trip exactly at every alignment, and near the plain size limit', async (t) => {
  const q = new Queue({ capacityBytes: 4 << 20 })
  const ints = Array.from({ length: 30_000 }, (_, i) => (i % 2 ? -(2 ** 31) + i : 2 ** 31 - 1 - i))
  const doubles = Array.from({ length: 30_000 }, (_, i) => NUMBERS[i % NUMBERS.length] * (i % 3 ? 1 : -1))
  const same = (a, b) => Array.isArray(b) && a.length === b.length && a.every((v, i) => Object.is(v, b[i]))
  // A prefix of 0–8 bytes puts the packed numbers at every offset modulo 8 within the message.
  for (let shift = 0; shift <= 8; shift++) {
    for (const v of [ints, doubles]) {
      q.putSync(['x'.repeat(shift), v])
      const [prefix, got] = q.getSync({ timeout: 5000 })
      t.is(prefix.length, shift)
      t.true(same(v, got), `shift ${shift}, ${v === ints ? 'int32' : 'float64'}`)
    }
  }
  // 131,072 float64 numbers fill the plain encoding's 1 MiB; more go by structured clone, as exactly.
  for (const n of [131_000, 140_000, 300_000]) {
    const v = Array.from({ length: n }, (_, i) => (i % 5 === 0 ? -0 : i / 3))
    await q.put(v)
    t.true(same(v, await q.get({ timeout: 5000 })), `${n} numbers`)
  }
})

test('arrays that only look packed fall back exactly: a late string, object, hole, -0 among int32, a subclass', (t) => {
  const q = new Queue()
  class Numbers extends Array {}
  const base = () => Array.from({ length: 5000 }, (_, i) => i)
  const cases = [
    Object.assign(base(), { 4999: 'last' }),
    Object.assign(base(), { 2500: { n: 1 } }),
    Object.assign(base(), { 4000: undefined }),
    Object.assign(base(), { 3000: -0 }),
    Object.assign(base(), { 10: 2 ** 31 }),
    (() => {
      const a = base()
      delete a[4998]
      return a
    })(),
    (() => {
      const a = base()
      a.length = 5005
      return a
    })(),
    Numbers.from(base()),
  ]
  for (const v of cases) {
    q.putSync(v)
    const got = q.getSync({ timeout: 5000 })
    const expected = v8.deserialize(v8.serialize(v))
    t.true(same(got, expected), JSON.stringify(v.slice(0, 3)))
    t.is(Object.keys(got).length, Object.keys(expected).length)
    t.true(got.every((x, i) => typeof x === 'object' || Object.is(x, expected[i])))
  }
})
