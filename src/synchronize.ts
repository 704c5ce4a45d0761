/**
 * Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier, shared between
 * processes. Each lives in a small shared-memory segment and waits on futexes (see the core's
 * `sync` module for the layouts). The uncontended paths are `Atomics` operations on a view of
 * the segment's words; waiting, waking and a dead owner's lock go through the binding.
 *
 * Locks are owned by the process: an `RLock` is re-entrant for all of this process's async tasks
 * (and threads); a `Lock` excludes them from each other. A lock whose owner died is taken over
 * by the next `acquire`, which then throws `OwnerDiedError` while holding it.
 */
import {
  AbortError,
  BrokenBarrierError,
  fromNative,
  InvalidStateError,
  OwnerDiedError,
  rangeError,
  TimeoutError,
  typeError,
} from './errors.js'
import { type HandleDescriptor, newId, registerHandle, reviveOnce, type Transferable, toHandle } from './handles.js'
import { native } from './native.js'
import {
  BARRIER_GEN,
  COND_SEQ,
  LOCK_COUNT as COUNT,
  EVENT_FLAG,
  EVENT_SLEEPERS,
  LOCK_ID_MASK as ID_MASK,
  LOCK_OWNER_CHECK_MS as OWNER_CHECK_MS,
  LOCK_RECORD as RECORD,
  SEM_MAX,
  SEM_SLEEPERS,
  SEM_VALUE,
  SPIN_BUSY_MS,
  SPIN_MAX_MS,
  SPIN_START_MS,
  LOCK_STATE as STATE,
} from './sync-layout.js'
import { describeTarget, resolveTarget, type Target, type TargetFunction, type TargetSpec } from './target.js'
import { checkBlock, checkFunction } from './validate.js'
import { deadlineOf, remaining, type Waitable, type WaitOptions, waitFor, waitOptions } from './wait.js'

type SyncHandle = ReturnType<typeof native.syncCreate>

/** Options of a blocking acquire: `block: false` tries once (Python's `block=False`). */
export interface AcquireSyncOptions {
  /** `false`: try once and return at once (Python's `block=False`). */
  block?: boolean
  /** Milliseconds to wait at most; absent: for ever. */
  timeout?: number
}

/**
 * This process as a lock owner: its id and its record (id and start time). Looked up again when
 * `process.pid` changes: a child forked by the fork server starts with the server's module state.
 */
let ownerPid = -1
let ownerId = 0
let ownerRecord = 0n

function owner(): number {
  if (ownerPid !== process.pid) {
    const [id, hi, lo] = native.syncOwner() as [number, number, number]
    ownerId = id
    ownerRecord = (BigInt(hi) << 32n) | BigInt(lo)
    ownerPid = process.pid
  }
  return ownerId
}

/**
 * Learns how long a spin on a shared word pays, as the core's `wait::Spinner` (same budgets, from
 * the core): full after a short wait, halved after a long one. The full budget is longer than a
 * sleeping wake-up on a small machine, so two processes handing off to each other do not both sleep.
 */
class Spinner {
  #budgetMs = SPIN_START_MS
  #wokenHere = false

  /** The wait was ended by this very thread: spinning could not have caught it. */
  wokenHere(): void {
    this.#wokenHere = true
  }

  spin(ready: () => boolean): boolean {
    if (this.#budgetMs <= 0.001) return false
    const until = performance.now() + this.#budgetMs
    for (let i = 1; ; i++) {
      if (ready()) return true
      if ((i & 63) === 0 && performance.now() >= until) return false
    }
  }
  learn(waitedMs: number): void {
    this.#budgetMs = waitedMs <= SPIN_BUSY_MS && !this.#wokenHere ? SPIN_MAX_MS : this.#budgetMs / 2
    this.#wokenHere = false
  }
}

/** Wraps a native call so its `ERR_…` error becomes the matching class. */
function call<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}

function syncOptions(opts: unknown): AcquireSyncOptions {
  if (opts === undefined || opts === null) return {}
  if (typeof opts === 'number') return { timeout: opts }
  if (typeof opts !== 'object') throw typeError('options must be an object or a timeout in milliseconds')
  checkBlock(opts as AcquireSyncOptions)
  return opts as AcquireSyncOptions
}

/** Milliseconds for a blocking native wait: -1 no limit; 0 for `block: false`. */
function syncTimeout(o: AcquireSyncOptions): number {
  if (o.block === false) return 0
  return remaining(deadlineOf(o.timeout))
}

/** An already aborted signal rejects a wait before anything is tried (as the rest of the package). */
function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError('the wait was aborted', { cause: signal.reason })
}

/** Runs a wait; `false` when it timed out (Python's boolean waits), other errors pass. */
async function timedOut<T>(p: Promise<T>): Promise<T | false> {
  try {
    return await p
  } catch (err) {
    if (err instanceof TimeoutError) return false
    throw err
  }
}

let adopting: SyncHandle | undefined
let adoptingId: string | undefined

/** What every synchronisation object shares: its segment, a view of its words, and its handle. */
abstract class SyncObject implements Transferable {
  protected readonly handle: SyncHandle
  protected readonly words: Int32Array
  /** A unique id (the same in every process the object travels to). */
  readonly id: string

  protected constructor(kind: string, value: number) {
    if (adopting) {
      this.handle = adopting
      this.id = adoptingId ?? newId()
      adopting = undefined
      adoptingId = undefined
    } else {
      this.handle = call(() => native.syncCreate(kind, value))
      this.id = newId()
    }
    this.words = new Int32Array(native.syncView(this.handle))
  }

  protected abstract get kind(): string

  /**
   * This process's own async waiters on the object: a change made here (a release, a set, a
   * notify) wakes them at once, without the round trip through the futex and the waker thread.
   */
  readonly #local = new Map<() => void, Spinner | undefined>()

  /** A `watch` for a Waitable; `spinner` learns that such wake-ups are not worth a spin. */
  protected watchLocal(spinner?: Spinner): (wake: () => void) => () => void {
    return (wake) => {
      this.#local.set(wake, spinner)
      return () => this.#local.delete(wake)
    }
  }

  /**
   * The sleeping half of a Waitable: arm the waker with `arm`, undo it with `disarm`, be woken
   * at once by a change made in this process, and let `spinner` learn how long the wait took.
   */
  protected sleeper(
    spinner: Spinner,
    arm: (key: number) => boolean,
    disarm: (key: number) => void,
  ): Pick<Waitable<unknown>, 'arm' | 'disarm' | 'watch'> {
    return {
      arm,
      watch: this.watchLocal(spinner),
      disarm: (key, waitedMs) => {
        disarm(key)
        spinner.learn(waitedMs)
      },
    }
  }

  protected wakeLocal(): void {
    if (this.#local.size === 0) return
    for (const [wake, spinner] of [...this.#local]) {
      spinner?.wokenHere()
      wake()
    }
  }

  /** @internal */
  get fd(): number {
    return native.syncFd(this.handle)
  }

  /** @internal How the object travels to another process. */
  [toHandle](): HandleDescriptor {
    return { type: this.kind, data: { id: this.id }, fds: [this.fd] }
  }
}

/** Revives a synchronisation object of `kind` from a received descriptor (owned from now on). */
function adopt<T extends object>(kind: string, id: unknown, fd: number, make: () => T): T {
  return reviveOnce(
    id,
    fd,
    (o: T) => (o as unknown as SyncObject).fd,
    () => {
      adopting = call(() => native.syncAdopt(kind, fd))
      adoptingId = typeof id === 'string' ? id : undefined
      try {
        return make()
      } finally {
        adopting = undefined
        adoptingId = undefined
      }
    },
  )
}

abstract class LockBase extends SyncObject {
  readonly #record: BigUint64Array
  readonly #spinner = new Spinner()
  protected abstract readonly recursive: boolean

  protected constructor(kind: string) {
    super(kind, 0)
    this.#record = new BigUint64Array(this.words.buffer, 0, 8)
  }

  /** One compare-and-swap when free (and, for an RLock, a counter bump when already ours). */
  #tryFast(): boolean {
    const w = this.words
    if (Atomics.compareExchange(w, STATE, 0, owner()) === 0) {
      Atomics.store(w, COUNT, 1)
      Atomics.store(this.#record, RECORD, ownerRecord)
      return true
    }
    if (this.recursive && (Atomics.load(w, STATE) & ID_MASK) === owner()) {
      Atomics.store(w, COUNT, Atomics.load(w, COUNT) + 1)
      return true
    }
    return false
  }

  #outcome(r: number): boolean {
    if (r === 1) throw new OwnerDiedError('the previous owner of the lock died holding it; this process now holds it')
    return r === 0
  }

  /**
   * Takes the lock, blocking the thread: `true` when taken, `false` when `timeout` (ms) ran out
   * or `block: false` found it held. Throws `OwnerDiedError`, holding the lock, when its previous
   * owner died holding it.
   */
  acquireSync(opts?: AcquireSyncOptions | number): boolean {
    // Options are checked even when the fast path would not need them.
    const timeout = opts === undefined ? -1 : syncTimeout(syncOptions(opts))
    if (this.#tryFast()) return true
    return this.#outcome(call(() => native.lockAcquireSync(this.handle, timeout)))
  }

  /** Takes the lock without blocking the event loop; `false` on timeout. See `acquireSync`. */
  async acquire(opts?: WaitOptions | number): Promise<boolean> {
    const o = waitOptions(opts)
    checkAborted(o.signal)
    const deadline = deadlineOf(o.timeout)
    if (this.#tryFast()) return true
    if ((o as AcquireSyncOptions).block === false) return this.acquireSync({ block: false })
    // Whether the holder lives is read from /proc (microseconds): look only every so often.
    let lastCheck = performance.now()
    const r = await timedOut(
      waitFor<number>(
        {
          attempt: () => {
            if (this.#tryFast()) return 0
            const now = performance.now()
            if (now - lastCheck < OWNER_CHECK_MS) return undefined
            lastCheck = now
            const r = native.lockTryRecover(this.handle)
            return r >= 0 ? r : undefined
          },
          // Not while this process holds it: its release is this thread's to make (it then wakes us
          // directly), and spinning would only delay it.
          spin: () =>
            (Atomics.load(this.words, STATE) & ID_MASK) !== owner() &&
            this.#spinner.spin(() => (Atomics.load(this.words, STATE) & ID_MASK) === 0),
          ...this.sleeper(
            this.#spinner,
            (key) => native.lockArm(this.handle, key),
            (key) => native.wakerDisarm(key),
          ),
        },
        deadline,
        o.signal,
        'acquire',
      ),
    )
    if (r !== false) return this.#outcome(r)
    // Before giving up, as the blocking twin does: a holder that died is taken over.
    const last = native.lockTryRecover(this.handle)
    return last >= 0 ? this.#outcome(last) : false
  }

  /** Releases the lock (one level of an RLock). `InvalidStateError` when it is not held. */
  release(): void {
    const w = this.words
    if (this.recursive) {
      if (Atomics.load(w, STATE) === owner()) {
        const depth = Atomics.load(w, COUNT)
        if (depth > 1) {
          Atomics.store(w, COUNT, depth - 1)
          return
        }
      }
    }
    if (Atomics.compareExchange(w, STATE, owner(), 0) === owner()) return
    call(() => native.lockRelease(this.handle))
    this.wakeLocal()
  }

  /** Runs `fn` holding the lock and releases it after, also when `fn` throws or rejects. */
  async withLock<R>(fn: () => R | Promise<R>, opts?: WaitOptions): Promise<R> {
    checkFunction('withLock', fn)
    try {
      if (!(await this.acquire(opts ?? {}))) throw new TimeoutError('withLock: acquire timed out')
    } catch (err) {
      if (err instanceof OwnerDiedError) this.release()
      throw err
    }
    try {
      return await fn()
    } finally {
      this.release()
    }
  }

  /** `withLock` for blocking code: `fn` runs synchronously. */
  withLockSync<R>(fn: () => R): R {
    checkFunction('withLockSync', fn)
    try {
      this.acquireSync()
    } catch (err) {
      if (err instanceof OwnerDiedError) this.release()
      throw err
    }
    try {
      return fn()
    } finally {
      this.release()
    }
  }

  /** True while this process holds the lock. */
  isMine(): boolean {
    return (Atomics.load(this.words, STATE) & ID_MASK) === owner()
  }

  /** True while some process holds the lock. */
  locked(): boolean {
    return (Atomics.load(this.words, STATE) & ID_MASK) !== 0
  }

  /** @internal Releases every level for a Condition wait; returns the depth to restore. */
  releaseAll(): number {
    const depth = call(() => native.lockReleaseAll(this.handle))
    this.wakeLocal()
    return depth
  }

  /**
   * @internal Takes the lock again after a Condition wait, whatever it takes (as Python), and
   * restores its depth. Returns the `OwnerDiedError` if the lock was taken over from a dead owner
   * (the caller reports it once its own bookkeeping is done).
   */
  async reacquire(depth: number): Promise<OwnerDiedError | undefined> {
    let died: OwnerDiedError | undefined
    try {
      await this.acquire()
    } catch (err) {
      if (!(err instanceof OwnerDiedError)) throw err
      died = err
    }
    native.lockRestoreDepth(this.handle, depth)
    return died
  }

  /** @internal The blocking twin of `reacquire`. */
  reacquireSync(depth: number): OwnerDiedError | undefined {
    let died: OwnerDiedError | undefined
    try {
      this.acquireSync()
    } catch (err) {
      if (!(err instanceof OwnerDiedError)) throw err
      died = err
    }
    native.lockRestoreDepth(this.handle, depth)
    return died
  }

  /** @internal Takes the lock for a short access of its own data: a dead owner's lock is simply taken. */
  enterSync(): void {
    try {
      this.acquireSync()
    } catch (err) {
      if (!(err instanceof OwnerDiedError)) throw err
    }
  }

  override toString(): string {
    const holder = Atomics.load(this.words, STATE) & ID_MASK
    return `<${this.kind}(owner=${holder === 0 ? 'None' : holder === owner() ? 'this process' : holder})>`
  }
}

/** A non-recursive lock shared between processes (Python's `multiprocessing.Lock`). */
export class Lock extends LockBase {
  protected readonly recursive = false
  constructor() {
    super('Lock')
  }
  protected get kind(): string {
    return 'Lock'
  }
}

/** A lock that the process holding it may take again; release it as often (Python's `RLock`). */
export class RLock extends LockBase {
  protected readonly recursive = true
  constructor() {
    super('RLock')
  }
  protected get kind(): string {
    return 'RLock'
  }
}

function checkCount(name: string, v: unknown): number {
  if (typeof v !== 'number') throw typeError(`${name} must be a number, not ${typeof v}`)
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw rangeError(`${name} must be an integer from 0 to 2^31-1, got ${v}`)
  return v
}

/** A counter processes take from and give back to (Python's `Semaphore`). */
export class Semaphore extends SyncObject {
  readonly #spinner = new Spinner()

  constructor(value = 1) {
    super(new.target === BoundedSemaphore ? 'BoundedSemaphore' : 'Semaphore', adopting ? 0 : checkCount('value', value))
  }

  protected get kind(): string {
    return 'Semaphore'
  }

  #tryFast(): boolean {
    const w = this.words
    let v = Atomics.load(w, SEM_VALUE)
    while (v > 0) {
      const seen = Atomics.compareExchange(w, SEM_VALUE, v, v - 1)
      if (seen === v) return true
      v = seen
    }
    return false
  }

  /** The current value (Python's `get_value()`). */
  getValue(): number {
    return Atomics.load(this.words, SEM_VALUE)
  }

  /** Takes one unit, blocking the thread: `true` when taken, `false` when `timeout` (ms) ran out or `block: false` found none. */
  acquireSync(opts?: AcquireSyncOptions | number): boolean {
    const timeout = opts === undefined ? -1 : syncTimeout(syncOptions(opts))
    if (this.#tryFast()) return true
    return call(() => native.semAcquireSync(this.handle, timeout))
  }

  /** Takes one unit without blocking the event loop; `false` when the timeout ran out first. */
  async acquire(opts?: WaitOptions | number): Promise<boolean> {
    const o = waitOptions(opts)
    checkAborted(o.signal)
    const deadline = deadlineOf(o.timeout)
    if (this.#tryFast()) return true
    if ((o as AcquireSyncOptions).block === false) return false
    const r = await timedOut(
      waitFor<true>(
        {
          attempt: () => (this.#tryFast() ? true : undefined),
          spin: () => this.#spinner.spin(() => Atomics.load(this.words, SEM_VALUE) > 0),
          ...this.sleeper(
            this.#spinner,
            (key) => native.semArm(this.handle, key),
            (key) => native.semDisarm(this.handle, key),
          ),
        },
        deadline,
        o.signal,
        'acquire',
      ),
    )
    return r === true
  }

  /** Gives one back. A `BoundedSemaphore` released beyond its initial value throws `InvalidStateError`. */
  release(): void {
    // The core's `Semaphore::release`, on the view: add below the bound, wake only if somebody sleeps.
    const w = this.words
    const max = Atomics.load(w, SEM_MAX) >>> 0
    let v = Atomics.load(w, SEM_VALUE)
    for (;;) {
      if (v >= max) throw new InvalidStateError('semaphore or lock released too many times')
      const seen = Atomics.compareExchange(w, SEM_VALUE, v, v + 1)
      if (seen === v) break
      v = seen
    }
    if (Atomics.load(w, SEM_SLEEPERS) !== 0) {
      native.semWake(this.handle)
      this.wakeLocal()
    }
  }

  /** Runs `fn` holding one unit, and gives it back however `fn` ends; `TimeoutError` if none came in time. */
  async withLock<R>(fn: () => R | Promise<R>, opts?: WaitOptions): Promise<R> {
    checkFunction('withLock', fn)
    if (!(await this.acquire(opts ?? {}))) throw new TimeoutError('withLock: acquire timed out')
    try {
      return await fn()
    } finally {
      this.release()
    }
  }

  /** The blocking twin of `withLock`. */
  withLockSync<R>(fn: () => R): R {
    checkFunction('withLockSync', fn)
    this.acquireSync()
    try {
      return fn()
    } finally {
      this.release()
    }
  }

  override toString(): string {
    return `<${this.kind}(value=${this.getValue()})>`
  }
}

/** A Semaphore that refuses to be released more often than it was acquired. */
export class BoundedSemaphore extends Semaphore {
  protected override get kind(): string {
    return 'BoundedSemaphore'
  }
}

/** A flag processes wait on until it is set (Python's `Event`). */
export class Event extends SyncObject {
  readonly #spinner = new Spinner()

  constructor() {
    super('Event', 0)
  }

  protected get kind(): string {
    return 'Event'
  }

  /** Whether the flag is set. */
  isSet(): boolean {
    return Atomics.load(this.words, EVENT_FLAG) !== 0
  }

  /** Sets the flag and wakes every waiter. */
  set(): void {
    Atomics.store(this.words, EVENT_FLAG, 1)
    if (Atomics.load(this.words, EVENT_SLEEPERS) !== 0) {
      native.eventSet(this.handle)
      this.wakeLocal()
    }
  }

  /** Clears the flag: later waits block until the next `set()`. */
  clear(): void {
    Atomics.store(this.words, EVENT_FLAG, 0)
  }

  /** Waits until set; `false` when the timeout ran out first. A number is taken as the timeout. */
  async wait(opts?: WaitOptions | number): Promise<boolean> {
    const o = waitOptions(opts)
    checkAborted(o.signal)
    if (this.isSet()) return true
    const r = await timedOut(
      waitFor<true>(
        {
          attempt: () => (this.isSet() ? true : undefined),
          spin: () => this.#spinner.spin(() => this.isSet()),
          ...this.sleeper(
            this.#spinner,
            (key) => native.eventArm(this.handle, key),
            (key) => native.eventDisarm(this.handle, key),
          ),
        },
        deadlineOf(o.timeout),
        o.signal,
        'wait',
      ),
    )
    return r === true
  }

  /** The blocking twin of `wait`. */
  waitSync(opts?: { timeout?: number } | number): boolean {
    if (this.isSet()) return true
    const timeout = remaining(deadlineOf(syncOptions(opts).timeout))
    return native.eventWaitSync(this.handle, timeout)
  }

  override toString(): string {
    return `<Event(${this.isSet() ? 'set' : 'unset'})>`
  }
}

let adoptingLock: Lock | RLock | undefined

/** A condition variable over a shared lock (Python's `Condition`; an `RLock` by default). */
export class Condition extends SyncObject {
  readonly #lock: Lock | RLock
  readonly #spinner = new Spinner()

  constructor(lock?: Lock | RLock) {
    super('Condition', 0)
    if (adoptingLock) {
      this.#lock = adoptingLock
      adoptingLock = undefined
    } else {
      if (lock !== undefined && !(lock instanceof LockBase)) throw typeError('a Condition takes a Lock or an RLock')
      this.#lock = lock ?? new RLock()
    }
  }

  protected get kind(): string {
    return 'Condition'
  }

  /** The lock this condition wraps. */
  getLock(): Lock | RLock {
    return this.#lock
  }

  /** Takes the wrapped lock (see `Lock.acquire`). */
  acquire(opts?: WaitOptions | number): Promise<boolean> {
    return this.#lock.acquire(opts)
  }
  /** Takes the wrapped lock, blocking (see `Lock.acquireSync`). */
  acquireSync(opts?: AcquireSyncOptions | number): boolean {
    return this.#lock.acquireSync(opts)
  }
  /** Releases the wrapped lock. */
  release(): void {
    this.#lock.release()
  }
  /** Runs `fn` holding the wrapped lock. */
  withLock<R>(fn: () => R | Promise<R>, opts?: WaitOptions): Promise<R> {
    return this.#lock.withLock(fn, opts)
  }
  /** The blocking twin of `withLock`. */
  withLockSync<R>(fn: () => R): R {
    return this.#lock.withLockSync(fn)
  }

  #checkOwned(what: string): void {
    if (!this.#lock.isMine()) throw new InvalidStateError(`cannot ${what} on an un-acquired lock`)
  }

  /**
   * Releases the lock, waits for a notify (or the timeout), takes the lock again. `true` when
   * notified, `false` on timeout. The lock is held again when this settles, also on abort, and
   * when it rejects with `OwnerDiedError` (the lock's holder died meanwhile; it was taken over).
   */
  async wait(opts?: WaitOptions | number): Promise<boolean> {
    const o = waitOptions(opts)
    checkAborted(o.signal)
    this.#checkOwned('wait')
    const deadline = deadlineOf(o.timeout)
    let observed = native.condEnter(this.handle)
    for (;;) {
      const depth = this.#lock.releaseAll()
      let moved = true
      let failure: unknown
      try {
        await waitFor<true>(
          {
            attempt: () => (Atomics.load(this.words, COND_SEQ) >>> 0 !== observed ? true : undefined),
            spin: () => this.#spinner.spin(() => Atomics.load(this.words, COND_SEQ) >>> 0 !== observed),
            ...this.sleeper(
              this.#spinner,
              (key) => native.condArm(this.handle, observed, key),
              (key) => native.wakerDisarm(key),
            ),
          },
          deadline,
          o.signal,
          'wait',
        )
      } catch (err) {
        moved = false
        if (!(err instanceof TimeoutError)) failure = err
      }
      const died = await this.#lock.reacquire(depth)
      if (native.condTakeToken(this.handle)) {
        if (died) throw died
        return true
      }
      if (died || !moved || (deadline !== undefined && performance.now() >= deadline)) {
        native.condLeave(this.handle)
        if (died) throw died
        if (failure) throw failure
        return false
      }
      observed = native.condObserve(this.handle) >>> 0
    }
  }

  /** The blocking twin of `wait`. */
  waitSync(opts?: { timeout?: number } | number): boolean {
    const o = syncOptions(opts)
    this.#checkOwned('wait')
    const deadline = deadlineOf(o.timeout)
    let observed = native.condEnter(this.handle)
    for (;;) {
      const depth = this.#lock.releaseAll()
      const moved = native.condSleepSync(this.handle, observed, remaining(deadline))
      const died = this.#lock.reacquireSync(depth)
      if (native.condTakeToken(this.handle)) {
        if (died) throw died
        return true
      }
      if (died || !moved || (deadline !== undefined && performance.now() >= deadline)) {
        native.condLeave(this.handle)
        if (died) throw died
        return false
      }
      observed = native.condObserve(this.handle)
    }
  }

  /** Waits until `predicate()` is truthy; returns its last value (falsy on timeout). */
  async waitFor<R>(predicate: () => R, opts?: WaitOptions | number): Promise<R> {
    checkFunction('predicate', predicate)
    const o = waitOptions(opts)
    const deadline = deadlineOf(o.timeout)
    let result = predicate()
    while (!result) {
      if (deadline !== undefined && performance.now() >= deadline) break
      await this.wait({ timeout: deadline === undefined ? undefined : deadline - performance.now(), signal: o.signal })
      result = predicate()
    }
    return result
  }

  /** The blocking twin of `waitFor`. */
  waitForSync<R>(predicate: () => R, opts?: { timeout?: number } | number): R {
    checkFunction('predicate', predicate)
    const deadline = deadlineOf(syncOptions(opts).timeout)
    let result = predicate()
    while (!result) {
      if (deadline !== undefined && performance.now() >= deadline) break
      this.waitSync({ timeout: deadline === undefined ? undefined : deadline - performance.now() })
      result = predicate()
    }
    return result
  }

  /** Wakes up to `n` waiters (1 by default). The lock must be held. */
  notify(n = 1): void {
    this.#checkOwned('notify')
    if (typeof n !== 'number') throw typeError('n must be a number')
    if (Number.isNaN(n)) throw rangeError('n must not be NaN')
    if (n <= 0) return
    if (native.condNotify(this.handle, Math.min(n, 0x7fffffff)) > 0) this.wakeLocal()
  }

  /** Wakes every waiter. The lock must be held. */
  notifyAll(): void {
    this.notify(0x7fffffff)
  }

  /** @internal */
  override [toHandle](): HandleDescriptor {
    const lock = this.#lock[toHandle]()
    return {
      type: 'Condition',
      data: { id: this.id, lock: { type: lock.type, id: lock.data.id } },
      fds: [this.fd, ...lock.fds],
    }
  }
}

/** Options of a `Barrier`. */
export interface BarrierOptions {
  /** Run once per crossing by the last party to arrive, before anyone is released. */
  action?: Target
  /** The default timeout (ms) of `wait`. */
  timeout?: number
}

/** A barrier wait that could not even take the barrier's internal lock in time. */
function guardTimedOut(): BrokenBarrierError {
  const cause = new TimeoutError('barrier wait timed out: another process holds its internal lock')
  return new BrokenBarrierError('the barrier wait timed out', { cause })
}

/** `parties` waits meet, then all go on together (Python's `Barrier`). */
export class Barrier extends SyncObject {
  readonly #timeout: number | undefined
  readonly #action: Target | undefined
  #actionSpec: TargetSpec | undefined
  #resolved: TargetFunction | undefined

  constructor(parties: number, opts: BarrierOptions = {}) {
    super('Barrier', adopting ? 0 : checkParties(parties))
    if (typeof opts !== 'object' || opts === null) throw typeError('Barrier options must be an object')
    if (opts.timeout !== undefined) deadlineOf(opts.timeout)
    this.#timeout = opts.timeout
    this.#action = opts.action
    if (typeof opts.action === 'function') this.#resolved = opts.action as TargetFunction
    else if (opts.action !== undefined) this.#actionSpec = describeTarget(opts.action)
  }

  protected get kind(): string {
    return 'Barrier'
  }

  /** The number of parties needed to cross. */
  get parties(): number {
    return native.barrierInfo(this.handle)[0] as number
  }

  /** Parties waiting now. */
  get nWaiting(): number {
    return native.barrierInfo(this.handle)[1] as number
  }

  /** Whether the barrier is broken (`abort()`, a timed-out wait); `reset()` mends it. */
  get broken(): boolean {
    return native.barrierInfo(this.handle)[2] === 1
  }

  async #action_(): Promise<TargetFunction | undefined> {
    if (this.#resolved || !this.#actionSpec) return this.#resolved
    this.#resolved = await resolveTarget(this.#actionSpec)
    return this.#resolved
  }

  /** `[kind, generation, index]` (kind 3: the internal lock was not free within `timeout`). */
  #arrive(timeout: number): [number, number, number] {
    try {
      return native.barrierArrive(this.handle, timeout) as [number, number, number]
    } catch {
      throw new BrokenBarrierError('the barrier is broken')
    }
  }

  /**
   * Arrives without blocking the event loop: the internal lock is held for a few instructions
   * by a party of ours, so one that stays taken is held by a stranger; retry until the deadline.
   */
  async #arriveAsync(deadline: number | undefined, signal: AbortSignal | undefined): Promise<[number, number, number]> {
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      const arrival = this.#arrive(0)
      if (arrival[0] !== 3) return arrival
      checkAborted(signal)
      const left = remaining(deadline)
      if (left === 0) throw guardTimedOut()
      await new Promise((resolve) => setTimeout(resolve, left < 0 ? pause : Math.min(pause, left)))
    }
  }

  /**
   * Waits for all parties; resolves with this party's arrival index (0 … parties-1). Rejects
   * with `BrokenBarrierError` when the barrier is or becomes broken; a wait that times out
   * breaks it (as Python). A number is taken as the timeout.
   */
  async wait(opts?: WaitOptions | number): Promise<number> {
    const o = waitOptions(opts)
    checkAborted(o.signal)
    const deadline = deadlineOf(o.timeout ?? this.#timeout)
    const action = await this.#action_()
    for (;;) {
      const [kind, gen, index] = await this.#arriveAsync(deadline, o.signal)
      if (kind === 1) {
        if (action) {
          try {
            await action()
          } catch (err) {
            call(() => native.barrierAbort(this.handle))
            this.wakeLocal()
            throw err
          }
        }
        call(() => native.barrierCross(this.handle, gen))
        this.wakeLocal()
        return index
      }
      let outcome: number
      try {
        outcome = await waitFor<number>(
          {
            attempt: () => {
              if (kind === 2) return Atomics.load(this.words, BARRIER_GEN) >>> 0 !== gen ? 0 : undefined
              const r = native.barrierOutcome(this.handle, gen)
              return r < 0 ? undefined : r
            },
            spin: () => false,
            arm: (key) => native.barrierArm(this.handle, gen, key),
            disarm: (key) => native.wakerDisarm(key),
            watch: this.watchLocal(),
          },
          deadline,
          o.signal,
          'barrier wait',
        )
      } catch (err) {
        if (kind === 0) {
          call(() => native.barrierAbortGeneration(this.handle, gen))
          this.wakeLocal()
        }
        if (err instanceof TimeoutError) throw new BrokenBarrierError('the barrier wait timed out', { cause: err })
        throw err
      }
      if (kind === 2) continue
      if (outcome !== 0) throw new BrokenBarrierError('the barrier was broken (aborted, reset or timed out)')
      return index
    }
  }

  /** The blocking twin of `wait` (an action given as `{ module, name }` must have been resolved by an async `wait`, or be a function). */
  waitSync(opts?: { timeout?: number } | number): number {
    const o = syncOptions(opts)
    const deadline = deadlineOf(o.timeout ?? this.#timeout)
    for (;;) {
      const [kind, gen, index] = this.#arrive(remaining(deadline))
      if (kind === 3) throw guardTimedOut()
      if (kind === 1) {
        if (this.#actionSpec && !this.#resolved) {
          call(() => native.barrierAbort(this.handle))
          throw new InvalidStateError('the barrier action is not loaded in this process yet: use the async wait() once')
        }
        if (this.#resolved) {
          try {
            this.#resolved()
          } catch (err) {
            call(() => native.barrierAbort(this.handle))
            this.wakeLocal()
            throw err
          }
        }
        call(() => native.barrierCross(this.handle, gen))
        this.wakeLocal()
        return index
      }
      if (kind === 2) {
        if (!native.barrierWaitMovedSync(this.handle, gen, remaining(deadline))) throw new BrokenBarrierError('the barrier wait timed out')
        continue
      }
      const r = call(() => native.barrierWaitSync(this.handle, gen, remaining(deadline)))
      if (r === 0) return index
      throw new BrokenBarrierError(r === 2 ? 'the barrier wait timed out' : 'the barrier was broken (aborted, reset or timed out)')
    }
  }

  /** Breaks the barrier: every waiter, and every wait until `reset()`, fails with `BrokenBarrierError`. */
  abort(): void {
    call(() => native.barrierAbort(this.handle))
    this.wakeLocal()
  }

  /** Back to the initial state; parties waiting now fail with `BrokenBarrierError`. */
  reset(): void {
    call(() => native.barrierReset(this.handle))
    this.wakeLocal()
  }

  /** @internal */
  override [toHandle](): HandleDescriptor {
    const action = this.#actionSpec ?? (this.#action ? describeTarget(this.#action) : undefined)
    return { type: 'Barrier', data: { id: this.id, timeout: this.#timeout, action }, fds: [this.fd] }
  }

  /** @internal */
  static revive(data: Record<string, unknown>): Barrier {
    const b = new Barrier(1, { timeout: data.timeout as number | undefined })
    b.#actionSpec = data.action as TargetSpec | undefined
    if (b.#actionSpec) void b.#action_().catch(() => {})
    return b
  }
}

function checkParties(parties: unknown): number {
  const n = checkCount('parties', parties)
  if (n < 1) throw rangeError('parties must be at least 1')
  return n
}

/** Revives a Lock or RLock from `{ type, id }` and its descriptor. */
export function reviveLock(type: unknown, id: unknown, fd: number): Lock | RLock {
  if (type === 'RLock') return adopt('RLock', id, fd, () => new RLock())
  return adopt('Lock', id, fd, () => new Lock())
}

registerHandle('Lock', (data, [fd]) => reviveLock('Lock', data.id, fd as number))
registerHandle('RLock', (data, [fd]) => reviveLock('RLock', data.id, fd as number))
registerHandle('Semaphore', (data, [fd]) => adopt('Semaphore', data.id, fd as number, () => new Semaphore()))
registerHandle('BoundedSemaphore', (data, [fd]) => adopt('BoundedSemaphore', data.id, fd as number, () => new BoundedSemaphore()))
registerHandle('Event', (data, [fd]) => adopt('Event', data.id, fd as number, () => new Event()))
registerHandle('Barrier', (data, [fd]) => adopt('Barrier', data.id, fd as number, () => Barrier.revive(data)))
registerHandle('Condition', (data, [fd, lockFd]) => {
  const l = data.lock as { type: string; id: string }
  const lock = reviveLock(l.type, l.id, lockFd as number)
  return adopt('Condition', data.id, fd as number, () => {
    adoptingLock = lock
    return new Condition()
  })
})
