/**
 * What pool calls return: `AsyncResult` (Python's `ApplyResult`/`MapResult`, also awaitable) and
 * the lazy iterator of `imap`/`imapUnordered` (Python's `IMapIterator`).
 */
import { InvalidStateError, TimeoutError } from './errors.js'
import { deadlineOf, waitOptions } from './wait.js'

/** Python's `callback` and `error_callback` of `applyAsync`, `mapAsync` and `starmapAsync`. */
export interface ResultCallbacks<R> {
  /** Called with the value before `get()`/`wait()` settle. If it throws, `get()` rejects with that. */
  callback?: ((value: R) => void) | undefined
  /** Called with the error (the same one `get()` rejects with) before `get()`/`wait()` settle. */
  errorCallback?: ((error: unknown) => void) | undefined
}

type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown }

/** The result of `applyAsync`, `mapAsync` and `starmapAsync`. Await it, or use `get()`. */
export class AsyncResult<R> implements PromiseLike<R> {
  #settled: Settled<R> | undefined
  readonly #done: Promise<void>
  #markDone!: () => void
  readonly #callbacks: ResultCallbacks<R>

  /** @internal */
  constructor(callbacks: ResultCallbacks<R> = {}) {
    this.#callbacks = callbacks
    this.#done = new Promise((resolve) => {
      this.#markDone = resolve
    })
  }

  /** @internal Settles once; later calls are ignored. */
  settle(result: Settled<R>): void {
    if (this.#settled) return
    this.#settled = result
    try {
      if (result.ok) this.#callbacks.callback?.(result.value)
      else this.#callbacks.errorCallback?.(result.error)
    } catch (error) {
      // A callback that throws must not disturb the pool: its error becomes the outcome.
      this.#settled = { ok: false, error }
    } finally {
      this.#markDone()
    }
  }

  /** Whether the call has completed. */
  ready(): boolean {
    return this.#settled !== undefined
  }

  /** Whether it completed without an error; `InvalidStateError` while not ready (as Python). */
  successful(): boolean {
    if (!this.#settled) throw new InvalidStateError('successful() on a result that is not ready')
    return this.#settled.ok
  }

  /** Waits until ready, at most `timeout` ms. */
  async wait(opts?: { timeout?: number | undefined } | number): Promise<void> {
    const deadline = deadlineOf(waitOptions(opts).timeout)
    // Beyond what a timer can wait (about 24.8 days) there is no practical limit.
    if (this.#settled || deadline === undefined || deadline - performance.now() >= 2 ** 31 - 1) return this.#done
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#done, new Promise<void>((resolve) => (timer = setTimeout(resolve, deadline - performance.now())))])
    clearTimeout(timer)
  }

  /** The value, or the call's error; `TimeoutError` if not ready within `timeout` ms. */
  async get(opts?: { timeout?: number | undefined } | number): Promise<R> {
    await this.wait(opts)
    const s = this.#settled
    if (!s) throw new TimeoutError('the result is not ready')
    if (s.ok) return s.value
    throw s.error
  }

  // biome-ignore lint/suspicious/noThenProperty: an AsyncResult is deliberately awaitable
  then<A = R, B = never>(
    onFulfilled?: ((value: R) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.get().then(onFulfilled, onRejected)
  }
}

/** What an imap call hands to its iterator: values, an error at a position, or the end. */
export interface IMapSource<R> {
  /** Called when the consumer took items, so the pool may pull more input. */
  consumed(): void
  /** Called when the consumer stops early (`break`, `return()`). */
  cancel(): void
  /** Marks the result object as the consumer's. */
  readonly results: IMapResults<R>
}

type Entry<R> = { value: R } | { error: unknown }

/** Buffered results of an imap call, in delivery order. */
export class IMapResults<R> {
  readonly #ready: Entry<R>[] = []
  #head = 0
  #ended = false
  readonly #waiting: Array<{ resolve: (r: IteratorResult<R>) => void; reject: (e: unknown) => void }> = []

  get buffered(): number {
    return this.#ready.length - this.#head
  }

  push(entry: Entry<R>): void {
    const w = this.#waiting.shift()
    if (w) {
      if ('error' in entry) w.reject(entry.error)
      else w.resolve({ value: entry.value, done: false })
      return
    }
    this.#ready.push(entry)
  }

  /** Drops what is buffered: the consumer stopped. */
  clear(): void {
    this.#ready.length = 0
    this.#head = 0
  }

  end(): void {
    this.#ended = true
    for (const w of this.#waiting.splice(0)) w.resolve({ value: undefined, done: true })
  }

  get ended(): boolean {
    return this.#ended
  }

  /** The next entry now, `undefined` if none is buffered. */
  take(): Entry<R> | undefined {
    if (this.#head === this.#ready.length) return undefined
    const e = this.#ready[this.#head++] as Entry<R>
    if (this.#head > 1024 && this.#head * 2 > this.#ready.length) {
      this.#ready.splice(0, this.#head)
      this.#head = 0
    }
    return e
  }

  wait(): Promise<IteratorResult<R>> {
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }))
  }
}

/**
 * The lazy result of `imap`/`imapUnordered`. A task's error rejects the `next()` at its position;
 * the iterator goes on after it (as Python's), though `for await` stops at the throw.
 */
export class IMapIterator<R> implements AsyncIterableIterator<R> {
  readonly #source: IMapSource<R>

  /** @internal */
  constructor(source: IMapSource<R>) {
    this.#source = source
  }

  /** The next result (in input order for `imap`, completion order for `imapUnordered`); rejects with the error of a task that failed. */
  next(): Promise<IteratorResult<R>> {
    const results = this.#source.results
    const e = results.take()
    if (e) {
      this.#source.consumed()
      return 'error' in e ? Promise.reject(e.error) : Promise.resolve({ value: e.value, done: false })
    }
    if (results.ended) return Promise.resolve({ value: undefined, done: true })
    return results.wait().finally(() => this.#source.consumed())
  }

  /** Stops early: input is no longer pulled and results not yet delivered are dropped. */
  return(): Promise<IteratorResult<R>> {
    this.#source.cancel()
    this.#source.results.clear()
    return Promise.resolve({ value: undefined, done: true })
  }

  /** `for await (const r of pool.imap(…))`. */
  [Symbol.asyncIterator](): this {
    return this
  }
}
