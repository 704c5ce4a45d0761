/**
 * Pool: Python's `multiprocessing.Pool` on worker processes, built so that it never hangs.
 *
 * This file is the API: options, the calls and their results, close/join/terminate. What runs
 * where is the scheduler's (`pool-scheduler.ts`); how chunks reach a worker is its link's
 * (`pool-link.ts`; local processes in `pool-local-link.ts`).
 */
import { EventEmitter } from 'node:events'
import { ClosedError, InvalidStateError, rangeError, TargetError, TerminatedError, typeError } from './errors.js'
import { checkExecArgv, setsHeapLimit } from './exec-argv.js'
import type { Call, CallRequest, Chunk, Input, Sink } from './pool-call.js'
import type { Backend, WorkerProcessOptions } from './pool-link.js'
import { localProcesses } from './pool-local-link.js'
import type { WorkerSetup } from './pool-messages.js'
import { AsyncResult, IMapIterator, IMapResults, type IMapSource, type ResultCallbacks } from './pool-result.js'
import { NO_LIMIT_MS, PoolScheduler } from './pool-scheduler.js'
import { WARM_FROM, warmMapPath } from './pool-warmup.js'
import { checkNotBootstrapping, cpuCount, type Process } from './process.js'
import type { Serializer } from './serialize.js'
import { checkStartMethod, type StartMethod } from './start-method.js'
import { describeTarget, findExport, moduleHref, type Target, type TargetSpec } from './target.js'
import { checkFunction, checkInteger, checkMaxQueue, checkOptions, checkStringRecord, MAX_OLD_SPACE_SIZE } from './validate.js'

/** Options of a `Pool`. */
export interface PoolOptions {
  /** Worker processes; default `cpuCount()`. */
  processes?: number | undefined
  /** Run once in each worker before its first task, with `initargs`. */
  initializer?: Target | undefined
  /** The arguments of `initializer`. */
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
  /**
   * Node flags for the workers; default: the parent's `process.execArgv` without the flags that
   * would make a worker run something else than its loop (`-e`, `-p`, `--input-type`, `--test`,
   * `--watch`, `-i`, …) or take the parent's inspector port. Such flags given here are refused,
   * as for `Process`.
   */
  execArgv?: string[] | undefined
  /** Environment variables for the workers, added to the parent's (as `Process`'s `env`). */
  env?: Record<string, string> | undefined
  /**
   * Each worker's V8 heap limit in MiB (Node's `--max-old-space-size`: the old generation; V8
   * adds its young generation, tens of MiB, to `heap_size_limit`). A task that needs more kills
   * its worker: the task rejects with `WorkerExitedError` and the worker is replaced.
   */
  maxOldSpaceSize?: number | undefined
  /**
   * How many calls may wait for a worker. A call made when that many wait, and that no worker
   * can take at once, is refused with `Full`; `'drain'` is emitted once the backlog has emptied.
   * `'auto'`: `processes` squared. Default: no limit.
   */
  maxQueue?: number | 'auto' | undefined
  /**
   * How the worker processes are started; default {@link getStartMethod}. With `'forkserver'`
   * a worker (and every replacement) is forked from a warm server in milliseconds.
   */
  startMethod?: StartMethod | undefined
  /** Where the workers run and how chunks reach them; default: local processes (`bullmq()` of `multiproc/bullmq`: remote ones). */
  backend?: Backend | undefined
}

/** Progress of one call: tasks finished, and the total once the input is known to end. */
export interface Progress {
  /** Tasks finished so far (failed ones included). */
  done: number
  /** Tasks in the call, or `null` while a lazy input has not ended. */
  total: number | null
}

/** Options of every pool call. */
export interface CallOptions {
  /** Milliseconds for the whole call; on expiry the workers running its tasks are killed and replaced. */
  timeout?: number | undefined
  /** Aborting rejects the call with `AbortError` and kills the workers running its tasks. */
  signal?: AbortSignal | undefined
  /**
   * Called on a later turn each time tasks of this call finish, and once more when the total becomes known.
   * A callback that throws ends the call with that error.
   */
  onProgress?: ((progress: Progress) => void) | undefined
}

/** Options of `map`, `imap`, `imapUnordered`, `starmap` and their async forms. */
export interface MapOptions extends CallOptions {
  /** Tasks sent to a worker at a time; default as Python (`map`: about 4 chunks per worker, `imap`: 1). */
  chunksize?: number | undefined
}

/** Options of `applyAsync`: those of every call, with Python's `callback` and `errorCallback`, which get the result `R`. */
export type ApplyOptions<R = unknown> = CallOptions & ResultCallbacks<R>

/** Options of `mapAsync` and `starmapAsync`: those of `map`, and callbacks that get the results. */
export type MapAsyncOptions<R = unknown> = MapOptions & ResultCallbacks<R[]>

/**
 * The most workers a pool may have. Each is a whole OS process with its own event loop and about
 * six descriptors in the parent; more than this is a mistake (a number meant for something else),
 * not a workload, and would only fork until the system refuses.
 */
export const MAX_PROCESSES = 1024

function checkMs(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number') throw typeError(`${name} must be a number of milliseconds`)
  if (Number.isNaN(v)) throw rangeError(`${name} must not be NaN`)
  return v >= NO_LIMIT_MS ? undefined : Math.max(0, v)
}

function checkBackend(v: unknown): Backend {
  const b = v as Partial<Backend> | null
  if (typeof b !== 'object' || b === null || typeof b.start !== 'function') throw typeError('backend must have a start() method')
  return v as Backend
}

/** The options that say how worker processes start, checked; a backend that does not start them refuses them. */
function processOptionsOf(opts: PoolOptions, backend: Backend): WorkerProcessOptions {
  const execArgv = opts.execArgv === undefined ? undefined : [...checkExecArgv(opts.execArgv)]
  const env = opts.env === undefined ? undefined : { ...checkStringRecord('env', opts.env) }
  const maxOldSpaceSize =
    opts.maxOldSpaceSize == null ? undefined : checkInteger('maxOldSpaceSize', opts.maxOldSpaceSize, 1, MAX_OLD_SPACE_SIZE)
  if (maxOldSpaceSize !== undefined && execArgv && setsHeapLimit(execArgv)) {
    throw Object.assign(rangeError('give the heap limit once: maxOldSpaceSize, or --max-old-space-size in execArgv'), {
      code: 'ERR_INVALID_ARG_VALUE',
    })
  }
  const given = Object.entries({ execArgv, env, maxOldSpaceSize }).flatMap(([name, v]) => (v === undefined ? [] : [name]))
  if (given.length > 0 && !backend.configuresProcesses) {
    throw Object.assign(
      typeError(
        `the ${backend.name} backend cannot honour ${given.join(', ')}: it does not start its workers' processes ` +
          '(give such settings where those workers are started)',
      ),
      { code: 'ERR_UNSUPPORTED_OPTION' },
    )
  }
  return { execArgv, env, maxOldSpaceSize }
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

/** Chunks a map joins with one `concat` (its arguments go on the stack: more are joined by a loop). */
const MAX_CONCAT_PARTS = 1024

/** A map's results: its chunks' values, in order. */
function joinParts<R>(parts: unknown[][], length: number): R[] {
  if (parts.length <= MAX_CONCAT_PARTS && parts.every(Array.isArray)) return ([] as unknown[]).concat(...parts) as R[]
  const out = new Array<R>(length)
  let k = 0
  for (const part of parts) for (let i = 0; i < part.length; i++) out[k++] = part[i] as R
  return out
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

/**
 * A pool of worker processes running tasks: `map`, `imap`, `apply` and friends. The calls take
 * their types from the target: `pool.map(square, xs)` with `square(x: number): number` is a
 * `Promise<number[]>`, and arguments of the wrong type do not compile.
 *
 * It emits `'progress'` with a `Progress` (`{ done, total }`) as tasks of any call finish, as
 * each call's `onProgress` is called, and `'drain'` when the backlog has emptied after it had
 * reached `maxQueue`.
 */
export class Pool extends EventEmitter {
  /** The number of workers the pool keeps. */
  readonly processes: number
  /** How many calls may wait for a worker (`maxQueue`; `Infinity`: no limit). */
  readonly maxQueue: number
  readonly #modules: (string | URL)[]
  readonly #scheduler: PoolScheduler
  /** The backend's floor for `map`'s default chunk size. */
  readonly #minChunksize: number
  readonly #targetIds = new Map<string, number>()
  readonly #functionIds = new WeakMap<object, number>()
  readonly #targets: TargetSpec[] = []

  constructor(opts: PoolOptions = {}) {
    super()
    if (typeof opts !== 'object' || opts === null) throw typeError('Pool options must be an object')
    checkNotBootstrapping('a Pool was created')
    this.processes = opts.processes === undefined ? cpuCount() : checkInteger('processes', opts.processes, 1, MAX_PROCESSES)
    const maxTasks = opts.maxTasksPerChild == null ? 0 : checkInteger('maxTasksPerChild', opts.maxTasksPerChild, 1)
    if (opts.initargs !== undefined && !Array.isArray(opts.initargs)) throw typeError('initargs must be an array')
    if (opts.modules !== undefined && !Array.isArray(opts.modules)) throw typeError('modules must be an array')
    for (const m of opts.modules ?? []) moduleHref(m)
    this.#modules = opts.modules ?? []
    const taskTimeout = checkMs('taskTimeout', opts.taskTimeout)
    this.maxQueue = checkMaxQueue(opts.maxQueue, this.processes)
    let serializer: WorkerSetup['serializer'] = null
    if (opts.serializer !== undefined) {
      const s = opts.serializer as Partial<Serializer> | null
      if (typeof s?.serialize !== 'function' || typeof s.deserialize !== 'function') {
        throw typeError('serializer must have serialize() and deserialize() methods')
      }
      serializer = findExport(opts.serializer, this.#modules) ?? null
      if (!serializer) throw new TargetError('the serializer must be exported from one of the modules listed in `modules`')
    }
    const backend = opts.backend === undefined ? localProcesses : checkBackend(opts.backend)
    const processOptions = processOptionsOf(opts, backend)
    this.#minChunksize = backend.minChunksize ?? 1
    const startMethod = opts.startMethod == null ? undefined : checkStartMethod('startMethod', opts.startMethod)
    this.#scheduler = new PoolScheduler({
      processes: this.processes,
      backend,
      setup: {
        serializer,
        initializer: opts.initializer === undefined ? null : describeTarget(opts.initializer, this.#modules),
        initargs: opts.initargs ?? [],
        maxTasks,
      },
      serializer: opts.serializer,
      taskTimeout,
      processOptions,
      maxQueue: this.maxQueue,
      startMethod,
      emitter: this,
    })
    try {
      this.#scheduler.start()
    } catch (err) {
      this.terminate()
      throw err
    }
  }

  /** The live worker processes (none when the workers are not processes of this machine). */
  get workers(): Process[] {
    return this.#scheduler.workerProcesses
  }

  /** Calls waiting for a worker: made, and with work that no worker has been handed yet. */
  get backlog(): number {
    return this.#scheduler.backlog
  }

  /** True from when the backlog reaches `maxQueue` (or a call is refused) until `'drain'`: time to hold back. */
  get needsDrain(): boolean {
    return this.#scheduler.needsDrain
  }

  // ---- the public calls ----

  /** Runs `fn(...args)` in a worker; resolves with its result. */
  apply<R>(fn: Target<[], R>, args?: readonly [], opts?: CallOptions): Promise<Awaited<R>>
  /** Runs `fn(...args)` in a worker; resolves with its result. `args` must fit `fn`'s parameters. */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  apply<R, A extends unknown[] = any[]>(fn: Target<A, R>, args: readonly [...A], opts?: CallOptions): Promise<Awaited<R>>
  async apply(fn: Target, args: readonly unknown[] = [], opts: CallOptions = {}): Promise<unknown> {
    checkOptions('apply options', opts)
    return await this.applyAsync(fn, args as unknown[], opts).get()
  }

  /** Like `apply`, returning an `AsyncResult` at once. */
  applyAsync<R>(fn: Target<[], R>, args?: readonly [], opts?: ApplyOptions<Awaited<R>>): AsyncResult<Awaited<R>>
  /** Like `apply`, returning an `AsyncResult` at once. `args` must fit `fn`'s parameters. */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  applyAsync<R, A extends unknown[] = any[]>(
    fn: Target<A, R>,
    args: readonly [...A],
    opts?: ApplyOptions<Awaited<R>>,
  ): AsyncResult<Awaited<R>>
  applyAsync(fn: Target, args: readonly unknown[] = [], opts: ApplyOptions = {}): AsyncResult<unknown> {
    checkOptions('applyAsync options', opts)
    if (opts.callback !== undefined) checkFunction('callback', opts.callback)
    if (opts.errorCallback !== undefined) checkFunction('errorCallback', opts.errorCallback)
    const result = new AsyncResult<unknown>({ callback: opts.callback, errorCallback: opts.errorCallback })
    const settle = settleLater(result)
    try {
      if (!Array.isArray(args)) throw typeError('args must be an array')
      this.#submit(fn, { array: [args] }, true, 1, opts, {
        chunkDone: (_chunk, values) => settle({ ok: true, value: values[0] }),
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
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  async map<R, T = any>(fn: Target<[T], R>, iterable: Iterable<T> | AsyncIterable<T>, opts: MapOptions = {}): Promise<Awaited<R>[]> {
    return this.#mapAsync<Awaited<R>>(fn, iterable, false, opts).get()
  }

  /** Like `map`, returning an `AsyncResult` at once (Python's `map_async`). */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  mapAsync<R, T = any>(
    fn: Target<[T], R>,
    iterable: Iterable<T> | AsyncIterable<T>,
    opts: MapAsyncOptions<Awaited<R>> = {},
  ): AsyncResult<Awaited<R>[]> {
    return this.#mapAsync<Awaited<R>>(fn, iterable, false, opts)
  }

  /** `fn(...args)` for every array of arguments; results in input order. */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  async starmap<R, A extends unknown[] = any[]>(
    fn: Target<A, R>,
    iterable: Iterable<readonly [...A]> | AsyncIterable<readonly [...A]>,
    opts: MapOptions = {},
  ): Promise<Awaited<R>[]> {
    return this.#mapAsync<Awaited<R>>(fn, iterable, true, opts).get()
  }

  /** Like `starmap`, returning an `AsyncResult` at once (Python's `starmap_async`). */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  starmapAsync<R, A extends unknown[] = any[]>(
    fn: Target<A, R>,
    iterable: Iterable<readonly [...A]> | AsyncIterable<readonly [...A]>,
    opts: MapAsyncOptions<Awaited<R>> = {},
  ): AsyncResult<Awaited<R>[]> {
    return this.#mapAsync<Awaited<R>>(fn, iterable, true, opts)
  }

  /** Results in input order as they come; input is pulled only as workers free up. */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  imap<R, T = any>(fn: Target<[T], R>, iterable: Iterable<T> | AsyncIterable<T>, opts: MapOptions = {}): IMapIterator<Awaited<R>> {
    return this.#imap<Awaited<R>>(fn, iterable, true, opts)
  }

  /** Results in completion order; input is pulled only as workers free up. */
  // biome-ignore lint/suspicious/noExplicitAny: with written-out type arguments (`map<number>(…)`) the items go unchecked
  imapUnordered<R, T = any>(fn: Target<[T], R>, iterable: Iterable<T> | AsyncIterable<T>, opts: MapOptions = {}): IMapIterator<Awaited<R>> {
    return this.#imap<Awaited<R>>(fn, iterable, false, opts)
  }

  /** No more calls; the workers exit once the work already submitted is done. */
  close(): void {
    this.#scheduler.close()
  }

  /** Kills every worker now and rejects every pending call with `TerminatedError`. */
  terminate(): void {
    this.#scheduler.terminate()
  }

  /** Waits until every worker has exited; call `close()` or `terminate()` first. */
  async join(): Promise<void> {
    if (this.#scheduler.state === 'running') throw new InvalidStateError('join() needs close() or terminate() first')
    await this.#scheduler.whenAllExited()
  }

  /** `await using pool = new Pool()`: close, then join (graceful; Python's `with` terminates). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
    await this.join()
  }

  // ---- events (typed: the listener of a known event knows its arguments) ----

  /** `'progress'`: a call's tasks done so far (every call's). */
  override on(event: 'progress', listener: (progress: Progress) => void): this
  /** `'drain'`: the backlog has emptied after it reached `maxQueue`. */
  override on(event: 'drain', listener: () => void): this
  // biome-ignore lint/suspicious/noExplicitAny: other events, as EventEmitter's
  override on(event: string | symbol, listener: (...args: any[]) => void): this
  // biome-ignore lint/suspicious/noExplicitAny: as EventEmitter's
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener)
  }

  /** `'progress'`, once. */
  override once(event: 'progress', listener: (progress: Progress) => void): this
  /** `'drain'`, once. */
  override once(event: 'drain', listener: () => void): this
  // biome-ignore lint/suspicious/noExplicitAny: other events, as EventEmitter's
  override once(event: string | symbol, listener: (...args: any[]) => void): this
  // biome-ignore lint/suspicious/noExplicitAny: as EventEmitter's
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener)
  }

  /** Removes a `'progress'` listener. */
  override off(event: 'progress', listener: (progress: Progress) => void): this
  /** Removes a `'drain'` listener. */
  override off(event: 'drain', listener: () => void): this
  // biome-ignore lint/suspicious/noExplicitAny: other events, as EventEmitter's
  override off(event: string | symbol, listener: (...args: any[]) => void): this
  // biome-ignore lint/suspicious/noExplicitAny: as EventEmitter's
  override off(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.off(event, listener)
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
    streaming?: Pick<CallRequest, 'streaming' | 'mayPull'>,
    admitted = false,
  ) {
    this.#checkAdmits(admitted)
    if (typeof opts !== 'object' || opts === null) throw typeError('options must be an object')
    const timeout = checkMs('timeout', opts.timeout)
    const signal = opts.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('signal must be an AbortSignal')
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw typeError('onProgress must be a function')
    const targetId = this.#targetId(fn)
    const spec = this.#targets[targetId] as TargetSpec
    return this.#scheduler.submit({
      targetId,
      spec,
      star,
      chunksize,
      input,
      timeout,
      signal,
      onProgress: opts.onProgress,
      sink,
      limited: !admitted,
      ...streaming,
    })
  }

  /** New calls are refused once the pool is closed; one admitted before may still start. */
  #checkAdmits(admitted: boolean): void {
    const state = this.#scheduler.state
    if (state === 'terminated' && admitted) throw new TerminatedError('the pool was terminated')
    if (state !== 'running' && !admitted) throw new ClosedError(`the pool is ${state}`)
    const broken = this.#scheduler.broken
    if (broken) throw broken
  }

  #mapAsync<R>(fn: Target, iterable: unknown, star: boolean, opts: MapAsyncOptions<R>): AsyncResult<R[]> {
    checkOptions('map options', opts)
    const result = new AsyncResult<R[]>({ callback: opts?.callback, errorCallback: opts?.errorCallback })
    const settle = settleLater(result)
    const start = async () => {
      this.#checkAdmits(false)
      const input = inputOf(iterable)
      const chunksize = opts.chunksize
      if (chunksize !== undefined) checkInteger('chunksize', chunksize, 1)
      const timeout = checkMs('timeout', opts.timeout)
      if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw typeError('signal must be an AbortSignal')
      // Refused now or never: a map whose input was read is not turned away after. (An empty
      // map waits for nothing; an aborted one rejects as aborted.)
      const waits = !('array' in input && input.array.length === 0) && !opts.signal?.aborted
      const refused = waits ? this.#scheduler.refusal(timeout, opts.signal) : undefined
      if (refused) throw refused
      const begun = performance.now()
      // Python's map takes the whole input first; the call counts as submitted meanwhile, and
      // its deadline, signal and terminate() apply while the input is read.
      let items: readonly unknown[]
      if ('array' in input) {
        items = input.array
      } else {
        const admission = this.#scheduler.admit(timeout, opts.signal)
        try {
          items = await Promise.race([materialize(input), admission.stopped])
        } catch (err) {
          if ('asyncIterator' in input) void input.asyncIterator.return?.()?.then(undefined, () => {})
          throw err
        } finally {
          admission.end()
        }
      }
      if (timeout !== undefined) opts = { ...opts, timeout: Math.max(0, timeout - (performance.now() - begun)) }
      // Python: divmod(len, 4 * processes), rounded up; no less than the backend's floor.
      const size = chunksize ?? Math.max(this.#minChunksize, Math.ceil(items.length / (this.processes * 4)))
      // Each chunk's values, by position; joined once at the end (concat copies in native code,
      // where a copy loop here would run cold in the first large map).
      const parts = new Array<unknown[]>(Math.ceil(items.length / size))
      const sink: Sink = {
        chunkDone: (chunk, values) => {
          parts[chunk.seq] = values
        },
        chunkFailed: (_chunk, error) => settle({ ok: false, error }),
        failed: (error) => settle({ ok: false, error }),
        completed: () => settle({ ok: true, value: joinParts<R>(parts, items.length) }),
      }
      if (items.length === 0) {
        this.#checkAdmits(true)
        settle({ ok: true, value: [] })
        return
      }
      if (size >= WARM_FROM) warmMapPath()
      this.#submit(fn, { array: items }, star, size, opts, sink, undefined, true)
    }
    start()
      .catch((error) => settle({ ok: false, error }))
      .finally(() => this.#scheduler.retireIfIdle())
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
        this.#scheduler.pump()
      },
      cancel: () => {
        if (call && !call.settled) this.#scheduler.settle(call)
        results.end()
      },
    }
    try {
      const highWater = Math.max(64, this.processes * chunksize * 8)
      call = this.#submit(fn, inputOf(iterable), false, chunksize, opts, sink, {
        streaming: true,
        // Once the pool is closed the rest is run and kept, so that join() returns (as Python).
        mayPull: (c) => c.nextIndex - folded - consumed < highWater || this.#scheduler.state !== 'running',
      })
    } catch (error) {
      sink.failed(error)
    }
    return new IMapIterator<R>(source)
  }
}
