/**
 * A fast, exact encoding for plain data: `undefined`, `null`, booleans, numbers, well-formed
 * strings, and dense arrays and plain objects of those, as long as no object appears twice. For
 * such values it gives what V8's structured clone gives (key order, `-0`, `NaN`, a `__proto__`
 * key) at a fraction of the cost; anything else (Dates, Maps, typed arrays, BigInts, holes, shared
 * or cyclic references, class instances, proxies, lone surrogates) is left to structured clone.
 */
import { endianness } from 'node:os'
import { types } from 'node:util'
import { SerializationError } from './errors.js'

enum Tag {
  Undefined = 0,
  Null = 1,
  False = 2,
  True = 3,
  Int32 = 4,
  Float64 = 5,
  String = 6,
  Array = 7,
  Object = 8,
  /** A dense array of int32 numbers (none `-0`): a count, then 4 bytes each. */
  Int32Array = 9,
  /** A dense array of numbers: a count, then 8 bytes each. */
  Float64Array = 10,
}

/** Arrays this package built itself (dense, no extra properties): spared the costly check. */
const ours = new WeakSet<unknown[]>()

/** @internal Marks an array the caller made and filled itself, with no holes or extra properties. */
export function trustArray<T extends unknown[]>(a: T): T {
  // Only worth it for long arrays: a WeakSet entry costs more than checking a short one.
  if (a.length >= 64) ours.add(a)
  return a
}

/**
 * How an array of numbers packs: 0 not all numbers, 1 all int32, 2 all numbers. An array that
 * passes has no holes either (a hole reads `undefined`). A small function with one loop, so that
 * V8 optimises it within the first long array it meets.
 */
function numbersKind(v: unknown[]): 0 | 1 | 2 {
  let kind: 1 | 2 = 1
  for (let i = 0; i < v.length; i++) {
    const x = v[i]
    if (typeof x !== 'number') return 0
    // 1 / -0 is -Infinity: the one int32-looking number that int32 would not keep.
    if (kind === 1 && ((x | 0) !== x || (x === 0 && 1 / x < 0))) kind = 2
  }
  return kind
}

/**
 * Packed numbers are copied as typed arrays (native code, fast from the first call) where the
 * host's byte order is the wire's, little-endian; elsewhere through a DataView, one by one.
 */
const NATIVE_ORDER = endianness() === 'LE'

/**
 * Aligned room for packed numbers whose place in a message is not aligned: one for the encoder,
 * one for the decoder (an index getter run while an array is copied may itself decode a message).
 */
const bulk = { encoding: new ArrayBuffer(16 * 1024), decoding: new ArrayBuffer(16 * 1024) }

function bulkOf(which: keyof typeof bulk, bytes: number): ArrayBuffer {
  const b = bulk[which]
  if (b.byteLength >= bytes) return b
  bulk[which] = new ArrayBuffer(Math.max(bytes, b.byteLength * 2))
  return bulk[which]
}

/** Values that encode larger than this are left to structured clone (it copes well with bulk). */
const MAX_BYTES = 1 << 20
const MAX_DEPTH = 64

const FALLBACK = Symbol('fallback')
const EMPTY_OBJECT = {}

let out = Buffer.allocUnsafeSlow(16 * 1024)
let outView = new DataView(out.buffer, out.byteOffset, out.byteLength)
let pos = 0
/** The containers met so far: looked through while few, then in a Set. */
const FEW_CONTAINERS = 8
const met: object[] = []
let metCount = 0
let seen: Set<object> | undefined
let busy = false

function room(n: number): void {
  if (pos + n <= out.length) return
  if (pos + n > MAX_BYTES) throw FALLBACK
  const bigger = Buffer.allocUnsafeSlow(Math.min(MAX_BYTES, Math.max(out.length * 2, pos + n)))
  out.copy(bigger, 0, 0, pos)
  out = bigger
  outView = new DataView(out.buffer, out.byteOffset, out.byteLength)
}

function tag(t: Tag): void {
  room(1)
  out[pos++] = t
}

function u32(n: number): void {
  room(4)
  out.writeUInt32LE(n, pos)
  pos += 4
}

/** Strings up to this long are copied by hand when ASCII: cheaper than a call into C++. */
const SHORT_STRING = 16

function str(s: string): void {
  const n = s.length
  if (n <= SHORT_STRING) {
    room(4 + n)
    const to = pos + 4
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      out[to + i] = c
    }
    if (i === n) {
      out.writeUInt32LE(n, pos)
      pos = to + n
      return
    }
  }
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) throw FALLBACK
  room(4 + n * 3)
  const bytes = out.write(s, pos + 4, 'utf8')
  out.writeUInt32LE(bytes, pos)
  pos += 4 + bytes
}

function value(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'undefined':
      tag(Tag.Undefined)
      break
    case 'boolean':
      tag(v ? Tag.True : Tag.False)
      break
    case 'number':
      if ((v | 0) === v && !Object.is(v, -0)) {
        tag(Tag.Int32)
        room(4)
        out.writeInt32LE(v, pos)
        pos += 4
      } else {
        tag(Tag.Float64)
        room(8)
        out.writeDoubleLE(v, pos)
        pos += 8
      }
      break
    case 'string':
      tag(Tag.String)
      str(v)
      break
    case 'object':
      if (v === null) tag(Tag.Null)
      else container(v, depth)
      break
    default:
      throw FALLBACK
  }
}

function container(v: object, depth: number): void {
  if (depth > MAX_DEPTH || types.isProxy(v)) throw FALLBACK
  // Structured clone keeps shared and cyclic references: leave any repeat to it.
  if (seen !== undefined) {
    if (seen.has(v)) throw FALLBACK
    seen.add(v)
  } else {
    for (let i = 0; i < metCount; i++) if (met[i] === v) throw FALLBACK
    if (metCount < FEW_CONTAINERS) met[metCount++] = v
    else seen = new Set([...met, v])
  }
  const proto = Object.getPrototypeOf(v)
  if (Array.isArray(v)) {
    if (proto !== Array.prototype) throw FALLBACK
    const n = v.length
    const trusted = ours.has(v)
    // Holes and extra properties are kept by structured clone: leave those arrays to it.
    if (!trusted && Object.keys(v).length !== n) throw FALLBACK
    // All numbers means no holes: the check for them is needed only when the array does not pack.
    const packed = n >= 8 ? numbersKind(v) : 0
    if (packed !== 0) {
      packNumbers(v, packed === 1)
      return
    }
    if (trusted) for (let i = 0; i < n; i++) if (v[i] === undefined && !(i in v)) throw FALLBACK
    tag(Tag.Array)
    u32(n)
    for (let i = 0; i < n; i++) value(v[i], depth + 1)
    return
  }
  if (proto !== Object.prototype && proto !== null) throw FALLBACK
  const keys = Object.keys(v)
  tag(Tag.Object)
  u32(keys.length)
  for (const k of keys) {
    str(k)
    value((v as Record<string, unknown>)[k], depth + 1)
  }
}

/** Writes an array of numbers (checked: all numbers, and all int32 when `int32`) packed. */
function packNumbers(v: unknown[], int32: boolean): void {
  const n = v.length
  const size = int32 ? 4 : 8
  tag(int32 ? Tag.Int32Array : Tag.Float64Array)
  u32(n)
  room(size * n)
  if (NATIVE_ORDER) {
    const at = out.byteOffset + pos
    const direct = at % size === 0
    const buffer = direct ? out.buffer : bulkOf('encoding', size * n)
    const offset = direct ? at : 0
    // TypedArray#set copies a JS array of numbers in native code.
    if (int32) new Int32Array(buffer, offset, n).set(v as number[])
    else new Float64Array(buffer, offset, n).set(v as number[])
    if (!direct) out.set(new Uint8Array(buffer, 0, size * n), pos)
  } else if (int32) {
    for (let i = 0; i < n; i++) outView.setInt32(pos + 4 * i, v[i] as number, true)
  } else {
    for (let i = 0; i < n; i++) outView.setFloat64(pos + 8 * i, v[i] as number, true)
  }
  pos += size * n
}

/**
 * The bytes of `v` in the plain encoding (a new Buffer, or with `scratch` a view that the next
 * encode overwrites), or `undefined` when `v` is not plain data. Errors thrown by the value itself
 * (a getter) propagate.
 */
export function encodePlain(v: unknown, scratch = false): Buffer | undefined {
  // A getter of the value being encoded may itself send a message: leave that one to V8 rather
  // than overwrite the encoding in progress.
  if (busy) return undefined
  busy = true
  pos = 0
  metCount = 0
  seen = undefined
  try {
    value(v, 0)
  } catch (err) {
    if (err === FALLBACK) return undefined
    throw err
  } finally {
    busy = false
    // Not kept alive by the encoder once it is done.
    for (let i = 0; i < metCount; i++) met[i] = EMPTY_OBJECT
    metCount = 0
    seen = undefined
  }
  // A view of the scratch buffer serves a caller that is done with it before the next encode.
  if (scratch) return out.subarray(0, pos)
  const bytes = Buffer.allocUnsafe(pos)
  out.copy(bytes, 0, 0, pos)
  return bytes
}

// The decoder's cursor: module state rather than closures, so a decode allocates only its value.
let src: Buffer = Buffer.alloc(0)
let srcView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
let at = 0

function need(n: number): void {
  if (at + n > src.length) throw new SerializationError('truncated plain-data message')
}

function readU32(): number {
  need(4)
  const n = src.readUInt32LE(at)
  at += 4
  return n
}

/** Strings up to this long are decoded by hand when ASCII (keys, names, short words). */
const SHORT_DECODE = 8

function readStr(): string {
  const n = readU32()
  need(n)
  const end = at + n
  if (n <= SHORT_DECODE) {
    let s = ''
    let i = at
    for (; i < end; i++) {
      const b = src[i] as number
      if (b >= 0x80) break
      s += String.fromCharCode(b)
    }
    if (i === end) {
      at = end
      return s
    }
  }
  const s = src.toString('utf8', at, end)
  at = end
  return s
}

function read(depth: number): unknown {
  if (depth > MAX_DEPTH) throw new SerializationError('plain-data message nested too deep')
  need(1)
  const t = src[at++]
  switch (t) {
    case Tag.Undefined:
      return undefined
    case Tag.Null:
      return null
    case Tag.False:
      return false
    case Tag.True:
      return true
    case Tag.Int32: {
      need(4)
      const n = src.readInt32LE(at)
      at += 4
      return n
    }
    case Tag.Float64: {
      need(8)
      const n = src.readDoubleLE(at)
      at += 8
      return n
    }
    case Tag.String:
      return readStr()
    case Tag.Array: {
      const n = readU32()
      // Every element takes at least one byte: a length beyond what is left is corrupt.
      need(n)
      const a = new Array(n)
      for (let i = 0; i < n; i++) a[i] = read(depth + 1)
      return a
    }
    case Tag.Int32Array:
      return unpackNumbers(true)
    case Tag.Float64Array:
      return unpackNumbers(false)
    case Tag.Object: {
      const n = readU32()
      need(n)
      const o: Record<string, unknown> = {}
      for (let i = 0; i < n; i++) {
        const k = readStr()
        const v = read(depth + 1)
        if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true })
        else o[k] = v
      }
      return o
    }
    default:
      throw new SerializationError(`unknown plain-data tag ${t}`)
  }
}

/** Reads an array of packed numbers (its count, then 4 or 8 bytes each). */
function unpackNumbers(int32: boolean): number[] {
  const n = readU32()
  const size = int32 ? 4 : 8
  need(size * n)
  let a: number[]
  if (NATIVE_ORDER) {
    const at0 = src.byteOffset + at
    let numbers: Int32Array | Float64Array
    if (at0 % size === 0) {
      numbers = int32 ? new Int32Array(src.buffer, at0, n) : new Float64Array(src.buffer, at0, n)
    } else {
      const buffer = bulkOf('decoding', size * n)
      new Uint8Array(buffer, 0, size * n).set(src.subarray(at, at + size * n))
      numbers = int32 ? new Int32Array(buffer, 0, n) : new Float64Array(buffer, 0, n)
    }
    a = int32 ? fromInt32s(numbers as Int32Array) : fromFloat64s(numbers as Float64Array)
  } else {
    a = new Array(n)
    for (let i = 0; i < n; i++) a[i] = int32 ? srcView.getInt32(at + 4 * i, true) : srcView.getFloat64(at + 8 * i, true)
  }
  at += size * n
  return a
}

// One small function per element type: each loop stays monomorphic and is optimised early.
function fromInt32s(numbers: Int32Array): number[] {
  const a = new Array<number>(numbers.length)
  for (let i = 0; i < numbers.length; i++) a[i] = numbers[i] as number
  return a
}

function fromFloat64s(numbers: Float64Array): number[] {
  const a = new Array<number>(numbers.length)
  for (let i = 0; i < numbers.length; i++) a[i] = numbers[i] as number
  return a
}

/** Decodes the plain encoding; throws on bytes that are not a whole, valid encoding. */
export function decodePlain(bytes: Buffer): unknown {
  src = bytes
  // Only a host of the other byte order reads numbers through it.
  if (!NATIVE_ORDER) srcView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  at = 0
  try {
    const v = read(0)
    if (at !== bytes.length) throw new SerializationError('trailing bytes after a plain-data message')
    return v
  } finally {
    src = EMPTY
    srcView = EMPTY_VIEW
  }
}

const EMPTY = Buffer.alloc(0)
const EMPTY_VIEW = new DataView(new ArrayBuffer(0))
