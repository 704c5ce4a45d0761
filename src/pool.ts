/**
 * Pool: Python's `multiprocessing.Pool` on worker processes, built so that it never hangs.
 *
 * Each worker has its own inbox (a queue only it reads) and all share one result queue. The pool
 * keeps every chunk it sent in the worker's in-flight list until the worker replies, so when a
 * worker dies the pool knows exactly what it held: chunks still in its inbox were never started
 * and go to another worker; the one it was running rejects with `WorkerExitedError`. How many
 * chunks a worker may have queued adapts to how long its chunks take (deep for tiny tasks,
 * shallow for long ones, so no worker sits on work another could run).
 */
import { EventEmitter } from 'node:events'
import { constants } from 'node:os'
import { NOTHING } from './channel.js'
import {
  AbortError,
  ClosedError,
  InvalidStateError,
  MultiprocError,
  ProcessError,
  RemoteError,
  rangeError,
  SerializationError,
  TargetError,
  TerminatedError,
  TimeoutError,
  typeError,
  WorkerExitedError,
} from './errors.js'
import { FdCarrier, holdsHandles, packHandles } from './handles.js'
import { trustArray } from './plain.js'
import { AsyncResult, IMapIterator, IMapResults, type IMapSource, type ResultCallbacks } from './pool-result.js'
import { Reply, type ReplyMessage, type TaskMessage, type WorkerSetup } from './pool-worker.js'
import { checkNotBootstrapping, cpuCount, Process, whenExited } from './process.js'
import { Queue } from './queue.js'
import { fromRecord, remoteError } from './remote-error.js'
import type { Serializer } from './serialize.js'
import { describeTarget, findExport, type Target, type TargetSpec } from './target.js'
import { checkInteger, checkOptions } from './validate.js'

export interface PoolOptions {
  /** Worker processes; default `cpuCount()`. */
  processes?: number | undefined
  /** Run once in each worker before its first task, with `initargs`. */
  initializer?: Target | undefined
  initargs?: unknown[] | undefined
  /** Chunks a worker runs before it is replaced by a fresh one (Python's `maxtasksperchild`). */
  maxTasksPerChild?: number | undefined
  /** Modules whose exports function targets may be found among. */
  modules?: (string | URL)[] | undefined
  /**
   * Encodes tasks and results instead of structured clone. It must be exported from one of
   * `modules` (workers import it from there).
   */
  serializer?: Serializer | undefined
  /** Milliseconds each task may run; a chunk of n tasks gets n times this. Over it, the worker is killed and replaced. */
  taskTimeout?: number | undefined
}

/** Progress of one call: tasks finished, and the total once the input is known to end. */
export interface Progress {
  done: number
  total: number | null
}

export interface CallOptions {
  /** Milliseconds for the whole call; on expiry the workers running its tasks are killed and replaced. */
  timeout?: number | undefined
  /** Aborting rejects the call with `AbortError` and kills the workers running its tasks. */
  signal?: AbortSignal | undefined
  onProgress?: ((progress: Progress) => void) | undefined
}

export interface MapOptions extends CallOptions {
  /** Tasks sent to a worker at a time; default as Python (`map`: about 4 chunks per worker, `imap`: 1). */
  chunksize?: number | undefined
}

export type ApplyOptions = CallOptions & ResultCallbacks<unknown>

const WORKER_TARGET = { module: new URL('./pool-worker.js', import.meta.url), name: 'poolWorker' }
const INBOX_BYTES = 1 << 20
const RESULT_BYTES = 1 << 20
/** A worker may have this much of its typical work queued behind the chunk it runs. */
const QUEUE_MS = 2
const MAX_DEPTH = 64
const MAX_FDS_PER_TASK = 253
const MAX_EARLY_EXITS = 3
/** Signal names by number; the first name of each number wins (SIGABRT, not its alias SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>()
for (const [name, num] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name)

let nextChunkId = 1

/** A slice of a call's input, sent to one worker as one message. */
interface Chunk {
  readonly id: number
  readonly call: Call
  /** Position among the call's chunks (for ordered delivery). */
  readonly seq: number
  readonly items: unknown[]
  worker: Worker | null
  sentAt: number
  timer: NodeJS.Timeout | undefined
  /** The call no longer wants its result (failed, cancelled, timed out). */
  dropped: boolean
}

interface Worker {
  readonly index: number
  readonly proc: Process
  readonly inbox: Queue<TaskMessage | null>
  /** Its replies. One channel per worker: a worker killed mid-reply spoils only its own. */
  readonly results: Queue<ReplyMessage>
  /** Whether a loop receives its replies now. */
  receiving: boolean
  /** Ends that loop for good (the worker is gone). */
  readonly stopReceiving: AbortController
  /** It exited; its replies are being drained before what it held is settled. */
  exitPending: boolean
  /** Its reply channel cannot be read any more. */
  spoiled: boolean
  readonly inflight: Chunk[]
  /** Targets this worker has been told about. */
  readonly knows: Set<number>
  /** Handles (by key) whose descriptors this worker has been sent. */
  readonly sentKeys: Set<string>
  readonly carrier: FdCarrier
  ready: boolean
  /** No more work goes to it: killed, exiting, or exited. */
  retired: boolean
  dispatched: number
  /** A call with a deadline or signal whose chunks it runs, alone. */
  exclusiveTo: Call | null
  /** Kept free for a call with a deadline or signal that waits for a worker of its own. */
  reservedFor: Call | null
  /** Its last chunk is sent (maxTasksPerChild) and its successor already started. */
  replaced: boolean
  /** Smoothed milliseconds per chunk (running time, without time spent queued). */
  chunkMs: number | undefined
  lastReplyAt: number
}

/** What a call does with its chunks' outcomes. */
interface Sink {
  chunkDone(chunk: Chunk, values: unknown[]): void
  chunkFailed(chunk: Chunk, error: unknown): void
  failed(error: unknown): void
  completed(): void
}

type Input = { array: readonly unknown[] } | { iterator: Iterator<unknown> } | { asyncIterator: AsyncIterator<unknown> }

class Call {
  readonly queue: Chunk[] = []
  nextSeq = 0
  nextIndex = 0
  running = 0
  done = 0
  total: number | null = null
  inputDone = false
  pulling = false
  settled = false
  /** imap: a failed chunk takes its place among the results and the call goes on. */
  streaming = false
  /** The input threw: the call fails with it once the chunks taken before are answered. */
  inputError: { error: unknown } | undefined
  /** The total the last progress report gave. */
  reportedTotal: number | null = null
  /** Drops the call's deadline timer and abort listener. */
  cleanup: () => void = () => {}
  /** Lets the call say it has enough undelivered results (imap backpressure). */
  mayPull: () => boolean = () => true

  constructor(
    readonly targetId: number,
    readonly star: boolean,
    readonly chunksize: number,
    readonly input: Input,
    readonly exclusive: boolean,
    readonly taskTimeout: number | undefined,
    readonly onProgress: ((p: Progress) => void) | undefined,
    readonly sink: Sink,
  ) {
    if ('array' in input) this.total = input.array.length
  }

  /** The next chunk to send, if one is ready now; may start an asynchronous pull. */
  take(kick: () => void): Chunk | undefined {
    if (this.settled) return undefined
    const queued = this.queue.shift()
    if (queued) return queued
    if (this.inputDone || this.pulling || !this.mayPull()) return undefined
    const input = this.input
    if ('array' in input) {
      const items = trustArray(input.array.slice(this.nextIndex, this.nextIndex + this.chunksize))
      if (this.nextIndex + items.length >= input.array.length) this.inputDone = true
      return items.length > 0 ? this.chunk(items) : undefined
    }
    if ('iterator' in input) {
      const items: unknown[] = []
      try {
        while (items.length < this.chunksize && this.accept(input.iterator.next(), items));
      } catch (error) {
        this.inputFailed(error)
      }
      return items.length > 0 ? this.chunk(items) : undefined
    }
    this.pulling = true
    void this.pullAsync(input.asyncIterator).finally(() => {
      this.pulling = false
      kick()
    })
    return undefined
  }

  private async pullAsync(iterator: AsyncIterator<unknown>): Promise<void> {
    const items: unknown[] = []
    try {
      while (items.length < this.chunksize && this.accept(await iterator.next(), items));
    } catch (error) {
      this.inputFailed(error)
    }
    if (items.length > 0 && !this.settled) this.queue.push(this.chunk(items))
  }

  /** Takes one step of the input into `items`; false once the input has ended. */
  private accept(r: IteratorResult<unknown>, items: unknown[]): boolean {
    if (!r.done) {
      items.push(r.value)
      return true
    }
    this.inputDone = true
    this.total = this.nextIndex
    return false
  }

  private inputFailed(error: unknown): void {
    this.inputDone = true
    this.inputError = { error }
  }

  private chunk(items: unknown[]): Chunk {
    this.nextIndex += items.length
    if (this.inputDone) this.total = this.nextIndex
    return {
      id: nextChunkId++,
      call: this,
      seq: this.nextSeq++,
      items: trustArray(items),
      worker: null,
      sentAt: 0,
      timer: undefined,
      dropped: false,
    }
  }

  /** Whether every chunk has been answered and no input remains. */
  get finished(): boolean {
    return this.inputDone && !this.pulling && this.running === 0 && this.queue.length === 0
  }

  /** Stops the input: releases an iterator the call still holds (as `for…of` does on `break`). */
  closeInput(): void {
    if (this.inputDone) return
    this.inputDone = true
    const input = this.input
    try {
      if ('iterator' in input) input.iterator.return?.()
      else if ('asyncIterator' in input) void input.asyncIterator.return?.()?.then(undefined, () => {})
    } catch {
      // The iterator's own cleanup failed; the call is over either way.
    }
  }
}

/**
 * The most workers a pool may have. Each is a whole OS process with its own event loop and about
 * six descriptors in the parent; more than this is a mistake (a number meant for something else),
 * not a workload, and would only fork until the system refuses.
 */
export const MAX_PROCESSES = 1024

/** Longer than a timer can wait (about 24.8 days): taken as no limit. */
const NO_LIMIT_MS = 2 ** 31 - 1

function checkMs(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number') throw typeError(`${name} must be a number of milliseconds`)
  if (Number.isNaN(v)) throw rangeError(`${name} must not be NaN`)
  return v >= NO_LIMIT_MS ? undefined : Math.max(0, v)
}

function inputOf(iterable: unknown): Input {
  if (Array.isArray(iterable)) return { array: iterable }
  if (iterable !== null && typeof iterable === 'object') {
    const it = iterable as Partial<AsyncIterable<unknown> & Iterable<unknown>>
    const sync = it[Symbol.iterator]
    if (typeof sync === 'function') return { iterator: sync.call(it) }
    const async = it[Symbol.asyncIterator]
    if (typeof async === 'function') return { asyncIterator: async.call(it) }
  }
  if (typeof iterable === 'string') return { iterator: iterable[Symbol.iterator]() }
  throw typeError('the input must be an array, an iterable or an async iterable')
}

/** Python's map input: the whole input as an array (its length sets the default chunk size). */
async function materialize(input: Input): Promise<readonly unknown[]> {
  if ('array' in input) return input.array
  const out: unknown[] = []
  if ('iterator' in input) {
    for (let r = input.iterator.next(); !r.done; r = input.iterator.next()) out.push(r.value)
    return out
  }
  for (let r = await input.asyncIterator.next(); !r.done; r = await input.asyncIterator.next()) out.push(r.value)
  return out
}

/**
 * Settles a result, but never inside the call that creates it: a callback (`callback`,
 * `errorCallback`) must not run before the caller has the result in hand.
 */
function settleLater<R>(result: AsyncResult<R>): ((r: Parameters<AsyncResult<R>['settle']>[0]) => void) & { submitted(): void } {
  let sync = true
  const settle = (r: Parameters<AsyncResult<R>['settle']>[0]) => {
    if (sync) queueMicrotask(() => result.settle(r))
    else result.settle(r)
  }
  return Object.assign(settle, {
    submitted: () => {
      sync = false
    },
  })
}

/** Whether a call has something to run (an imap waiting only for its consumer has not). */
function hasWork(call: Call): boolean {
  return call.queue.length > 0 || (!call.inputDone && call.mayPull())
}

/** A pool of worker processes running tasks: `map`, `imap`, `apply` and friends. */
export class Pool extends EventEmitter {
  /** The number of workers the pool keeps. */
  readonly processes: number
  readonly #modules: (string | URL)[]
  readonly #setup: Omit<WorkerSetup, 'index' | 'carrier'>
  readonly #taskTimeout: number | undefined
  readonly #serializer: Serializer | undefined
  readonly #workers = new Map<number, Worker>()
  readonly #calls: Call[] = []
  readonly #inflight = new Map<number, Chunk>()
  readonly #targetIds = new Map<string, number>()
  readonly #functionIds = new WeakMap<object, number>()
  readonly #targets: TargetSpec[] = []
  #nextWorker = 1
  #state: 'running' | 'closed' | 'terminated' = 'running'
  #broken: Error | undefined
  /** map calls taking their input before they are submitted. */
  #admitting = 0
  #keepAlive: NodeJS.Timeout | undefined
  /** Stops the map calls still reading their input, when the pool is terminated. */
  readonly #admissions = new Set<() => void>()
  /** Workers in a row that exited before they were ready. */
  #earlyExits = 0
  #pumping = false

  constructor(opts: PoolOptions = {}) {
    super()
    if (typeof opts !== 'object' || opts === null) throw typeError('Pool options must be an object')
    checkNotBootstrapping('a Pool was created')
    this.processes = opts.processes === undefined ? cpuCount() : checkInteger('processes', opts.processes, 1, MAX_PROCESSES)
    const maxTasks = opts.maxTasksPerChild == null ? 0 : checkInteger('maxTasksPerChild', opts.maxTasksPerChild, 1)
    if (opts.initargs !== undefined && !Array.isArray(opts.initargs)) throw typeError('initargs must be an array')
    if (opts.modules !== undefined && !Array.isArray(opts.modules)) throw typeError('modules must be an array')
    this.#modules = opts.modules ?? []
    this.#taskTimeout = checkMs('taskTimeout', opts.taskTimeout)
    this.#serializer = opts.serializer
    let serializer: WorkerSetup['serializer'] = null
    if (opts.serializer !== undefined) {
      const s = opts.serializer as Partial<Serializer> | null
      if (typeof s?.serialize !== 'function' || typeof s.deserialize !== 'function') {
        throw typeError('serializer must have serialize() and deserialize() methods')
      }
      serializer = findExport(opts.serializer, this.#modules) ?? null
      if (!serializer) throw new TargetError('the serializer must be exported from one of the modules listed in `modules`')
    }
    this.#setup = {
      serializer,
      initializer: opts.initializer === undefined ? null : describeTarget(opts.initializer, this.#modules),
      initargs: opts.initargs ?? [],
      maxTasks,
    }
    try {
      for (let i = 0; i < this.processes; i++) this.#spawn(true)
    } catch (err) {
      this.terminate()
      throw err
    }
  }

  /** The live worker processes. */
  get workers(): Process[] {
    return [...this.#workers.values()].filter((w) => !w.retired && !w.replaced).map((w) => w.proc)
  }

  // ---- the public calls ----

  /** Runs `fn(...args)` in a worker; resolves with its result. */
  async apply<R>(fn: Target, args: unknown[] = [], opts: CallOptions = {}): Promise<R> {
    checkOptions('apply options', opts)
    return (await this.applyAsync<R>(fn, args, opts).get()) as R
  }

  /** Like `apply`, returning an `AsyncResult` at once. */
  applyAsync<R>(fn: Target, args: unknown[] = [], opts: ApplyOptions = {}): AsyncResult<R> {
    checkOptions('applyAsync options', opts)
    const result = new AsyncResult<R>({ callback: opts.callback as (v: R) => void, errorCallback: opts.errorCallback })
    const settle = settleLater(result)
    try {
      if (!Array.isArray(args)) throw typeError('args must be an array')
      this.#submit(fn, { array: [args] }, true, 1, opts, {
        chunkDone: (_chunk, values) => settle({ ok: true, value: values[0] as R }),
        chunkFailed: (_chunk, error) => settle({ ok: false, error }),
        failed: (error) => settle({ ok: false, error }),
        completed: () => {},
      })
    } catch (error) {
      settle({ ok: false, error })
    }
    settle.submitted()
    return result
  }

  /** `fn` over every item; resolves with the results in input order. Rejects on the first failure. */
  async map<R>(fn: Target, iterable: Iterable<unknown> | AsyncIterable<unknown>, opts: MapOptions = {}): Promise<R[]> {
    return this.#mapAsync<R>(fn, iterable, false, opts).get()
  }

  mapAsync<R>(
    fn: Target,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    opts: MapOptions & ResultCallbacks<R[]> = {},
  ): AsyncResult<R[]> {
    return this.#mapAsync<R>(fn, iterable, false, opts)
  }

  /** `fn(...args)` for every array of arguments; results in input order. */
  async starmap<R>(fn: Target, iterable: Iterable<unknown[]> | AsyncIterable<unknown[]>, opts: MapOptions = {}): Promise<R[]> {
    return this.#mapAsync<R>(fn, iterable, true, opts).get()
  }

  starmapAsync<R>(
    fn: Target,
    iterable: Iterable<unknown[]> | AsyncIterable<unknown[]>,
    opts: MapOptions & ResultCallbacks<R[]> = {},
  ): AsyncResult<R[]> {
    return this.#mapAsync<R>(fn, iterable, true, opts)
  }

  /** Results in input order as they come; input is pulled only as workers free up. */
  imap<R>(fn: Target, iterable: Iterable<unknown> | AsyncIterable<unknown>, opts: MapOptions = {}): IMapIterator<R> {
    return this.#imap<R>(fn, iterable, true, opts)
  }

  /** Results in completion order; input is pulled only as workers free up. */
  imapUnordered<R>(fn: Target, iterable: Iterable<unknown> | AsyncIterable<unknown>, opts: MapOptions = {}): IMapIterator<R> {
    return this.#imap<R>(fn, iterable, false, opts)
  }

  /** No more calls; the workers exit once the work already submitted is done. */
  close(): void {
    if (this.#state === 'running') this.#state = 'closed'
    this.#pump() // an imap held back by its consumer now runs to the end
  }

  /** Kills every worker now and rejects every pending call with `TerminatedError`. */
  terminate(): void {
    if (this.#state === 'terminated') return
    this.#state = 'terminated'
    for (const w of this.#workers.values()) {
      w.retired = true
      try {
        w.proc.kill()
      } catch {
        // Not started yet: its start() fails or it dies with us; it is reaped either way.
      }
    }
    const err = new TerminatedError('the pool was terminated')
    for (const call of this.#calls.splice(0)) this.#fail(call, err)
    for (const stop of this.#admissions) stop()
    for (const chunk of this.#inflight.values()) chunk.dropped = true
    // The receive loops end with the workers' exit markers, which follow the kills.
    this.#holdLoop()
  }

  /** Waits until every worker has exited; call `close()` or `terminate()` first. */
  async join(): Promise<void> {
    if (this.#state === 'running') throw new InvalidStateError('join() needs close() or terminate() first')
    while (this.#workers.size > 0) {
      await Promise.all([...this.#workers.values()].map((w) => w.proc.join().catch(() => {})))
      await new Promise((r) => setImmediate(r)) // let exit handling run
    }
  }

  /** `await using pool = new Pool()`: close, then join (graceful; Python's `with` terminates). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
    await this.join()
  }

  // ---- submitting ----

  /**
   * A number per distinct target, told to each worker once. Functions are known by what describes
   * them (their source), not held: a fresh inline function per call must not be kept alive.
   */
  #targetId(fn: Target): number {
    if (typeof fn === 'function') {
      const known = this.#functionIds.get(fn)
      if (known !== undefined) return known
    }
    const spec = describeTarget(fn, this.#modules)
    const key = spec.kind === 'export' ? `${spec.module}#${spec.name}` : JSON.stringify(spec)
    let id = this.#targetIds.get(key)
    if (id === undefined) {
      id = this.#targets.push(spec) - 1
      this.#targetIds.set(key, id)
    }
    if (typeof fn === 'function') this.#functionIds.set(fn, id)
    return id
  }

  #submit(
    fn: Target,
    input: Input,
    star: boolean,
    chunksize: number,
    opts: CallOptions,
    sink: Sink,
    prepare?: (call: Call) => void,
    admitted = false,
  ): Call {
    this.#checkAdmits(admitted)
    if (typeof opts !== 'object' || opts === null) throw typeError('options must be an object')
    const timeout = checkMs('timeout', opts.timeout)
    const signal = opts.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('signal must be an AbortSignal')
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw typeError('onProgress must be a function')
    const exclusive = timeout !== undefined || signal !== undefined || this.#taskTimeout !== undefined
    const call = new Call(this.#targetId(fn), star, chunksize, input, exclusive, this.#taskTimeout, opts.onProgress, sink)
    if (signal?.aborted) {
      this.#fail(call, new AbortError('the call was aborted', { cause: signal.reason }))
      return call
    }
    if (timeout !== undefined || signal) {
      const timer =
        timeout === undefined
          ? undefined
          : setTimeout(() => this.#cancel(call, new TimeoutError(`the call took longer than ${timeout} ms`)), timeout)
      const onAbort = () => this.#cancel(call, new AbortError('the call was aborted', { cause: signal?.reason }))
      signal?.addEventListener('abort', onAbort, { once: true })
      call.cleanup = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
    }
    prepare?.(call)
    this.#calls.push(call)
    this.#pump()
    return call
  }

  /** New calls are refused once the pool is closed; one admitted before may still start. */
  #checkAdmits(admitted: boolean): void {
    if (this.#state === 'terminated' && admitted) throw new TerminatedError('the pool was terminated')
    if (this.#state !== 'running' && !admitted) throw new ClosedError(`the pool is ${this.#state}`)
    if (this.#broken) throw this.#broken
  }

  /** Rejects when a call still reading its input runs out of time, is aborted, or the pool is terminated. */
  #whileAdmitting(timeout: number | undefined, signal: AbortSignal | undefined): { promise: Promise<never>; cleanup: () => void } {
    let cleanup = () => {}
    const promise = new Promise<never>((_, reject) => {
      const timer =
        timeout === undefined ? undefined : setTimeout(() => reject(new TimeoutError(`the call took longer than ${timeout} ms`)), timeout)
      const onAbort = () => reject(new AbortError('the call was aborted', { cause: signal?.reason }))
      if (signal?.aborted) onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      const onTerminate = () => reject(new TerminatedError('the pool was terminated'))
      this.#admissions.add(onTerminate)
      cleanup = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.#admissions.delete(onTerminate)
      }
    })
    return { promise, cleanup }
  }

  #mapAsync<R>(fn: Target, iterable: unknown, star: boolean, opts: MapOptions & ResultCallbacks<R[]>): AsyncResult<R[]> {
    checkOptions('map options', opts)
    const result = new AsyncResult<R[]>({ callback: opts?.callback, errorCallback: opts?.errorCallback })
    const settle = settleLater(result)
    const start = async () => {
      this.#checkAdmits(false)
      const input = inputOf(iterable)
      const chunksize = opts.chunksize
      if (chunksize !== undefined) checkInteger('chunksize', chunksize, 1)
      const timeout = checkMs('timeout', opts.timeout)
      const begun = performance.now()
      // Python's map takes the whole input first; the call counts as submitted meanwhile, and
      // its deadline, signal and terminate() apply while the input is read.
      let items: readonly unknown[]
      if ('array' in input) {
        items = input.array
      } else {
        this.#admitting++
        this.#holdLoop()
        const { promise: stopped, cleanup } = this.#whileAdmitting(timeout, opts.signal)
        try {
          items = await Promise.race([materialize(input), stopped])
        } catch (err) {
          if ('asyncIterator' in input) void input.asyncIterator.return?.()?.then(undefined, () => {})
          throw err
        } finally {
          cleanup()
          this.#admitting--
          this.#holdLoop()
        }
      }
      if (timeout !== undefined) opts = { ...opts, timeout: Math.max(0, timeout - (performance.now() - begun)) }
      const out = new Array<R>(items.length)
      const sink: Sink = {
        chunkDone: (chunk, values) => {
          const base = chunk.seq * size
          for (let i = 0; i < values.length; i++) out[base + i] = values[i] as R
        },
        chunkFailed: (_chunk, error) => settle({ ok: false, error }),
        failed: (error) => settle({ ok: false, error }),
        completed: () => settle({ ok: true, value: out }),
      }
      // Python: divmod(len, 4 * processes), rounded up.
      const size = chunksize ?? Math.max(1, Math.ceil(items.length / (this.processes * 4)))
      if (items.length === 0) {
        this.#checkAdmits(true)
        settle({ ok: true, value: [] })
        return
      }
      this.#submit(fn, { array: items }, star, size, opts, sink, undefined, true)
    }
    start()
      .catch((error) => settle({ ok: false, error }))
      .finally(() => this.#maybeRetireAll())
    settle.submitted()
    return result
  }

  #imap<R>(fn: Target, iterable: unknown, ordered: boolean, opts: MapOptions): IMapIterator<R> {
    checkOptions('imap options', opts)
    const results = new IMapResults<R>()
    const chunksize = opts.chunksize === undefined ? 1 : checkInteger('chunksize', opts.chunksize, 1)
    let consumed = 0
    let delivered = 0
    const pending = new Map<number, unknown[] | { error: unknown }>()
    let nextSeq = 0
    const deliver = (entry: unknown[] | { error: unknown }) => {
      if (Array.isArray(entry)) {
        delivered += entry.length
        for (const value of entry) results.push({ value: value as R })
      } else {
        delivered += 1
        results.push(entry)
      }
    }
    // Items of failed chunks: taken from the input, but one error entry stands for all of them.
    let folded = 0
    const arrive = (chunk: Chunk, entry: unknown[] | { error: unknown }) => {
      if (!Array.isArray(entry)) folded += chunk.items.length - 1
      if (!ordered) return deliver(entry)
      pending.set(chunk.seq, entry)
      for (let e = pending.get(nextSeq); e !== undefined; e = pending.get(nextSeq)) {
        pending.delete(nextSeq++)
        deliver(e)
      }
    }
    const sink: Sink = {
      chunkDone: (chunk, values) => arrive(chunk, values),
      chunkFailed: (chunk, error) => arrive(chunk, { error }),
      failed: (error) => {
        results.push({ error })
        results.end()
      },
      completed: () => results.end(),
    }
    let call: Call | undefined
    const source: IMapSource<R> = {
      results,
      consumed: () => {
        consumed = delivered - results.buffered
        this.#pump()
      },
      cancel: () => {
        if (call && !call.settled) this.#settle(call)
        results.end()
      },
    }
    try {
      const highWater = Math.max(64, this.processes * chunksize * 8)
      call = this.#submit(fn, inputOf(iterable), false, chunksize, opts, sink, (c) => {
        c.streaming = true
        // Once the pool is closed the rest is run and kept, so that join() returns (as Python).
        c.mayPull = () => c.nextIndex - folded - consumed < highWater || this.#state !== 'running'
      })
    } catch (error) {
      sink.failed(error)
    }
    return new IMapIterator<R>(source)
  }

  // ---- scheduling ----

  /** How many chunks a worker may hold for this call (the one it runs included). */
  #depth(w: Worker, call: Call): number {
    if (call.taskTimeout !== undefined) return 1
    if (w.chunkMs === undefined) return 2
    return Math.min(MAX_DEPTH, Math.max(2, Math.ceil(QUEUE_MS / Math.max(w.chunkMs, 1e-3)) + 1))
  }

  #pickWorker(call: Call): Worker | undefined {
    let best: Worker | undefined
    const maxTasks = this.#setup.maxTasks
    for (const w of this.#workers.values()) {
      if (w.retired || w.replaced || (maxTasks > 0 && w.dispatched >= maxTasks)) continue
      if (w.reservedFor !== null && w.reservedFor !== call) continue
      if (w.inflight.length >= this.#depth(w, call)) continue
      if (call.exclusive) {
        if (!w.ready || (w.inflight.length > 0 && w.exclusiveTo !== call)) continue
      } else if (w.exclusiveTo !== null) {
        continue
      }
      if (!best || w.inflight.length < best.inflight.length) best = w
    }
    return best
  }

  /** Sends whatever can be sent now. */
  #pump(): void {
    if (this.#pumping) return
    this.#pumping = true
    const kick = () => this.#pump()
    let rebalanced = false
    try {
      for (let sent = true; sent; ) {
        sent = false
        for (const call of [...this.#calls]) {
          const w = this.#pickWorker(call)
          if (!w) {
            if (call.exclusive && hasWork(call)) this.#reserve(call)
            continue
          }
          const chunk = call.take(kick)
          if (!chunk) continue
          this.#dispatch(w, chunk)
          sent = true
        }
        if (!sent && !rebalanced) sent = rebalanced = this.#rebalance()
      }
      for (let i = this.#calls.length - 1; i >= 0; i--) {
        const call = this.#calls[i] as Call
        if (call.settled) this.#calls.splice(i, 1)
        else if (call.finished) this.#complete(call)
      }
    } finally {
      this.#pumping = false
    }
    this.#maybeRetireAll()
    this.#ensureReceiving()
    this.#holdLoop()
  }

  /**
   * While a call has work pending the pool keeps the process alive (as a pending Queue get does),
   * also while workers are being replaced and no channel is awaited. An idle pool, or one whose
   * only call is an imap waiting for its consumer, holds nothing.
   */
  #holdLoop(): void {
    const pending = this.#state !== 'terminated' && (this.#inflight.size > 0 || this.#admitting > 0 || this.#calls.some(hasWork))
    if (pending && !this.#keepAlive) this.#keepAlive = setInterval(() => {}, 1 << 30)
    else if (!pending && this.#keepAlive) {
      clearInterval(this.#keepAlive)
      this.#keepAlive = undefined
    }
  }

  /**
   * A call with a deadline or signal needs a worker with nothing else queued. Rather than wait
   * for one to empty by chance (calls made later keep them busy), keep the least busy worker
   * free for it: nothing more goes to it, and what waits in its inbox goes elsewhere.
   */
  #reserve(call: Call): void {
    let best: Worker | undefined
    for (const w of this.#workers.values()) {
      if (w.reservedFor === call) return
      // A worker another timed call runs on is left to it: that call was made first.
      if (w.retired || w.replaced || !w.ready || w.reservedFor !== null || w.exclusiveTo !== null) continue
      if (!best || w.inflight.length < best.inflight.length) best = w
    }
    if (!best) return
    best.reservedFor = call
    this.#requeue(this.#takeBack(best))
  }

  #dispatch(w: Worker, chunk: Chunk): void {
    const call = chunk.call
    const tellsTarget = !w.knows.has(call.targetId)
    chunk.worker = w
    chunk.sentAt = performance.now()
    if (call.exclusive) for (const other of this.#workers.values()) if (other.reservedFor === call) other.reservedFor = null
    w.inflight.push(chunk)
    w.dispatched++
    const maxTasks = this.#setup.maxTasks
    if (maxTasks > 0 && w.dispatched >= maxTasks && !w.replaced && this.#state === 'running' && !this.#broken) {
      // Its successor starts now, while it runs its last chunks, not after it has exited.
      w.replaced = true
      this.#spawn()
    }
    if (call.exclusive) w.exclusiveTo = call
    if (tellsTarget) w.knows.add(call.targetId)
    call.running++
    this.#inflight.set(chunk.id, chunk)
    const timeout = call.taskTimeout
    const ms = timeout === undefined ? undefined : timeout * chunk.items.length
    if (ms !== undefined && ms < NO_LIMIT_MS) chunk.timer = setTimeout(() => this.#expire(chunk, ms), ms)
    let items = chunk.items
    let handles: number[] | null = null
    try {
      if (holdsHandles(items)) [items, handles] = this.#sendHandles(w, chunk)
    } catch (err) {
      if (tellsTarget) w.knows.delete(call.targetId)
      this.#unlink(chunk)
      this.#chunkFailed(chunk, err)
      return
    }
    const spec = tellsTarget ? (this.#targets[call.targetId] as TargetSpec) : null
    const message: TaskMessage = [chunk.id, call.targetId, items, call.star, spec, handles]
    let sent = false
    let failure: unknown
    try {
      sent = w.inbox.tryPut(message)
    } catch (err) {
      failure = err
    }
    if (sent) return
    const failed = (err: unknown) => {
      if (w.inflight.includes(chunk) && !(err instanceof MultiprocError && err.code !== 'ERR_SERIALIZATION')) {
        // It never left: the input cannot be serialised. The call fails with that error.
        if (tellsTarget) w.knows.delete(call.targetId)
        this.#unlink(chunk)
        this.#chunkFailed(chunk, err)
        this.#pump()
        return
      }
      this.#kill(w) // the inbox is unusable; the exit handling settles what it held
    }
    if (failure !== undefined) failed(failure)
    // No room now (or larger than the ring): the put waits, in order with any before it.
    else w.inbox.put(message).catch(failed)
  }

  /**
   * Replaces the handles in a chunk's items by markers and sends the worker the descriptors of
   * those it has not had yet. Returns the items to send and the descriptors sent (by our numbers).
   */
  #sendHandles(w: Worker, chunk: Chunk): [unknown[], number[]] {
    const packed = packHandles(chunk.items)
    const fresh: string[] = []
    const fds: number[] = []
    for (const [key, handleFds] of packed.handles) {
      if (w.sentKeys.has(key)) continue
      fresh.push(key)
      fds.push(...handleFds)
    }
    if (fds.length > MAX_FDS_PER_TASK)
      throw rangeError(`a task may carry at most ${MAX_FDS_PER_TASK} descriptors of handles, got ${fds.length}`)
    if (fds.length > 0) w.carrier.send(chunk.id, fds)
    for (const key of fresh) w.sentKeys.add(key)
    return [packed.value as unknown[], fds]
  }

  /** Takes a chunk off its worker's books (answered, or the worker is gone). */
  #unlink(chunk: Chunk): void {
    const w = chunk.worker
    if (w) {
      // Answers come in the order chunks were sent: it is nearly always the first.
      if (w.inflight[0] === chunk) w.inflight.shift()
      else {
        const i = w.inflight.indexOf(chunk)
        if (i >= 0) w.inflight.splice(i, 1)
      }
      if (w.inflight.length === 0) w.exclusiveTo = null
    }
    chunk.worker = null
    if (chunk.timer) clearTimeout(chunk.timer)
    this.#inflight.delete(chunk.id)
    chunk.call.running--
  }

  // ---- outcomes ----

  #chunkDone(chunk: Chunk, values: unknown[]): void {
    const call = chunk.call
    if (chunk.dropped || call.settled) return
    call.sink.chunkDone(chunk, values)
    this.#progress(call, chunk.items.length)
  }

  #chunkFailed(chunk: Chunk, error: unknown): void {
    const call = chunk.call
    if (chunk.dropped || call.settled) return
    chunk.dropped = true
    call.sink.chunkFailed(chunk, error)
    this.#progress(call, chunk.items.length)
    if (!call.streaming) this.#settle(call)
  }

  #progress(call: Call, n: number): void {
    call.done += n
    if (!call.onProgress && this.listenerCount('progress') === 0) return
    call.reportedTotal = call.total
    const progress: Progress = { done: call.done, total: call.total }
    try {
      call.onProgress?.(progress)
      this.emit('progress', progress)
    } catch (error) {
      // A progress callback that throws ends its call with that error; the pool goes on.
      this.#fail(call, error)
    }
  }

  #complete(call: Call): void {
    // A lazy input's end may be learnt after its last chunk was reported: say the total once.
    if (call.reportedTotal !== call.total && call.done > 0 && !call.inputError) this.#progress(call, 0)
    if (call.settled) return
    if (call.inputError) {
      this.#fail(call, call.inputError.error)
      return
    }
    this.#settle(call)
    call.sink.completed()
  }

  #fail(call: Call, error: unknown): void {
    if (call.settled) return
    this.#settle(call)
    call.sink.failed(error)
  }

  /** The call is over: nothing more of it is sent; queued chunks are dropped; its timer goes. */
  #settle(call: Call): void {
    call.settled = true
    call.cleanup()
    for (const w of this.#workers.values()) if (w.reservedFor === call) w.reservedFor = null
    call.closeInput()
    call.queue.length = 0
    this.#forget(call)
  }

  #forget(call: Call): void {
    const i = this.#calls.indexOf(call)
    if (i >= 0) this.#calls.splice(i, 1)
    this.#maybeRetireAll()
    this.#holdLoop()
  }

  /** A call's deadline passed or its signal aborted: kill the workers running its chunks. */
  #cancel(call: Call, error: Error): void {
    if (call.settled) return
    for (const chunk of this.#inflight.values()) {
      if (chunk.call !== call) continue
      chunk.dropped = true
      if (chunk.worker) this.#kill(chunk.worker)
    }
    this.#fail(call, error)
  }

  /** A chunk ran over `taskTimeout`: its worker is killed and replaced. */
  #expire(chunk: Chunk, ms: number): void {
    if (chunk.dropped || !chunk.worker) return
    const w = chunk.worker
    this.#chunkFailed(chunk, new TimeoutError(`a task ran longer than its ${ms} ms (taskTimeout)`))
    this.#kill(w)
  }

  #kill(w: Worker): void {
    w.retired = true
    try {
      w.proc.kill()
    } catch {
      // Not started: it is handled when start() fails or succeeds.
    }
  }

  // ---- workers ----

  /**
   * Starts a worker. Running out of descriptors or memory for its channels breaks the pool, or,
   * from the constructor (`rethrow`), is thrown from there after the workers made so far are gone.
   */
  #spawn(rethrow = false): void {
    const index = this.#nextWorker++
    const serializer = this.#serializer
    let inbox: Queue<TaskMessage | null> | undefined
    let results: Queue<ReplyMessage> | undefined
    let carrier: FdCarrier
    try {
      inbox = new Queue<TaskMessage | null>({ capacityBytes: INBOX_BYTES, serializer })
      results = new Queue<ReplyMessage>({ capacityBytes: RESULT_BYTES, serializer })
      carrier = new FdCarrier()
    } catch (err) {
      inbox?.close()
      results?.close()
      if (rethrow) throw err
      this.#break(err as Error)
      return
    }
    const setup: WorkerSetup = { index, ...this.#setup, carrier }
    const proc = new Process({ target: WORKER_TARGET, args: [inbox, results, setup], daemon: true, name: `PoolWorker-${index}` })
    const w: Worker = {
      index,
      proc,
      inbox,
      results,
      receiving: false,
      stopReceiving: new AbortController(),
      exitPending: false,
      spoiled: false,
      inflight: [],
      knows: new Set(),
      sentKeys: new Set(),
      carrier,
      ready: false,
      retired: false,
      dispatched: 0,
      exclusiveTo: null,
      reservedFor: null,
      replaced: false,
      chunkMs: undefined,
      lastReplyAt: 0,
    }
    this.#workers.set(index, w)
    const started = proc.start()
    started.finally(() => carrier.releaseTheirs()).catch(() => {})
    started.then(
      () => {
        if (this.#state === 'terminated') this.#kill(w)
        proc[whenExited]().then(() => this.#exited(w))
      },
      (err) => {
        // Killed or dead before it attached: an exit like any other (early exits are counted).
        if (proc.exitCode !== null) proc[whenExited]().then(() => this.#exited(w))
        else this.#startFailed(w, err)
      },
    )
  }

  #startFailed(w: Worker, err: unknown): void {
    this.#workers.delete(w.index)
    w.stopReceiving.abort()
    w.inbox.close()
    w.results.close()
    w.carrier.close()
    const unsent = [...w.inflight]
    for (const chunk of unsent) this.#unlink(chunk)
    this.#requeue(unsent)
    // Typed causes (no descriptors or processes left, say) reach the caller as they are.
    this.#break(
      err instanceof MultiprocError
        ? err
        : new ProcessError(`cannot start a pool worker: ${(err as Error)?.message ?? err}`, { cause: err }),
    )
  }

  /** The worker exited: once the result queue has delivered all it sent, settle what it held. */
  #exited(w: Worker): void {
    w.retired = true
    if (w.spoiled) {
      // Nobody reads a corrupt channel: there is nothing to wait for.
      this.#reap(w)
      return
    }
    w.exitPending = true
    // Put after everything it sent; a channel it spoiled by dying mid-reply refuses it.
    w.results.put([Reply.Exited, w.index]).catch(() => this.#reap(w))
    this.#ensureReceiving()
  }

  #reap(w: Worker): void {
    if (!this.#workers.delete(w.index)) return
    if (w.ready) this.#earlyExits = 0
    else if (!w.retired || w.proc.exitCode !== -9) this.#earlyExits++
    w.exitPending = false
    w.stopReceiving.abort()
    const unstarted = this.#takeBack(w)
    w.inbox.close()
    w.results.close()
    w.carrier.close()
    const code = w.proc.exitCode
    const signal = code !== null && code < 0 ? (SIGNAL_NAMES.get(-code) ?? `signal ${-code}`) : null
    for (const chunk of [...w.inflight]) {
      this.#unlink(chunk)
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
      this.#chunkFailed(
        chunk,
        new WorkerExitedError(`${w.proc.name} (pid ${w.proc.pid}) ${how} while running a task`, signal ? null : code, signal),
      )
    }
    this.#requeue(unstarted)
    if (this.#earlyExits >= MAX_EARLY_EXITS) {
      // Workers die before they can take work (an initializer that exits, say): do not loop.
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
      this.#break(
        new WorkerExitedError(
          `${MAX_EARLY_EXITS} pool workers in a row exited before they were ready; the last ${how}`,
          signal ? null : code,
          signal,
        ),
      )
    }
    const wanted = this.#state === 'running' || this.#calls.length > 0
    if (!w.replaced && this.#state !== 'terminated' && !this.#broken && wanted) this.#spawn()
    this.#pump()
  }

  /**
   * Takes back the chunks still waiting in a worker's inbox: it has not started them. Whatever it
   * takes concurrently, it takes whole; the rest is ours, and is off its books afterwards.
   */
  #takeBack(w: Worker): Chunk[] {
    const taken: Chunk[] = []
    for (;;) {
      let m: TaskMessage | null
      try {
        m = w.inbox.getNowait()
      } catch {
        break
      }
      if (!m) continue
      const chunk = this.#inflight.get(m[0])
      // The worker never saw this message: if it described the target, it has not learnt it, nor
      // the handles whose descriptors came for it.
      if (m[4] !== null) w.knows.delete(m[1])
      if (m[5] !== null && m[5].length > 0) w.sentKeys.clear()
      if (!chunk || chunk.worker !== w) continue
      this.#unlink(chunk)
      w.dispatched--
      taken.push(chunk)
    }
    return taken
  }

  /** Chunks that never ran go back to the front of their calls, in their order. */
  #requeue(chunks: Chunk[]): void {
    for (const chunk of chunks.reverse()) if (!chunk.dropped && !chunk.call.settled) chunk.call.queue.unshift(chunk)
  }

  /**
   * A worker is idle and nothing is left to send: take back what waits behind a running chunk on
   * the busiest worker, so it runs now instead (a long task must not hold up the ones behind it).
   */
  #rebalance(): boolean {
    const maxTasks = this.#setup.maxTasks
    let idle = false
    let busiest: Worker | undefined
    for (const w of this.#workers.values()) {
      if (w.retired) continue
      if (w.ready && w.inflight.length === 0 && !w.replaced && w.reservedFor === null && (maxTasks === 0 || w.dispatched < maxTasks))
        idle = true
      if (w.inflight.length > 1 && (!busiest || w.inflight.length > busiest.inflight.length)) busiest = w
    }
    if (!idle || !busiest) return false
    const taken = this.#takeBack(busiest)
    this.#requeue(taken)
    return taken.length > 0
  }

  /** The pool cannot go on (a worker cannot start, or the initializer failed): every call fails. */
  #break(error: Error): void {
    if (this.#broken) return
    this.#broken = error
    for (const call of [...this.#calls]) this.#fail(call, error)
    for (const w of this.#workers.values()) this.#kill(w)
  }

  /** After close(), once no work remains, workers are told to exit by closing their inboxes. */
  #maybeRetireAll(): void {
    if (this.#state !== 'closed' || this.#calls.length > 0 || this.#inflight.size > 0 || this.#admitting > 0) return
    for (const w of this.#workers.values()) {
      if (w.inbox && !w.retired) {
        w.retired = true
        w.inbox.close()
      }
    }
  }

  // ---- receiving ----

  #needsReceiving(w: Worker): boolean {
    if (w.spoiled) return false
    if (w.exitPending) return true
    if (this.#state === 'terminated') return false
    return w.inflight.length > 0 || (!w.ready && !w.retired && this.#calls.length > 0)
  }

  #ensureReceiving(): void {
    for (const w of this.#workers.values()) {
      if (w.receiving || !this.#needsReceiving(w)) continue
      w.receiving = true
      // Replies are handled on a later turn, never inside the call (maybe a user's callback)
      // that started the loop.
      queueMicrotask(() => void this.#receive(w))
    }
  }

  /** Spinning on one worker's replies blocks the others': spin only when one worker is busy. */
  readonly #spinWorthIt = (): boolean => {
    let busy = 0
    for (const w of this.#workers.values()) if (w.inflight.length > 0 && ++busy > 1) return false
    return true
  }

  /** Receives one worker's replies while it has something to say. */
  async #receive(w: Worker): Promise<void> {
    const signal = w.stopReceiving.signal
    try {
      while (this.#needsReceiving(w) && !signal.aborted) {
        let msg: ReplyMessage | typeof NOTHING
        try {
          // What is there already is taken without a promise; only an empty channel waits.
          msg = w.results.tryGet()
          if (msg === NOTHING) msg = await w.results.getWhen(this.#spinWorthIt, signal)
        } catch (err) {
          if (signal.aborted) return
          if (err instanceof SerializationError) {
            // The reply was taken whole but cannot be decoded here: the channel is intact.
            this.#undecodable(w, err)
            continue
          }
          // The channel is spoilt (corrupt): nothing more can be read from it; its exit
          // settles what it held.
          w.spoiled = true
          if (w.exitPending) this.#reap(w)
          else this.#kill(w)
          return
        }
        this.#handle(msg)
      }
    } finally {
      w.receiving = false
    }
    this.#ensureReceiving()
  }

  /**
   * A reply of `w` that the parent cannot decode (its serializer throws). A worker answers its
   * chunks in the order it takes them from its inbox, and the parent takes chunks back only
   * from the front of that inbox, so the reply is for the oldest chunk still on its list; before
   * `Ready`, it was `Ready` itself (or the initializer's failure), and the pool cannot use its
   * workers at all.
   */
  #undecodable(w: Worker, err: SerializationError): void {
    const error = new SerializationError(`a reply from ${w.proc.name} cannot be decoded: ${err.message}`, { cause: err.cause ?? err })
    if (w.exitPending && w.results.empty()) {
      // The pool's own exit marker, which follows everything the worker sent.
      this.#reap(w)
      return
    }
    if (!w.ready) {
      this.#break(error)
      return
    }
    const chunk = w.inflight[0]
    if (!chunk) return
    this.#unlink(chunk)
    this.#chunkFailed(chunk, error)
    this.#pump()
  }

  #handle(msg: ReplyMessage): void {
    const w = this.#workers.get(msg[1])
    switch (msg[0]) {
      case Reply.Ready:
        if (w) w.ready = true
        break
      case Reply.Done:
      case Reply.Failed: {
        const chunk = this.#inflight.get(msg[2])
        if (!chunk) break
        if (w) {
          // Service time, not latency: a chunk queued behind another started when that one ended.
          const now = performance.now()
          const took = now - Math.max(chunk.sentAt, w.lastReplyAt)
          w.lastReplyAt = now
          w.chunkMs = w.chunkMs === undefined ? took : w.chunkMs * 0.8 + took * 0.2
        }
        this.#unlink(chunk)
        if (msg[0] === Reply.Done) this.#chunkDone(chunk, msg[3])
        else this.#chunkFailed(chunk, msg[4] ? remoteError(msg[3]) : fromRecord(msg[3]))
        break
      }
      case Reply.InitFailed: {
        const cause = fromRecord(msg[2])
        this.#break(new RemoteError(`the pool's initializer failed: ${msg[2].name}: ${msg[2].message}`, { cause }))
        break
      }
      case Reply.Exited:
        if (w) this.#reap(w)
        break
      case Reply.Unknown: {
        const chunk = this.#inflight.get(msg[2])
        if (!chunk) break
        if (w) {
          w.knows.delete(chunk.call.targetId)
          w.sentKeys.clear()
          w.dispatched--
        }
        this.#unlink(chunk)
        this.#requeue([chunk])
        break
      }
    }
    this.#pump()
  }
}
