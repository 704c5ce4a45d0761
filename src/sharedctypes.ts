/**
 * Values and arrays in shared memory (Python's `multiprocessing.sharedctypes`): `Value` and
 * `SharedArray` come with an `RLock` (as Python's), `RawValue` and `RawArray` without. Each lives
 * in its own anonymous segment and travels to other processes as a handle, with its lock.
 */
import { fromNative, InvalidStateError, rangeError, typeError } from './errors.js'
import { type HandleDescriptor, newId, registerHandle, reviveOnce, toHandle } from './handles.js'
import { native } from './native.js'
import { Lock, RLock, reviveLock } from './synchronize.js'

/** The element types: `i64`/`u64` are `bigint`, `bool` is `boolean`, the others `number`. */
export type TypeCode = 'i8' | 'u8' | 'i16' | 'u16' | 'i32' | 'u32' | 'i64' | 'u64' | 'f32' | 'f64' | 'bool'

/** Python's `array`/ctypes type codes, accepted as aliases. */
const ALIASES: Record<string, TypeCode> = {
  b: 'i8',
  B: 'u8',
  h: 'i16',
  H: 'u16',
  i: 'i32',
  I: 'u32',
  l: 'i64',
  L: 'u64',
  q: 'i64',
  Q: 'u64',
  f: 'f32',
  d: 'f64',
  '?': 'bool',
}

const ARRAYS = {
  i8: Int8Array,
  u8: Uint8Array,
  i16: Int16Array,
  u16: Uint16Array,
  i32: Int32Array,
  u32: Uint32Array,
  i64: BigInt64Array,
  u64: BigUint64Array,
  f32: Float32Array,
  f64: Float64Array,
  bool: Uint8Array,
} as const

/** The typed array behind each type code. */
export type ArrayOf = {
  /** 8-bit signed integers. */
  i8: Int8Array
  /** 8-bit unsigned integers. */
  u8: Uint8Array
  /** 16-bit signed integers. */
  i16: Int16Array
  /** 16-bit unsigned integers. */
  u16: Uint16Array
  /** 32-bit signed integers. */
  i32: Int32Array
  /** 32-bit unsigned integers. */
  u32: Uint32Array
  /** 64-bit signed integers (`bigint`). */
  i64: BigInt64Array
  /** 64-bit unsigned integers (`bigint`). */
  u64: BigUint64Array
  /** 32-bit floats. */
  f32: Float32Array
  /** 64-bit floats. */
  f64: Float64Array
  /** Booleans, one byte each (0 or 1). */
  bool: Uint8Array
}
/** The JavaScript type of one value of a type code: `bigint` for 64-bit integers, `boolean` for `bool`. */
export type ValueOf<T extends TypeCode> = T extends 'i64' | 'u64' ? bigint : T extends 'bool' ? boolean : number
type AnyTyped = ArrayOf[TypeCode]
type Seg = ReturnType<typeof native.segmentCreate>

function typeCode(t: unknown): TypeCode {
  if (typeof t !== 'string') throw typeError('the type must be a string such as "f64" or "i32"')
  const code = (t in ARRAYS ? t : ALIASES[t]) as TypeCode | undefined
  if (!code) throw typeError(`unknown type ${JSON.stringify(t)}: use one of ${Object.keys(ARRAYS).join(' ')}`)
  return code
}

/** Converts `v` for storage in an array of `code`, with a clear error when it cannot be. */
function toElement(code: TypeCode, v: unknown): number | bigint {
  if (code === 'i64' || code === 'u64') {
    if (typeof v === 'bigint') return v
    if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v)
    if (typeof v === 'number') throw rangeError(`a ${code} value must be an integer, not ${v}`)
    throw typeError(`a ${code} value must be a bigint (or an integer number), not ${typeof v}`)
  }
  if (code === 'bool') return v ? 1 : 0
  if (typeof v !== 'number') throw typeError(`a ${code} value must be a number, not ${typeof v}`)
  return v
}

function fromElement(code: TypeCode, v: number | bigint): unknown {
  return code === 'bool' ? v !== 0 : v
}

/** A fresh segment holding `length` elements, and a typed array over it. */
function allocate(code: TypeCode, length: number): { seg: Seg; array: AnyTyped } {
  const Ctor = ARRAYS[code]
  const bytes = Math.max(1, length * Ctor.BYTES_PER_ELEMENT)
  let seg: Seg
  try {
    seg = native.segmentCreate(bytes)
  } catch (err) {
    throw fromNative(err)
  }
  return { seg, array: new Ctor(native.segmentView(seg), 0, length) as AnyTyped }
}

function adoptSegment(code: TypeCode, length: number, fd: number): { seg: Seg; array: AnyTyped } {
  let seg: Seg
  try {
    seg = native.segmentAdopt(fd)
  } catch (err) {
    throw fromNative(err)
  }
  const Ctor = ARRAYS[code]
  if (native.segmentSize(seg) < length * Ctor.BYTES_PER_ELEMENT) throw rangeError('the shared array segment is smaller than its length')
  return { seg, array: new Ctor(native.segmentView(seg), 0, length) as AnyTyped }
}

function lockOption(opts: unknown): boolean | Lock | RLock {
  if (opts === undefined) return true
  if (typeof opts !== 'object' || opts === null) throw typeError('options must be an object such as { lock: false }')
  const lock = (opts as { lock?: unknown }).lock
  if (lock === undefined || lock === true) return true
  if (lock === false) return false
  if (lock instanceof Lock || lock instanceof RLock) return lock
  throw typeError('lock must be true, false, a Lock or an RLock')
}

function makeLock(option: boolean | Lock | RLock): Lock | RLock | null {
  if (option === false) return null
  return option === true ? new RLock() : option
}

function lockHandle(lock: Lock | RLock | null): { data: unknown; fds: number[] } {
  if (!lock) return { data: null, fds: [] }
  const h = lock[toHandle]()
  return { data: { type: h.type, id: h.data.id }, fds: h.fds }
}

function checkLength(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 32) throw rangeError(`an array length must be a non-negative integer, got ${n}`)
  return n
}

/** A single shared value. Reading and writing `.value` takes its lock, as in Python. */
export class SharedValue<T extends TypeCode = TypeCode> {
  /** The element type by name (`'f64'` also when created with Python's `'d'`). */
  readonly type: T
  readonly #array: AnyTyped
  readonly #seg: Seg
  readonly #lock: Lock | RLock | null
  /** A random 128-bit hex string, the same in every process the value travels to. */
  readonly id: string

  /** @internal Use `Value()` / `RawValue()`. */
  constructor(type: T, seg: Seg, array: AnyTyped, lock: Lock | RLock | null, id: string) {
    this.type = type
    this.#seg = seg
    this.#array = array
    this.#lock = lock
    this.id = id
  }

  /** The value, read under the lock: a `bigint` for `i64`/`u64`, a boolean for `bool`, else a number. */
  get value(): ValueOf<T> {
    const lock = this.#lock
    if (!lock) return fromElement(this.type, this.#array[0] as number | bigint) as ValueOf<T>
    // A dead holder's lock is taken over: a single element cannot be half-written.
    lock.enterSync()
    try {
      return fromElement(this.type, this.#array[0] as number | bigint) as ValueOf<T>
    } finally {
      lock.release()
    }
  }

  /** Writes the value under the lock (an integer `number` is accepted for `i64`/`u64`). */
  set value(v: ValueOf<T>) {
    const e = toElement(this.type, v)
    const lock = this.#lock
    if (!lock) {
      ;(this.#array as unknown as (number | bigint)[])[0] = e
      return
    }
    lock.enterSync()
    try {
      ;(this.#array as unknown as (number | bigint)[])[0] = e
    } finally {
      lock.release()
    }
  }

  /** The lock (an `RLock` unless another was given); `InvalidStateError` for `{ lock: false }`. */
  getLock(): Lock | RLock {
    if (!this.#lock) throw new InvalidStateError('this Value was created with { lock: false }: it has no lock')
    return this.#lock
  }

  /** @internal */
  get fd(): number {
    return native.segmentFd(this.#seg)
  }

  /** @internal How the value travels to another process. */
  [toHandle](): HandleDescriptor {
    const lock = lockHandle(this.#lock)
    return { type: 'Value', data: { id: this.id, type: this.type, lock: lock.data }, fds: [this.fd, ...lock.fds] }
  }

  /** Python's `repr`: `<Value(i64, 42)>`. */
  toString(): string {
    return `<Value(${this.type}, ${String(fromElement(this.type, this.#array[0] as number | bigint))})>`
  }
}

/**
 * A shared value of `type`, initially `init` (0), with an `RLock` (`{ lock: false }`: none; or a
 * `Lock`/`RLock` to use).
 */
export function Value<T extends TypeCode>(type: T, init?: ValueOf<T>, opts?: { lock?: boolean | Lock | RLock }): SharedValue<T> {
  const code = typeCode(type) as T
  const lock = lockOption(opts)
  const { seg, array } = allocate(code, 1)
  if (init !== undefined) (array as unknown as (number | bigint)[])[0] = toElement(code, init)
  return new SharedValue(code, seg, array, makeLock(lock), newId())
}

/** A shared value without a lock (Python's `RawValue`). */
export function RawValue<T extends TypeCode>(type: T, init?: ValueOf<T>): SharedValue<T> {
  return Value(type, init, { lock: false })
}

function arrayInit(code: TypeCode, sizeOrValues: unknown): { length: number; values: Iterable<unknown> | null } {
  if (typeof sizeOrValues === 'number') return { length: checkLength(sizeOrValues), values: null }
  if (typeof sizeOrValues === 'object' && sizeOrValues !== null && Symbol.iterator in sizeOrValues) {
    const values = [...(sizeOrValues as Iterable<unknown>)]
    for (const v of values) toElement(code, v)
    return { length: values.length, values }
  }
  throw typeError('give a length or an iterable of initial values')
}

function newArray(type: TypeCode, sizeOrValues: unknown): { code: TypeCode; seg: Seg; array: AnyTyped } {
  const code = typeCode(type)
  const { length, values } = arrayInit(code, sizeOrValues)
  const { seg, array } = allocate(code, length)
  if (values) {
    let i = 0
    for (const v of values) (array as unknown as (number | bigint)[])[i++] = toElement(code, v)
  }
  return { code, seg, array }
}

/** Makes a typed array over a segment travel as a handle, and remembers what it is. */
function rawHandle<A extends AnyTyped>(code: TypeCode, seg: Seg, array: A, id: string): A {
  Object.defineProperty(array, toHandle, {
    value: (): HandleDescriptor => ({ type: 'RawArray', data: { id, type: code, length: array.length }, fds: [native.segmentFd(seg)] }),
  })
  segments.set(array, seg)
  return array
}

/** Keeps each raw array's segment reachable as long as the array (and gives its descriptor). */
const segments = new WeakMap<object, Seg>()

/** A typed array over new shared memory: `n` zeros, or a copy of `values` (Python's `RawArray`). */
export function RawArray<T extends TypeCode>(type: T, sizeOrValues: number | Iterable<ValueOf<T> | number>): ArrayOf[T] {
  const { code, seg, array } = newArray(type, sizeOrValues)
  return rawHandle(code, seg, array, newId()) as ArrayOf[T]
}

/** A shared typed array with a lock (Python's `Array`): `{ array, length, getLock() }`. */
export class SynchronizedArray<T extends TypeCode = TypeCode> {
  /** The element type by name (`'i32'` also when created with Python's `'i'`). */
  readonly type: T
  /** The elements, in shared memory. Take the lock around compound updates. */
  readonly array: ArrayOf[T]
  readonly #lock: Lock | RLock | null
  readonly #seg: Seg
  /** A random 128-bit hex string, the same in every process the array travels to. */
  readonly id: string

  /** @internal Use `SharedArray()`. */
  constructor(type: T, seg: Seg, array: ArrayOf[T], lock: Lock | RLock | null, id: string) {
    this.type = type
    this.#seg = seg
    this.array = array
    this.#lock = lock
    this.id = id
  }

  /** The number of elements. */
  get length(): number {
    return this.array.length
  }

  /** The lock (an `RLock` unless another was given); `InvalidStateError` for `{ lock: false }`. */
  getLock(): Lock | RLock {
    if (!this.#lock) throw new InvalidStateError('this array was created with { lock: false }: it has no lock')
    return this.#lock
  }

  /** A copy of the elements as a plain array, taken under the lock. */
  toArray(): ValueOf<T>[] {
    const read = () => Array.from(this.array as ArrayLike<number | bigint>, (v) => fromElement(this.type, v) as ValueOf<T>)
    return this.#lock ? this.#lock.withLockSync(read) : read()
  }

  /** @internal How the array travels to another process. */
  [toHandle](): HandleDescriptor {
    const lock = lockHandle(this.#lock)
    return {
      type: 'SharedArray',
      data: { id: this.id, type: this.type, length: this.array.length, lock: lock.data },
      fds: [native.segmentFd(this.#seg), ...lock.fds],
    }
  }
}

/** A shared array of `type` with an `RLock` (`{ lock: false }`: none). */
export function SharedArray<T extends TypeCode>(
  type: T,
  sizeOrValues: number | Iterable<ValueOf<T> | number>,
  opts?: { lock?: boolean | Lock | RLock },
): SynchronizedArray<T> {
  const lock = lockOption(opts)
  const { code, seg, array } = newArray(type, sizeOrValues)
  return new SynchronizedArray(code as T, seg, array as ArrayOf[T], makeLock(lock), newId())
}

function reviveLockOf(data: Record<string, unknown>, fd: number | undefined): Lock | RLock | null {
  const l = data.lock as { type: string; id: string } | null
  return l && fd !== undefined ? reviveLock(l.type, l.id, fd) : null
}

registerHandle('Value', (data, [fd, lockFd]) => {
  const lock = reviveLockOf(data, lockFd)
  return reviveOnce(
    data.id,
    fd as number,
    (v: SharedValue) => v.fd,
    () => {
      const code = typeCode(data.type)
      const { seg, array } = adoptSegment(code, 1, fd as number)
      return new SharedValue(code, seg, array, lock, data.id as string)
    },
  )
})

registerHandle('SharedArray', (data, [fd, lockFd]) => {
  const lock = reviveLockOf(data, lockFd)
  return reviveOnce(
    data.id,
    fd as number,
    (a: SynchronizedArray) => native.segmentFd(segments.get(a) as Seg),
    () => {
      const code = typeCode(data.type)
      const { seg, array } = adoptSegment(code, data.length as number, fd as number)
      const shared = new SynchronizedArray(code, seg, array, lock, data.id as string)
      segments.set(shared, seg)
      return shared
    },
  )
})

registerHandle('RawArray', (data, [fd]) =>
  reviveOnce(
    data.id,
    fd as number,
    (a: AnyTyped) => native.segmentFd(segments.get(a) as Seg),
    () => {
      const code = typeCode(data.type)
      const { seg, array } = adoptSegment(code, data.length as number, fd as number)
      return rawHandle(code, seg, array, data.id as string)
    },
  ),
)
