/**
 * Proxies of a manager's shared objects, and the one connection per manager that each process
 * keeps for them. A call is a request tagged with a number; replies come back in any order, so
 * calls of many proxies share the connection without waiting for each other. A proxy travels to
 * another process as its manager's address, authkey and the object's id, and connects from
 * there on first use. When the manager goes away every pending call rejects with
 * `ManagerError` (`ERR_MANAGER_GONE`).
 */
import { adoptChannel } from './channel.js'
import { type Borrower, Connection, currentBorrower, Pipe } from './connection.js'
import { AbortError, AuthenticationError, ClosedError, ManagerError, SerializationError, TimeoutError, typeError } from './errors.js'
import { type FdCarrier, type HandleDescriptor, holdsHandles, packHandles, registerHandle, toHandle, unpackHandles } from './handles.js'
import { Client } from './listener.js'
import { type ErrorRecord, fromRecord } from './remote-error.js'
import { deadlineOf, type WaitOptions, waitOptions } from './wait.js'

/** Where a shared object lives. */
export interface ProxyRef {
  address: string
  authkey: Buffer
  id: string
  typeid: string
}

/**
 * A request: call `m` of object `o` (`''`: the manager itself) with `a`; with one element, cancel
 * call `x`. Tuples rather than objects: they encode and decode in half the time.
 */
export type Request = [c: number, o: string, m: string, a: unknown[]] | [x: number]
/** A reply to call `c`: its value, or with three elements its error. */
export type Reply = [c: number, v: unknown] | [c: number, v: undefined, e: ErrorRecord]

/** A message link to a manager: a socket connection, or the shared-memory pipe of the process that started it. */
export interface Link {
  send(value: unknown): Promise<void>
  recv(): Promise<unknown>
  close(): void
}

interface Pending {
  resolve(v: unknown): void
  reject(err: unknown): void
  /** Rejected here already (cancelled); the server's reply is only awaited. */
  settled: boolean
}

const clients = new Map<string, ManagerClient>()

function clientKey(address: string, authkey: Buffer): string {
  return `${address}\n${authkey.toString('hex')}`
}

/** What a child needs to revive its shared-memory link to a manager. */
interface LinkHandle {
  data: Record<string, unknown>
  fds: number[]
}

/** Bytes of ring each way of a child's link (larger messages stream through). */
const LINK_CAPACITY = 1 << 18

/** This process's connection to one manager. */
export class ManagerClient {
  readonly address: string
  readonly authkey: Buffer
  #conn: Promise<Link> | undefined
  /** The link once it is up: calls then go out at once, without a turn of the event loop. */
  #link: Link | undefined
  readonly #pending = new Map<number, Pending>()
  #next = 1
  #pumping = false
  #closed = false

  private constructor(address: string, authkey: Buffer) {
    this.address = address
    this.authkey = authkey
  }

  /** The client of this process for the manager at `address` (made on first use). */
  static for(address: string, authkey: Buffer): ManagerClient {
    const key = clientKey(address, authkey)
    let c = clients.get(key)
    if (!c || c.#closed) {
      c = new ManagerClient(address, authkey)
      clients.set(key, c)
    }
    return c
  }

  /** The client of this process for that manager, if one was made. */
  static existing(address: string, authkey: Buffer): ManagerClient | undefined {
    const c = clients.get(clientKey(address, authkey))
    return c && !c.#closed ? c : undefined
  }

  /** @internal Uses `link` (a shared-memory pipe to the manager) instead of a socket; false if one is in use. */
  adopt(link: Link): boolean {
    if (this.#conn) return false
    this.#conn = Promise.resolve(link)
    this.#link = link
    return true
  }

  #carrier: FdCarrier | undefined
  #nextTag = 1
  readonly #linksFor = new WeakMap<Borrower, LinkHandle>()

  /** @internal The starter's side channel to its manager process, for the links of its children. */
  adoptCarrier(carrier: FdCarrier): void {
    this.#carrier = carrier
  }

  /**
   * A shared-memory link for a child about to be started (one per child and manager): one end
   * goes to the manager over the carrier, the other in the child's handles; this process keeps
   * neither once the child is spawned.
   */
  linkFor(child: Borrower): LinkHandle | undefined {
    const carrier = this.#carrier
    if (!carrier || this.#closed) return undefined
    const made = this.#linksFor.get(child)
    if (made) return made
    const [toManager, forChild] = Pipe({ capacityBytes: LINK_CAPACITY })
    const tag = this.#nextTag++
    const theirs = toManager[toHandle]()
    try {
      carrier.send(tag, theirs.fds)
    } catch {
      toManager.close()
      forChild.close()
      return undefined
    }
    toManager.close()
    this.call('', 'attach', [tag, theirs.data]).catch(() => {})
    const h = forChild[toHandle]()
    const link = { data: h.data, fds: h.fds }
    this.#linksFor.set(child, link)
    child.onSpawned(() => forChild.close())
    return link
  }

  #connect(): Promise<Link> {
    this.#conn ??= Client({ address: this.address, authkey: this.authkey }).then(
      (link) => {
        this.#link = link
        return link
      },
      (err) => {
        this.#conn = undefined
        if (err instanceof AuthenticationError) throw err
        throw new ManagerError(`cannot reach the manager at ${printable(this.address)}: ${(err as Error).message}`, { cause: err })
      },
    )
    return this.#conn
  }

  /** Calls method `m` of object `o` with `args`; `signal` cancels it (on the server too). */
  call(o: string, m: string, args: unknown[], signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) return Promise.reject(new ClosedError('the manager connection is closed'))
    let packed: { value: unknown; fds: number[] } = { value: args, fds: [] }
    try {
      if (holdsHandles(args)) packed = packHandles(args)
    } catch (err) {
      return Promise.reject(err)
    }
    if (packed.fds.length > 0) {
      return Promise.reject(
        Object.assign(
          typeError(
            "a Queue, Connection, lock or shared memory of this package cannot be stored in a manager; use the manager's own (manager.Queue(), manager.Lock(), …)",
          ),
          { code: 'ERR_NOT_SHAREABLE' },
        ),
      )
    }
    if (signal?.aborted) return Promise.reject(abortError(signal))
    const c = this.#next++
    return new Promise<unknown>((resolve, reject) => {
      const p: Pending = { resolve, reject, settled: false }
      this.#pending.set(c, p)
      const onAbort = () => {
        if (p.settled) return
        p.settled = true
        reject(abortError(signal as AbortSignal))
        this.#conn?.then((conn) => conn.send([c] satisfies Request).catch(() => {}))
      }
      if (signal) {
        signal.addEventListener('abort', onAbort, { once: true })
        const done = () => signal.removeEventListener('abort', onAbort)
        p.resolve = (v) => {
          done()
          resolve(v)
        }
        p.reject = (e) => {
          done()
          reject(e)
        }
      }
      const go = (conn: Link) => {
        // Replies are read once the request is out: a request that never left expects none.
        conn.send([c, o, m, packed.value as unknown[]] satisfies Request).then(
          () => this.#pump(conn),
          (err) => {
            // Arguments that cannot be serialised fail this call; anything else broke the link.
            if (err instanceof SerializationError) this.#settle(c, (q) => q.reject(err))
            else this.#gone(err)
          },
        )
      }
      if (this.#link) go(this.#link)
      else this.#connect().then(go, (err) => this.#settle(c, (q) => q.reject(err)))
    })
  }

  #settle(c: number, how: (p: Pending) => void): void {
    const p = this.#pending.get(c)
    if (!p) return
    this.#pending.delete(c)
    if (!p.settled) {
      p.settled = true
      how(p)
    }
  }

  /** Reads replies while calls are pending; idle, it holds nothing (the process may exit). */
  async #pump(conn: Link): Promise<void> {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.#pending.size > 0) {
        let reply: Reply
        try {
          reply = (await conn.recv()) as Reply
        } catch (err) {
          this.#gone(err)
          return
        }
        const c = reply[0]
        if (reply.length === 2) {
          let v = reply[1]
          try {
            if (typeof v === 'object' && v !== null) v = unpackHandles(v)
          } catch (err) {
            this.#settle(c, (p) => p.reject(err))
            continue
          }
          this.#settle(c, (p) => p.resolve(v))
        } else this.#settle(c, (p) => p.reject(fromRecord(reply[2])))
      }
    } finally {
      this.#pumping = false
    }
  }

  /** The connection broke: every pending call fails, and the next call connects again. */
  #gone(cause: unknown): void {
    const err = new ManagerError(`the manager at ${printable(this.address)} is gone`, { cause })
    const conn = this.#conn
    this.#conn = undefined
    this.#link = undefined
    conn?.then((c) => c.close()).catch(() => {})
    for (const c of [...this.#pending.keys()]) this.#settle(c, (p) => p.reject(err))
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Closes this process's connection to the manager; pending calls reject with `ManagerError`. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#carrier?.close()
    this.#carrier = undefined
    this.#gone(new ClosedError('the manager connection was closed'))
  }
}

function printable(address: string): string {
  return address.startsWith('\0') ? `@${address.slice(1)}` : address
}

function abortError(signal: AbortSignal): Error {
  return new AbortError('the call was aborted', { cause: signal.reason })
}

/** Blocking options as they travel: the timeout goes to the server, the signal stays here. */
function blocking(opts: unknown): [{ timeout?: number; block?: boolean }, AbortSignal | undefined] {
  const o = waitOptions(opts) as WaitOptions & { block?: boolean }
  deadlineOf(o.timeout)
  if (o.block !== undefined && typeof o.block !== 'boolean') throw typeError('block must be a boolean')
  const out: { timeout?: number; block?: boolean } = {}
  if (o.timeout !== undefined) out.timeout = o.timeout
  if (o.block !== undefined) out.block = o.block
  return [out, o.signal]
}

/**
 * The proxies a factory made here: when one is garbage collected the manager is told, and an
 * object no proxy can reach any more (never passed on, unnamed) is freed, as Python's
 * reference counting frees it.
 */
const made = new FinalizationRegistry<ProxyRef>((ref) => {
  ManagerClient.existing(ref.address, ref.authkey)
    ?.call('', 'decref', [ref.id])
    .catch(() => {})
})

/** @internal Called by the factories: this proxy is the one `create` made. */
export function trackMade(proxy: object, ref: ProxyRef): void {
  made.register(proxy, ref)
}

/** What every proxy has: the object's id and type, and how it travels. */
export class BaseProxy {
  readonly #ref: ProxyRef
  #client: ManagerClient | undefined
  #pinned = false

  /** @internal Proxies are made by a `Manager`'s factories. */
  constructor(ref: ProxyRef) {
    this.#ref = ref
  }

  /** The object's id in its manager (the same in every process). */
  get id(): string {
    return this.#ref.id
  }

  /** The type the manager holds it as: `'dict'`, `'list'`, `'Lock'`, or a registered name. */
  get typeid(): string {
    return this.#ref.typeid
  }

  /** The address of the manager that holds the object. */
  get address(): string {
    return this.#ref.address
  }

  /** @internal */
  protected call(method: string, args: unknown[] = [], signal?: AbortSignal): Promise<unknown> {
    let client = this.#client
    if (!client || client.closed) client = this.#client = ManagerClient.for(this.#ref.address, this.#ref.authkey)
    return client.call(this.#ref.id, method, args, signal)
  }

  /** @internal A blocking call: `opts` is `{ timeout, signal, block? }` or a bare timeout. */
  protected callBlocking(method: string, args: unknown[], opts: unknown): Promise<unknown> {
    let o: ReturnType<typeof blocking>
    try {
      o = blocking(opts)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.call(method, [...args, o[0]], o[1])
  }

  /** Python's `repr` of a proxy: its class, typeid and id. */
  toString(): string {
    return `<${this.constructor.name} typeid='${this.#ref.typeid}' id='${this.#ref.id}'>`
  }

  /** @internal How the proxy travels to another process. */
  [toHandle](): HandleDescriptor {
    const r = this.#ref
    // Passed on: references may now be anywhere, so the manager keeps the object for its life.
    // Told before the handle can reach anyone, on the link any later release goes through.
    if (!this.#pinned) {
      this.#pinned = true
      ManagerClient.for(r.address, r.authkey)
        .call('', 'pin', [r.id])
        .catch(() => {})
    }
    const data: Record<string, unknown> = { address: r.address, authkey: r.authkey, id: r.id, typeid: r.typeid }
    // A child started by the manager's starter gets a shared-memory link of its own.
    const child = currentBorrower()
    const link = child && ManagerClient.existing(r.address, r.authkey)?.linkFor(child)
    if (!link) return { type: 'ManagerProxy', data, fds: [] }
    data.link = link.data
    return { type: 'ManagerProxy', data, fds: link.fds }
  }
}

/** A proxy of a manager's dict (a `Map` in the manager): `get`, `set`, `has`, `delete`, … */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy implements AsyncIterable<[K, V]> {
  /** The value of `key`, or `dflt` (default `undefined`) when there is none. */
  get(key: K, dflt?: V): Promise<V | undefined> {
    return this.call('get', dflt === undefined ? [key] : [key, dflt]) as Promise<V | undefined>
  }
  /** Sets `key` to `value`. */
  set(key: K, value: V): Promise<void> {
    return this.call('set', [key, value]) as Promise<void>
  }
  /** Whether `key` is there. */
  has(key: K): Promise<boolean> {
    return this.call('has', [key]) as Promise<boolean>
  }
  /** Removes `key`; resolves whether it was there. */
  delete(key: K): Promise<boolean> {
    return this.call('delete', [key]) as Promise<boolean>
  }
  /** The keys, in insertion order. */
  keys(): Promise<K[]> {
    return this.call('keys') as Promise<K[]>
  }
  /** The values, in insertion order. */
  values(): Promise<V[]> {
    return this.call('values') as Promise<V[]>
  }
  /** The `[key, value]` pairs, in insertion order. */
  entries(): Promise<[K, V][]> {
    return this.call('entries') as Promise<[K, V][]>
  }
  /** How many entries there are. */
  size(): Promise<number> {
    return this.call('size') as Promise<number>
  }
  /** Removes every entry. */
  clear(): Promise<void> {
    return this.call('clear') as Promise<void>
  }
  /** Sets every entry of a Map, an object or `[key, value]` pairs (Python's `update`). */
  update(other: Map<K, V> | Record<string, V> | [K, V][]): Promise<void> {
    return this.call('update', [other]) as Promise<void>
  }
  /** Removes `key` and resolves with its value, or `dflt` when there was none. */
  pop(key: K, dflt?: V): Promise<V | undefined> {
    return this.call('pop', dflt === undefined ? [key] : [key, dflt]) as Promise<V | undefined>
  }
  /** Python's `setdefault`: the value of `key`, set to `dflt` first if there is none. */
  setDefault(key: K, dflt: V): Promise<V> {
    return this.call('setDefault', [key, dflt]) as Promise<V>
  }
  /** A copy of the whole dict as a `Map`. */
  copy(): Promise<Map<K, V>> {
    return this.call('copy') as Promise<Map<K, V>>
  }
  /** Iterates a snapshot of the entries taken when iteration starts. */
  async *[Symbol.asyncIterator](): AsyncIterator<[K, V]> {
    yield* await this.entries()
  }
}

/** A proxy of a manager's list: `at`, `push`, `pop`, `splice`, `length`, `slice`, … */
export class ListProxy<T = unknown> extends BaseProxy implements AsyncIterable<T> {
  /** The item at `index` (negative counts from the end); `RangeError` when out of range. */
  at(index: number): Promise<T> {
    return this.call('at', [index]) as Promise<T>
  }
  /** Sets the item at `index` (negative counts from the end); `RangeError` when out of range. */
  set(index: number, value: T): Promise<void> {
    return this.call('set', [index, value]) as Promise<void>
  }
  /** Appends; resolves with the new length. */
  push(...values: T[]): Promise<number> {
    return this.call('push', values) as Promise<number>
  }
  /** Removes and resolves with the last item, or the one at `index` (Python's `pop(i)`). */
  pop(index?: number): Promise<T> {
    return this.call('pop', index === undefined ? [] : [index]) as Promise<T>
  }
  /** Inserts `value` before `index` (Python's `insert`: clamped to the ends). */
  insert(index: number, value: T): Promise<void> {
    return this.call('insert', [index, value]) as Promise<void>
  }
  /** Appends every item of `values`; resolves with the new length. */
  extend(values: T[]): Promise<number> {
    return this.call('extend', [values]) as Promise<number>
  }
  /** As `Array#splice`: removes `deleteCount` items from `start`, inserts `items`, resolves with the removed ones. */
  splice(start: number, deleteCount?: number, ...items: T[]): Promise<T[]> {
    return this.call('splice', deleteCount === undefined ? [start] : [start, deleteCount, ...items]) as Promise<T[]>
  }
  /** How many items there are. */
  length(): Promise<number> {
    return this.call('length') as Promise<number>
  }
  /** A copy of the items from `start` to `end`, as `Array#slice`. */
  slice(start?: number, end?: number): Promise<T[]> {
    return this.call('slice', [start, end]) as Promise<T[]>
  }
  /** The first index of an item deeply equal to `value`, or -1. */
  indexOf(value: T): Promise<number> {
    return this.call('indexOf', [value]) as Promise<number>
  }
  /** Whether an item deeply equal to `value` is there. */
  includes(value: T): Promise<boolean> {
    return this.call('includes', [value]) as Promise<boolean>
  }
  /** How many items are deeply equal to `value`. */
  count(value: T): Promise<number> {
    return this.call('count', [value]) as Promise<number>
  }
  /** Removes the first item deeply equal to `value`; `RangeError` if there is none. */
  remove(value: T): Promise<void> {
    return this.call('remove', [value]) as Promise<void>
  }
  /** Reverses the list in place. */
  reverse(): Promise<void> {
    return this.call('reverse') as Promise<void>
  }
  /** Sorts in place: numbers numerically, strings by code unit (as Python compares them). */
  sort(opts?: { reverse?: boolean }): Promise<void> {
    return this.call('sort', opts ? [opts] : []) as Promise<void>
  }
  /** Removes every item. */
  clear(): Promise<void> {
    return this.call('clear') as Promise<void>
  }
  /** A copy of the whole list as an array. */
  copy(): Promise<T[]> {
    return this.call('copy') as Promise<T[]>
  }
  /** Iterates a snapshot of the items taken when iteration starts. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    yield* await this.copy()
  }
}

/** A proxy of a manager's namespace (Python's `Namespace`): named attributes. */
export class NamespaceProxy extends BaseProxy {
  /** The attribute `name` (`undefined` when there is none). */
  get<T = unknown>(name: string): Promise<T> {
    return this.call('get', [name]) as Promise<T>
  }
  /** Sets the attribute `name`. */
  set(name: string, value: unknown): Promise<void> {
    return this.call('set', [name, value]) as Promise<void>
  }
  /** Whether the attribute `name` is set. */
  has(name: string): Promise<boolean> {
    return this.call('has', [name]) as Promise<boolean>
  }
  /** Removes the attribute `name`; resolves whether it was there. */
  delete(name: string): Promise<boolean> {
    return this.call('delete', [name]) as Promise<boolean>
  }
  /** The names of the attributes. */
  keys(): Promise<string[]> {
    return this.call('keys') as Promise<string[]>
  }
  /** The attributes as an object; those starting with `_` only with `all` (as Python's repr hides them). */
  toObject(all = false): Promise<Record<string, unknown>> {
    return this.call('toObject', [all]) as Promise<Record<string, unknown>>
  }
}

/** A proxy of a manager's queue: the same calls as `Queue`, each a round trip to the manager. */
export class QueueProxy<T = unknown> extends BaseProxy {
  /** Puts an item, waiting for room; a timed put that runs out rejects with `TimeoutError`. */
  put(item: T, opts?: WaitOptions & { block?: boolean }): Promise<void> {
    return this.callBlocking('put', [item], opts) as Promise<void>
  }
  /** Puts or rejects with `Full` at once. */
  putNowait(item: T): Promise<void> {
    return this.call('putNowait', [item]) as Promise<void>
  }
  /** Takes an item, waiting for one; a timed get that runs out rejects with `TimeoutError`. */
  get(opts?: WaitOptions & { block?: boolean }): Promise<T> {
    return this.callBlocking('get', [], opts) as Promise<T>
  }
  /** Takes an item or rejects with `Empty` at once. */
  getNowait(): Promise<T> {
    return this.call('getNowait') as Promise<T>
  }
  /** Items in the queue now. */
  qsize(): Promise<number> {
    return this.call('qsize') as Promise<number>
  }
  /** Whether the queue is empty now. */
  empty(): Promise<boolean> {
    return this.call('empty') as Promise<boolean>
  }
  /** Whether the queue is at its `maxsize` now. */
  full(): Promise<boolean> {
    return this.call('full') as Promise<boolean>
  }
}

/** A proxy of a manager's JoinableQueue. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  /** Marks one item taken by `get` as handled; too many calls reject with `InvalidStateError`. */
  taskDone(): Promise<void> {
    return this.call('taskDone') as Promise<void>
  }
  /** Resolves once every item put has been marked done. */
  join(opts?: WaitOptions | number): Promise<void> {
    return this.callBlocking('join', [], opts) as Promise<void>
  }
}

/** A proxy of a manager's Lock, RLock, Semaphore or BoundedSemaphore. */
export class LockProxy extends BaseProxy {
  /** Resolves `true` once held, `false` if `timeout` ran out (or `block: false` and it is taken). */
  acquire(opts?: WaitOptions & { block?: boolean }): Promise<boolean> {
    return this.callBlocking('acquire', [], opts) as Promise<boolean>
  }
  /** Releases the lock; `InvalidStateError` if it is not held (an RLock: not by this process). */
  release(): Promise<void> {
    return this.call('release') as Promise<void>
  }
  /** Runs `fn` holding the lock; releases it also when `fn` throws. */
  async withLock<R>(fn: () => R | Promise<R>, opts?: WaitOptions): Promise<R> {
    const o = waitOptions(opts)
    if (!(await this.acquire(o))) throw new TimeoutError('acquire timed out')
    try {
      return await fn()
    } finally {
      await this.release()
    }
  }
  /** Whether some process holds it (Lock, RLock). */
  locked(): Promise<boolean> {
    return this.call('locked') as Promise<boolean>
  }
}

/** A proxy of a manager's Semaphore or BoundedSemaphore. */
export class SemaphoreProxy extends LockProxy {
  /** Adds `n` units (default 1); a BoundedSemaphore over its start value rejects with `InvalidStateError`. */
  override release(n = 1): Promise<void> {
    return this.call('release', [n]) as Promise<void>
  }
  /** The units free now. */
  getValue(): Promise<number> {
    return this.call('getValue') as Promise<number>
  }
}

/** A proxy of a manager's Event. */
export class EventProxy extends BaseProxy {
  /** Sets the flag and wakes every waiter. */
  set(): Promise<void> {
    return this.call('set') as Promise<void>
  }
  /** Clears the flag. */
  clear(): Promise<void> {
    return this.call('clear') as Promise<void>
  }
  /** Whether the flag is set. */
  isSet(): Promise<boolean> {
    return this.call('isSet') as Promise<boolean>
  }
  /** Resolves `true` once set, `false` if `timeout` ran out. */
  wait(opts?: WaitOptions | number): Promise<boolean> {
    return this.callBlocking('wait', [], opts) as Promise<boolean>
  }
}

/** A proxy of a manager's Condition. */
export class ConditionProxy extends LockProxy {
  /** Releases the lock, waits for a notify (`false` if `timeout` ran out), takes the lock again. */
  wait(opts?: WaitOptions | number): Promise<boolean> {
    return this.callBlocking('wait', [], opts) as Promise<boolean>
  }
  /** Waits until `predicate()` is truthy; resolves with its last value (falsy if `timeout` ran out). */
  async waitFor<R>(predicate: () => R | Promise<R>, opts?: WaitOptions | number): Promise<R> {
    const o = waitOptions(opts)
    const deadline = deadlineOf(o.timeout)
    let result = await predicate()
    while (!result) {
      const left = deadline === undefined ? undefined : deadline - performance.now()
      if (left !== undefined && left <= 0) break
      await this.wait({ timeout: left, signal: o.signal })
      result = await predicate()
    }
    return result
  }
  /** Wakes up to `n` waiters (default 1); the lock must be held by this process. */
  notify(n = 1): Promise<void> {
    return this.call('notify', [n]) as Promise<void>
  }
  /** Wakes every waiter; the lock must be held by this process. */
  notifyAll(): Promise<void> {
    return this.call('notifyAll') as Promise<void>
  }
}

/** A proxy of a manager's Barrier. */
export class BarrierProxy extends BaseProxy {
  /** Resolves with this party's index once all have arrived; `BrokenBarrierError` if broken. */
  wait(opts?: WaitOptions | number): Promise<number> {
    return this.callBlocking('wait', [], opts) as Promise<number>
  }
  /** Breaks the barrier: waiting and later parties reject with `BrokenBarrierError`. */
  abort(): Promise<void> {
    return this.call('abort') as Promise<void>
  }
  /** Returns the barrier to its empty state (waiting parties reject with `BrokenBarrierError`). */
  reset(): Promise<void> {
    return this.call('reset') as Promise<void>
  }
  /** How many parties must arrive. */
  parties(): Promise<number> {
    return this.call('parties') as Promise<number>
  }
  /** How many parties are waiting now. */
  nWaiting(): Promise<number> {
    return this.call('nWaiting') as Promise<number>
  }
  /** Whether the barrier is broken. */
  broken(): Promise<boolean> {
    return this.call('broken') as Promise<boolean>
  }
}

/** A proxy of a manager's Value. */
export class ValueProxy<T = unknown> extends BaseProxy {
  /** The value. */
  get(): Promise<T> {
    return this.call('get') as Promise<T>
  }
  /** Sets the value (checked against the type code: an `i64` takes a bigint or an integer). */
  set(value: T): Promise<void> {
    return this.call('set', [value]) as Promise<void>
  }
}

/** A proxy of a manager's Array. */
export class ArrayProxy<T = unknown> extends BaseProxy implements AsyncIterable<T> {
  /** The element at `index` (negative counts from the end). */
  at(index: number): Promise<T> {
    return this.call('at', [index]) as Promise<T>
  }
  /** Sets the element at `index` (checked against the type code). */
  set(index: number, value: T): Promise<void> {
    return this.call('set', [index, value]) as Promise<void>
  }
  /** How many elements there are. */
  length(): Promise<number> {
    return this.call('length') as Promise<number>
  }
  /** A copy of the elements from `start` to `end`. */
  slice(start?: number, end?: number): Promise<T[]> {
    return this.call('slice', [start, end]) as Promise<T[]>
  }
  /** A copy of every element. */
  toArray(): Promise<T[]> {
    return this.call('toArray') as Promise<T[]>
  }
  /** Iterates a snapshot of the elements taken when iteration starts. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    yield* await this.toArray()
  }
}

/**
 * The proxy of a registered type `T`: each public method of `T` (not starting with `_`) as an
 * async call to the manager that resolves with its (awaited) result.
 */
export type Proxied<T> = {
  // biome-ignore lint/suspicious/noExplicitAny: any method signature
  [K in keyof T as K extends `_${string}` ? never : T[K] extends (...args: any[]) => any ? K : never]: T[K] extends (
    ...args: infer A
  ) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never
} & BaseProxy

/** What a registered type's proxy answers itself; every other name is a method of the object. */
const LOCAL = new Set<PropertyKey>(['id', 'typeid', 'address', 'toString'])
/** Never a call: a proxy must not look like a promise or a JSON-able object. */
const NOT_CALLS = new Set<PropertyKey>(['then', 'catch', 'finally', 'toJSON', 'constructor'])

/** A proxy of a registered type: any method name becomes a call to the manager. */
export function customProxy<T>(ref: ProxyRef): Proxied<T> {
  const base = new CustomProxy(ref)
  return new Proxy(base, {
    get(target, prop) {
      // Own members run on the real object (their private fields are not on the Proxy).
      if (typeof prop === 'symbol' || LOCAL.has(prop)) {
        const v = Reflect.get(target, prop, target)
        return typeof v === 'function' ? v.bind(target) : v
      }
      if (NOT_CALLS.has(prop)) return undefined
      return (...args: unknown[]) => target.invoke(prop, args)
    },
    set() {
      return false
    },
  }) as unknown as Proxied<T>
}

class CustomProxy extends BaseProxy {
  invoke(method: string, args: unknown[]): Promise<unknown> {
    return this.call(method, args)
  }
}

const PROXIES: Record<string, new (ref: ProxyRef) => BaseProxy> = {
  dict: DictProxy,
  list: ListProxy,
  namespace: NamespaceProxy,
  Queue: QueueProxy,
  JoinableQueue: JoinableQueueProxy,
  Lock: LockProxy,
  RLock: LockProxy,
  Semaphore: SemaphoreProxy,
  BoundedSemaphore: SemaphoreProxy,
  Event: EventProxy,
  Condition: ConditionProxy,
  Barrier: BarrierProxy,
  Value: ValueProxy,
  Array: ArrayProxy,
}

/** @internal The proxy for an object of type `typeid`. */
export function makeProxy(ref: ProxyRef): BaseProxy {
  const C = PROXIES[ref.typeid]
  return C ? new C(ref) : (customProxy(ref) as unknown as BaseProxy)
}

/** Links revived in this process, by their descriptors: several proxies may come with one. */
const revivedLinks = new Map<string, Connection<unknown>>()

registerHandle('ManagerProxy', (data, fds) => {
  const { address, authkey, id, typeid, link } = data as {
    address: string
    authkey: Uint8Array
    id: string
    typeid: string
    link?: { recvRing: number; sendRing: number }
  }
  const key = Buffer.from(authkey)
  if (link && fds.length === 2) {
    const fdKey = fds.join(',')
    if (!revivedLinks.has(fdKey)) {
      const conn = new Connection<unknown>(adoptChannel(fds[0] as number), link, fds[1] as number)
      revivedLinks.set(fdKey, conn)
      if (!ManagerClient.for(address, key).adopt(conn)) conn.close()
    }
  }
  return makeProxy({ address, authkey: key, id, typeid })
})
