/**
 * The shared objects a manager's server holds (Python's `SyncManager` types): dict, list,
 * namespace, queues, locks, semaphores, events, conditions, barriers, values and arrays. Each
 * method takes the calling client's context first: who calls (locks are owned by the client
 * process's connection) and a signal that aborts the call when that client goes away.
 */
import { isDeepStrictEqual } from 'node:util'

import { AbortError, BrokenBarrierError, Empty, Full, InvalidStateError, rangeError, TimeoutError, typeError } from './errors.js'

/** Who calls, and when to give up: the client's connection closed or it cancelled the call. */
export interface CallContext {
  /** The client connection: the owner of the locks it takes. */
  readonly client: number
  /** Aborts when this call is cancelled or the client goes away. */
  readonly signal: AbortSignal
  /** Aborts when the client goes away. */
  readonly clientSignal: AbortSignal
}

/** Options of a blocking call, as they arrive from a proxy. */
export interface BlockingArgs {
  timeout?: number | undefined
  block?: boolean | undefined
}

/** Wakes the calls waiting on an object whenever its state changes. */
class Waiters {
  readonly #wakers = new Set<() => void>()

  wakeAll(): void {
    for (const w of [...this.#wakers]) w()
  }

  /**
   * `take()` until it yields a value; `undefined` once `timeout` ms pass. Rejects with
   * `AbortError` when the call is aborted. Waiters are tried in arrival order.
   */
  until<T>(ctx: CallContext, take: () => T | undefined, timeout: number | undefined): Promise<T | undefined> {
    const now = take()
    if (now !== undefined) return Promise.resolve(now)
    if (timeout !== undefined && timeout <= 0) return Promise.resolve(undefined)
    return new Promise<T | undefined>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const finish = () => {
        this.#wakers.delete(wake)
        if (timer) clearTimeout(timer)
        ctx.signal.removeEventListener('abort', onAbort)
      }
      const wake = () => {
        const v = take()
        if (v === undefined) return
        finish()
        resolve(v)
      }
      const onAbort = () => {
        finish()
        reject(new AbortError('the call was cancelled', { cause: ctx.signal.reason }))
      }
      this.#wakers.add(wake)
      ctx.signal.addEventListener('abort', onAbort, { once: true })
      if (timeout !== undefined && timeout < 2 ** 31 - 1) {
        timer = setTimeout(() => {
          finish()
          resolve(undefined)
        }, timeout)
      }
    })
  }
}

function timeoutOf(args: BlockingArgs | number | undefined): { timeout: number | undefined; block: boolean } {
  if (typeof args === 'number') return { timeout: args, block: true }
  if (args === undefined || args === null) return { timeout: undefined, block: true }
  if (typeof args !== 'object') throw typeError('options must be an object or a timeout in milliseconds')
  const t = args.timeout
  if (t !== undefined && t !== null && (typeof t !== 'number' || Number.isNaN(t)))
    throw typeError('timeout must be a number of milliseconds')
  return { timeout: t === null ? undefined : t, block: args.block !== false }
}

function index(i: unknown, length: number, forInsert = false): number {
  if (typeof i !== 'number' || !Number.isInteger(i)) throw typeError(`an index must be an integer, not ${typeof i}`)
  const j = i < 0 ? i + length : i
  if (forInsert) return Math.min(Math.max(j, 0), length)
  if (j < 0 || j >= length) throw rangeError(`index ${i} out of range (length ${length})`)
  return j
}

/** Python's ordering for `sort()`: numbers and bigints numerically, strings by code unit. */
function compare(a: unknown, b: unknown): number {
  // biome-ignore lint/suspicious/noExplicitAny: mixed primitives compare as JS does
  return (a as any) < (b as any) ? -1 : (a as any) > (b as any) ? 1 : 0
}

/** A shared object: a class whose methods a proxy may call, each taking the context first. */
export abstract class Shared {
  /** The typeid proxies know it by. */
  abstract readonly typeid: string
  /** The client going away: locks it holds are released, its waits end. */
  dropClient(_client: number): void {}
}

export class SharedDict extends Shared {
  readonly typeid = 'dict'
  readonly map: Map<unknown, unknown>

  constructor(init?: unknown) {
    super()
    this.map = new Map(entriesOf(init))
  }
  get(_c: CallContext, k: unknown, dflt?: unknown): unknown {
    return this.map.has(k) ? this.map.get(k) : dflt
  }
  set(_c: CallContext, k: unknown, v: unknown): void {
    this.map.set(k, v)
  }
  has(_c: CallContext, k: unknown): boolean {
    return this.map.has(k)
  }
  delete(_c: CallContext, k: unknown): boolean {
    return this.map.delete(k)
  }
  keys(): unknown[] {
    return [...this.map.keys()]
  }
  values(): unknown[] {
    return [...this.map.values()]
  }
  entries(): [unknown, unknown][] {
    return [...this.map.entries()]
  }
  size(): number {
    return this.map.size
  }
  clear(): void {
    this.map.clear()
  }
  update(_c: CallContext, other: unknown): void {
    for (const [k, v] of entriesOf(other)) this.map.set(k, v)
  }
  pop(_c: CallContext, k: unknown, dflt?: unknown): unknown {
    if (!this.map.has(k)) return dflt
    const v = this.map.get(k)
    this.map.delete(k)
    return v
  }
  setDefault(_c: CallContext, k: unknown, dflt?: unknown): unknown {
    if (!this.map.has(k)) this.map.set(k, dflt)
    return this.map.get(k)
  }
  copy(): Map<unknown, unknown> {
    return new Map(this.map)
  }
}

function entriesOf(init: unknown): Iterable<[unknown, unknown]> {
  if (init === undefined || init === null) return []
  if (init instanceof Map) return init
  if (Array.isArray(init)) {
    for (const e of init) if (!Array.isArray(e) || e.length !== 2) throw typeError('entries must be [key, value] pairs')
    return init as [unknown, unknown][]
  }
  if (typeof init === 'object') return Object.entries(init)
  throw typeError('a dict is made from a Map, an object or [key, value] pairs')
}

export class SharedList extends Shared {
  readonly typeid = 'list'
  readonly items: unknown[]

  constructor(init?: unknown) {
    super()
    if (init !== undefined && init !== null && !Array.isArray(init)) throw typeError('a list is made from an array')
    this.items = init ? [...(init as unknown[])] : []
  }
  at(_c: CallContext, i: unknown): unknown {
    return this.items[index(i, this.items.length)]
  }
  set(_c: CallContext, i: unknown, v: unknown): void {
    this.items[index(i, this.items.length)] = v
  }
  push(_c: CallContext, ...vs: unknown[]): number {
    return this.items.push(...vs)
  }
  pop(_c: CallContext, i?: unknown): unknown {
    if (this.items.length === 0) throw rangeError('pop from an empty list')
    if (i === undefined) return this.items.pop()
    return this.items.splice(index(i, this.items.length), 1)[0]
  }
  insert(_c: CallContext, i: unknown, v: unknown): void {
    this.items.splice(index(i, this.items.length, true), 0, v)
  }
  extend(_c: CallContext, vs: unknown): number {
    if (!Array.isArray(vs)) throw typeError('extend takes an array')
    return this.items.push(...vs)
  }
  splice(_c: CallContext, start: unknown, deleteCount?: unknown, ...items: unknown[]): unknown[] {
    const s = index(start, this.items.length, true)
    if (deleteCount === undefined) return this.items.splice(s)
    if (typeof deleteCount !== 'number') throw typeError('deleteCount must be a number')
    return this.items.splice(s, deleteCount, ...items)
  }
  length(): number {
    return this.items.length
  }
  slice(_c: CallContext, start?: number, end?: number): unknown[] {
    return this.items.slice(start, end)
  }
  indexOf(_c: CallContext, v: unknown): number {
    return this.items.findIndex((x) => isDeepStrictEqual(x, v))
  }
  includes(_c: CallContext, v: unknown): boolean {
    return this.items.some((x) => isDeepStrictEqual(x, v))
  }
  count(_c: CallContext, v: unknown): number {
    return this.items.filter((x) => isDeepStrictEqual(x, v)).length
  }
  remove(_c: CallContext, v: unknown): void {
    const i = this.items.findIndex((x) => isDeepStrictEqual(x, v))
    if (i < 0) throw rangeError('remove: the value is not in the list')
    this.items.splice(i, 1)
  }
  reverse(): void {
    this.items.reverse()
  }
  sort(_c: CallContext, opts?: { reverse?: boolean }): void {
    this.items.sort(compare)
    if (opts?.reverse) this.items.reverse()
  }
  clear(): void {
    this.items.length = 0
  }
  copy(): unknown[] {
    return [...this.items]
  }
}

export class SharedNamespace extends Shared {
  readonly typeid = 'namespace'
  readonly attrs = new Map<string, unknown>()

  constructor(init?: unknown) {
    super()
    if (init !== undefined && init !== null) {
      if (typeof init !== 'object') throw typeError('a namespace is made from an object')
      for (const [k, v] of Object.entries(init)) this.attrs.set(k, v)
    }
  }
  get(_c: CallContext, name: unknown): unknown {
    return this.attrs.get(attr(name))
  }
  set(_c: CallContext, name: unknown, v: unknown): void {
    this.attrs.set(attr(name), v)
  }
  has(_c: CallContext, name: unknown): boolean {
    return this.attrs.has(attr(name))
  }
  delete(_c: CallContext, name: unknown): boolean {
    return this.attrs.delete(attr(name))
  }
  keys(): string[] {
    return [...this.attrs.keys()]
  }
  /** Every attribute as a plain object; names starting with `_` are left out, as Python's repr does. */
  toObject(_c: CallContext, all?: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    for (const [k, v] of this.attrs) if (all || !k.startsWith('_')) out[k] = v
    return out
  }
}

function attr(name: unknown): string {
  if (typeof name !== 'string') throw typeError('a namespace attribute name must be a string')
  return name
}

export class SharedQueue extends Shared {
  readonly typeid: string = 'Queue'
  readonly items: unknown[] = []
  readonly maxsize: number
  protected readonly changed = new Waiters()

  constructor(opts?: { maxsize?: number }) {
    super()
    const m = opts?.maxsize ?? 0
    if (typeof m !== 'number' || !Number.isInteger(m)) throw typeError('maxsize must be an integer')
    this.maxsize = Math.max(0, m)
  }
  #hasRoom(): boolean {
    return this.maxsize === 0 || this.items.length < this.maxsize
  }
  async put(c: CallContext, v: unknown, opts?: BlockingArgs): Promise<void> {
    const { timeout, block } = timeoutOf(opts)
    if (!block) return this.putNowait(c, v)
    const ok = await this.changed.until(c, () => (this.#hasRoom() ? true : undefined), timeout)
    if (!ok) throw new TimeoutError('put timed out')
    this.#add(v)
  }
  putNowait(_c: CallContext, v: unknown): void {
    if (!this.#hasRoom()) throw new Full('the queue is full')
    this.#add(v)
  }
  #add(v: unknown): void {
    this.items.push(v)
    this.added()
    this.changed.wakeAll()
  }
  protected added(): void {}
  async get(c: CallContext, opts?: BlockingArgs): Promise<unknown> {
    const { timeout, block } = timeoutOf(opts)
    if (!block) return this.getNowait()
    const got = await this.changed.until(c, () => (this.items.length > 0 ? [this.items.shift()] : undefined), timeout)
    if (!got) throw new TimeoutError('get timed out')
    this.changed.wakeAll()
    return got[0]
  }
  getNowait(): unknown {
    if (this.items.length === 0) throw new Empty('the queue is empty')
    const v = this.items.shift()
    this.changed.wakeAll()
    return v
  }
  qsize(): number {
    return this.items.length
  }
  empty(): boolean {
    return this.items.length === 0
  }
  full(): boolean {
    return !this.#hasRoom()
  }
}

export class SharedJoinableQueue extends SharedQueue {
  override readonly typeid = 'JoinableQueue'
  #unfinished = 0

  protected override added(): void {
    this.#unfinished++
  }
  taskDone(): void {
    if (this.#unfinished <= 0) throw new InvalidStateError('taskDone() called more times than there were items')
    this.#unfinished--
    if (this.#unfinished === 0) this.changed.wakeAll()
  }
  async join(c: CallContext, opts?: BlockingArgs): Promise<void> {
    const { timeout } = timeoutOf(opts)
    const ok = await this.changed.until(c, () => (this.#unfinished === 0 ? true : undefined), timeout)
    if (!ok) throw new TimeoutError('join timed out')
  }
}

/** Lock and RLock: owned by a client (a process's connection); a client that goes away releases them. */
export class SharedLock extends Shared {
  readonly typeid: string = 'Lock'
  owner: number | null = null
  count = 0
  readonly changed = new Waiters()
  readonly reentrant: boolean

  constructor(reentrant = false) {
    super()
    this.reentrant = reentrant
    if (reentrant) this.typeid = 'RLock'
  }
  #take(client: number, n = 1): true | undefined {
    if (this.owner === null) {
      this.owner = client
      this.count = n
      return true
    }
    if (this.reentrant && this.owner === client) {
      this.count += n
      return true
    }
    return undefined
  }
  async acquire(c: CallContext, opts?: BlockingArgs): Promise<boolean> {
    const { timeout, block } = timeoutOf(opts)
    return (await this.changed.until(c, () => this.#take(c.client), block ? timeout : 0)) === true
  }
  /** @internal Takes the lock back with the recursion count a Condition wait saved. */
  async reacquire(c: CallContext, n: number): Promise<void> {
    await this.changed.until(c, () => this.#take(c.client, n), undefined)
  }
  release(c: CallContext): void {
    if (this.owner === null) throw new InvalidStateError('release of an unlocked lock')
    if (this.reentrant && this.owner !== c.client) throw new InvalidStateError('release of an RLock held by another process')
    if (--this.count === 0) {
      this.owner = null
      this.changed.wakeAll()
    }
  }
  /** @internal Releases every level (a Condition wait); returns how many there were. */
  releaseAll(): number {
    const n = this.count
    this.owner = null
    this.count = 0
    this.changed.wakeAll()
    return n
  }
  locked(): boolean {
    return this.owner !== null
  }
  /** Whether the calling process holds it (Python's `_is_mine`). */
  isMine(c: CallContext): boolean {
    return this.owner === c.client
  }
  override dropClient(client: number): void {
    if (this.owner === client) this.releaseAll()
  }
}

export class SharedSemaphore extends Shared {
  readonly typeid: string
  value: number
  readonly max: number | undefined
  readonly changed = new Waiters()

  constructor(value = 1, bounded = false) {
    super()
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw rangeError('a semaphore value must be an integer ≥ 0')
    this.value = value
    this.max = bounded ? value : undefined
    this.typeid = bounded ? 'BoundedSemaphore' : 'Semaphore'
  }
  async acquire(c: CallContext, opts?: BlockingArgs): Promise<boolean> {
    const { timeout, block } = timeoutOf(opts)
    const took = () => {
      if (this.value === 0) return undefined
      this.value--
      return true
    }
    return (await this.changed.until(c, took, block ? timeout : 0)) === true
  }
  release(_c: CallContext, n = 1): void {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw rangeError('release(n): n must be an integer ≥ 1')
    if (this.max !== undefined && this.value + n > this.max) throw new InvalidStateError('BoundedSemaphore released too many times')
    this.value += n
    this.changed.wakeAll()
  }
  getValue(): number {
    return this.value
  }
}

export class SharedEvent extends Shared {
  readonly typeid = 'Event'
  flag = false
  readonly changed = new Waiters()

  set(): void {
    this.flag = true
    this.changed.wakeAll()
  }
  clear(): void {
    this.flag = false
  }
  isSet(): boolean {
    return this.flag
  }
  async wait(c: CallContext, opts?: BlockingArgs | number): Promise<boolean> {
    const { timeout } = timeoutOf(opts)
    return (await this.changed.until(c, () => (this.flag ? true : undefined), timeout)) === true
  }
}

export class SharedCondition extends Shared {
  readonly typeid = 'Condition'
  readonly lock: SharedLock
  #seq = 0
  #waiting: { ticket: number; notified: boolean }[] = []
  readonly #notified = new Waiters()

  constructor(lock?: SharedLock) {
    super()
    this.lock = lock ?? new SharedLock(true)
  }
  acquire(c: CallContext, opts?: BlockingArgs): Promise<boolean> {
    return this.lock.acquire(c, opts)
  }
  release(c: CallContext): void {
    this.lock.release(c)
  }
  #checkOwned(c: CallContext): void {
    if (this.lock.owner !== c.client)
      throw new InvalidStateError('cannot wait on or notify a Condition whose lock this process does not hold')
  }
  async wait(c: CallContext, opts?: BlockingArgs | number): Promise<boolean> {
    this.#checkOwned(c)
    const { timeout } = timeoutOf(opts)
    const me = { ticket: this.#seq++, notified: false }
    this.#waiting.push(me)
    const depth = this.lock.releaseAll()
    let notified = false
    try {
      notified = (await this.#notified.until(c, () => (me.notified ? true : undefined), timeout)) === true
    } finally {
      this.#waiting = this.#waiting.filter((w) => w !== me)
      // As Python: the lock is held again before the wait returns, even a cancelled one; a
      // client that went away takes nothing.
      if (!c.clientSignal.aborted) {
        await this.lock.reacquire({ ...c, signal: c.clientSignal }, depth).catch(() => {})
      }
    }
    return notified
  }
  notify(c: CallContext, n = 1): void {
    this.#checkOwned(c)
    if (typeof n !== 'number' || Number.isNaN(n) || n < 0) throw rangeError('notify(n): n must be a number ≥ 0')
    let woken = 0
    for (const w of this.#waiting) {
      if (woken >= n) break
      if (!w.notified) {
        w.notified = true
        woken++
      }
    }
    this.#notified.wakeAll()
  }
  notifyAll(c: CallContext): void {
    this.notify(c, Number.POSITIVE_INFINITY)
  }
  override dropClient(client: number): void {
    this.lock.dropClient(client)
  }
}

export class SharedBarrier extends Shared {
  readonly typeid = 'Barrier'
  readonly #parties: number
  readonly #timeout: number | undefined
  #count = 0
  #generation = 0
  #broken = false
  readonly #changed = new Waiters()

  constructor(parties: number, opts?: { timeout?: number }) {
    super()
    if (typeof parties !== 'number' || !Number.isInteger(parties) || parties < 1) throw rangeError('parties must be an integer ≥ 1')
    this.#parties = parties
    this.#timeout = opts?.timeout
  }
  async wait(c: CallContext, opts?: BlockingArgs | number): Promise<number> {
    if (this.#broken) throw new BrokenBarrierError('the barrier is broken')
    const { timeout } = timeoutOf(opts)
    const gen = this.#generation
    const index = this.#count++
    if (this.#count === this.#parties) {
      this.#count = 0
      this.#generation++
      this.#changed.wakeAll()
      return index
    }
    let passed: boolean | undefined
    try {
      passed = await this.#changed.until(c, () => (this.#generation !== gen || this.#broken ? true : undefined), timeout ?? this.#timeout)
    } catch (err) {
      this.#break()
      throw err
    }
    if (passed === undefined) {
      this.#break()
      throw new BrokenBarrierError('the barrier wait timed out')
    }
    if (this.#generation === gen) throw new BrokenBarrierError('the barrier is broken')
    return index
  }
  #break(): void {
    this.#broken = true
    this.#count = 0
    this.#changed.wakeAll()
  }
  abort(): void {
    this.#break()
  }
  reset(): void {
    if (this.#count > 0) this.#break()
    this.#broken = false
    this.#count = 0
  }
  parties(): number {
    return this.#parties
  }
  nWaiting(): number {
    return this.#count
  }
  broken(): boolean {
    return this.#broken
  }
}

const INTEGER_CODES = new Set(['i8', 'u8', 'i16', 'u16', 'i32', 'u32', 'b', 'B', 'h', 'H', 'i', 'I', 'l', 'L'])
const BIG_CODES = new Set(['i64', 'u64', 'q', 'Q'])
const FLOAT_CODES = new Set(['f32', 'f64', 'f', 'd'])

/** Checks a value against a type code (`'i64'`, `'f64'`, Python's `'i'`, `'d'`, …). */
function coerce(typecode: string, v: unknown): unknown {
  if (BIG_CODES.has(typecode)) {
    if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v)
    if (typeof v !== 'bigint') throw typeError(`a ${typecode} value must be a bigint`)
    return v
  }
  if (INTEGER_CODES.has(typecode)) {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw typeError(`a ${typecode} value must be an integer number`)
    return v
  }
  if (FLOAT_CODES.has(typecode)) {
    if (typeof v !== 'number') throw typeError(`a ${typecode} value must be a number`)
    return v
  }
  if (typecode === 'bool' || typecode === '?') return Boolean(v)
  return v
}

function checkTypecode(typecode: unknown): string {
  if (typeof typecode !== 'string' || typecode.length === 0) throw typeError('a type code must be a string such as "i64" or "f64"')
  return typecode
}

export class SharedValueObject extends Shared {
  readonly typeid = 'Value'
  readonly typecode: string
  value: unknown

  constructor(typecode: unknown, init: unknown) {
    super()
    this.typecode = checkTypecode(typecode)
    this.value = coerce(this.typecode, init)
  }
  get(): unknown {
    return this.value
  }
  set(_c: CallContext, v: unknown): void {
    this.value = coerce(this.typecode, v)
  }
}

export class SharedArrayObject extends Shared {
  readonly typeid = 'Array'
  readonly typecode: string
  readonly items: unknown[]

  constructor(typecode: unknown, init: unknown) {
    super()
    this.typecode = checkTypecode(typecode)
    const zero = BIG_CODES.has(this.typecode) ? 0n : 0
    if (typeof init === 'number') {
      if (!Number.isInteger(init) || init < 0) throw rangeError('an array length must be an integer ≥ 0')
      this.items = new Array(init).fill(zero)
    } else if (Array.isArray(init)) this.items = init.map((v) => coerce(this.typecode, v))
    else throw typeError('an array is made from a length or an array of values')
  }
  at(_c: CallContext, i: unknown): unknown {
    return this.items[index(i, this.items.length)]
  }
  set(_c: CallContext, i: unknown, v: unknown): void {
    this.items[index(i, this.items.length)] = coerce(this.typecode, v)
  }
  length(): number {
    return this.items.length
  }
  slice(_c: CallContext, start?: number, end?: number): unknown[] {
    return this.items.slice(start, end)
  }
  toArray(): unknown[] {
    return [...this.items]
  }
}

/** The methods a proxy of each built-in type may call. */
export const EXPOSED: Record<string, Set<string>> = {}
for (const C of [
  SharedDict,
  SharedList,
  SharedNamespace,
  SharedQueue,
  SharedJoinableQueue,
  SharedLock,
  SharedSemaphore,
  SharedEvent,
  SharedCondition,
  SharedBarrier,
  SharedValueObject,
  SharedArrayObject,
]) {
  const names = new Set<string>()
  for (let proto = C.prototype; proto && proto !== Shared.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const k of Object.getOwnPropertyNames(proto)) if (k !== 'constructor' && k !== 'dropClient') names.add(k)
  }
  names.delete('reacquire')
  names.delete('releaseAll')
  EXPOSED[C.name] = names
}
