/**
 * The pool's scheduler: which chunk of which call goes to which worker, and what happens to it.
 * It keeps every chunk it sent on its worker's in-flight list until the worker answers, so when
 * a worker dies it knows exactly what it held: chunks taken back were never started and go to
 * another worker; the one it was running rejects with `WorkerExitedError`. How many chunks a
 * worker may have queued adapts to how long its chunks take. It does no I/O: workers are reached
 * through their links (`pool-link.ts`), whatever the backend.
 */
import type { EventEmitter } from 'node:events'
import {
  AbortError,
  Full,
  MultiprocError,
  ProcessError,
  RemoteError,
  type SerializationError,
  TerminatedError,
  TimeoutError,
  WorkerExitedError,
} from './errors.js'
import type { Progress } from './pool.js'
import { Call, type CallRequest, type Chunk } from './pool-call.js'
import type { Backend, ExitStatus, LinkEvents, WorkerConfig, WorkerLink, WorkerProcessOptions } from './pool-link.js'
import type { Process } from './process.js'
import { fromRecord, remoteError } from './remote-error.js'
import type { Serializer } from './serialize.js'
import type { StartMethod } from './start-method.js'

/** A worker may have this much of its typical work queued behind the chunk it runs. */
const QUEUE_MS = 2
const MAX_DEPTH = 64
const MAX_EARLY_EXITS = 3
/** Longer than a timer can wait (about 24.8 days): taken as no limit. */
export const NO_LIMIT_MS = 2 ** 31 - 1

/** The scheduler's books on one worker; the worker itself is behind `link`. */
export interface Worker {
  readonly index: number
  readonly link: WorkerLink
  readonly inflight: Chunk[]
  /** Targets this worker has been told about. */
  readonly knows: Set<number>
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

export interface SchedulerOptions {
  readonly processes: number
  readonly backend: Backend
  readonly setup: WorkerConfig
  readonly serializer: Serializer | undefined
  readonly taskTimeout: number | undefined
  /** How the backend is to start worker processes. */
  readonly processOptions: WorkerProcessOptions
  /** Calls that may wait for a worker before more are refused (`Infinity`: no limit). */
  readonly maxQueue: number
  /** How local workers are started (default: the program's start method). */
  readonly startMethod?: StartMethod | undefined
  /** Where `'progress'` and `'drain'` events go (the pool). */
  readonly emitter: Pick<EventEmitter, 'emit' | 'listenerCount'>
}

export type PoolState = 'running' | 'closed' | 'terminated'

export class PoolScheduler {
  readonly #opts: SchedulerOptions
  readonly #workers = new Map<number, Worker>()
  readonly #calls: Call[] = []
  readonly #inflight = new Map<number, Chunk>()
  #nextWorker = 1
  #state: PoolState = 'running'
  #broken: Error | undefined
  /** Workers with chunks in flight. */
  #busy = 0
  /** map calls taking their input before they are submitted. */
  #admitting = 0
  #keepAlive: NodeJS.Timeout | undefined
  /** Stops the map calls still reading their input, when the pool is terminated. */
  readonly #admissions = new Set<() => void>()
  /** Workers in a row that exited before they were ready. */
  #earlyExits = 0
  #pumping = false
  /** The backlog reached `maxQueue` (or a call was refused) and has not emptied since: `'drain'` is due. */
  #full = false

  constructor(opts: SchedulerOptions) {
    this.#opts = opts
  }

  get state(): PoolState {
    return this.#state
  }

  /** Why the pool cannot go on, once it cannot. */
  get broken(): Error | undefined {
    return this.#broken
  }

  /** Starts the pool's workers; throws if one cannot even begin. */
  start(): void {
    for (let i = 0; i < this.#opts.processes; i++) this.#startWorker(true)
  }

  /** The local processes of the workers that take work (none for workers elsewhere). */
  get workerProcesses(): Process[] {
    const out: Process[] = []
    for (const w of this.#workers.values()) {
      if (w.retired || w.replaced) continue
      const p = w.link.process
      if (p) out.push(p)
    }
    return out
  }

  // ---- calls ----

  /**
   * Takes a call; with a `timeout` or `signal` it has its workers to itself, so killing them
   * costs no other call anything. A `limited` call that would wait while the backlog is full is
   * refused (it fails with `Full`; nothing of it ran).
   */
  submit(request: CallRequest): Call {
    const { timeout, signal } = request
    const exclusive = this.#exclusive(timeout, signal)
    const call = new Call(request, exclusive, this.#opts.taskTimeout)
    if (signal?.aborted) {
      this.#fail(call, new AbortError('the call was aborted', { cause: signal.reason }))
      return call
    }
    const refused = request.limited ? this.refusal(timeout, signal) : undefined
    if (refused) {
      this.#fail(call, refused)
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
    this.#calls.push(call)
    this.pump()
    return call
  }

  #exclusive(timeout: number | undefined, signal: AbortSignal | undefined): boolean {
    return timeout !== undefined || signal !== undefined || this.#opts.taskTimeout !== undefined
  }

  /** Calls waiting for a worker: each has work that no worker has been handed yet. */
  get backlog(): number {
    let waiting = 0
    for (const call of this.#calls) if (!call.settled && call.hasWork) waiting++
    return waiting
  }

  /**
   * Whether a call made now could be refused: from when the backlog reaches `maxQueue`, or no
   * worker has room with `maxQueue: 0` (or a call is refused), until `'drain'`.
   */
  get needsDrain(): boolean {
    if (!this.#full && this.#opts.maxQueue === 0 && this.#state === 'running' && !this.#hasRoom()) this.#full = true
    return this.#full
  }

  /** Whether some worker can take a chunk of an ordinary call now. */
  #hasRoom(): boolean {
    return this.#pickWorker({ exclusive: this.#exclusive(undefined, undefined), taskTimeout: this.#opts.taskTimeout }) !== undefined
  }

  /**
   * Why a call made now must be refused, if it must: `maxQueue` calls already wait and no worker
   * can take this one at once (a call that can start is never refused). The refusal means a
   * `'drain'` is due.
   */
  refusal(timeout: number | undefined, signal: AbortSignal | undefined): Full | undefined {
    const max = this.#opts.maxQueue
    if (max === Number.POSITIVE_INFINITY || this.backlog < max) return undefined
    if (this.#pickWorker({ exclusive: this.#exclusive(timeout, signal), taskTimeout: this.#opts.taskTimeout })) return undefined
    this.#full = true
    return new Full(`the pool's backlog is full: ${max} call${max === 1 ? ' is' : 's are'} already waiting for a worker (maxQueue)`)
  }

  /**
   * After a pump (and on terminate): a backlog at the limit makes a `'drain'` due; once it has
   * emptied, the drain is emitted. Never from the refusal itself (a producer that retries on
   * `'drain'` would spin without the workers ever answering); with `maxQueue: 0` an empty
   * backlog is not enough: a worker must have room.
   */
  #watchBacklog(): void {
    const max = this.#opts.maxQueue
    if (max === Number.POSITIVE_INFINITY) return
    const waiting = this.backlog
    if (waiting > 0 && waiting >= max) this.#full = true
    if (!this.#full || waiting > 0) return
    if (max === 0 && this.#state === 'running' && !this.#hasRoom()) return
    this.#full = false
    // On a later turn: never inside the call (maybe a user's) that emptied it.
    queueMicrotask(() => this.#opts.emitter.emit('drain'))
  }

  /**
   * A map call reads its whole input before it is submitted; meanwhile it counts as pending, and
   * `stopped` rejects when its deadline passes, its signal aborts or the pool is terminated.
   */
  admit(timeout: number | undefined, signal: AbortSignal | undefined): { stopped: Promise<never>; end(): void } {
    this.#admitting++
    this.#holdLoop()
    let cleanup = () => {}
    const stopped = new Promise<never>((_, reject) => {
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
    return {
      stopped,
      end: () => {
        cleanup()
        this.#admitting--
        this.#holdLoop()
      },
    }
  }

  /** No more calls come; the workers exit once the work already submitted is done. */
  close(): void {
    if (this.#state === 'running') this.#state = 'closed'
    this.pump() // an imap held back by its consumer now runs to the end
  }

  /** Kills every worker now and rejects every pending call with `TerminatedError`. */
  terminate(): void {
    if (this.#state === 'terminated') return
    this.#state = 'terminated'
    for (const w of this.#workers.values()) {
      w.retired = true
      w.link.kill()
    }
    const err = new TerminatedError('the pool was terminated')
    for (const call of this.#calls.splice(0)) this.#fail(call, err)
    for (const stop of this.#admissions) stop()
    for (const chunk of this.#inflight.values()) chunk.dropped = true
    // The links report the exits, after every reply the workers sent.
    this.#holdLoop()
    // Whoever waits for room hears of it, and learns from its next call that the pool is gone.
    this.#watchBacklog()
  }

  /** Resolves once every worker has exited. */
  async whenAllExited(): Promise<void> {
    while (this.#workers.size > 0) {
      await Promise.all([...this.#workers.values()].map((w) => w.link.join().catch(() => {})))
      await new Promise((r) => setImmediate(r)) // let exit handling run
    }
  }

  // ---- scheduling ----

  /** How many chunks a worker may hold for this call (the one it runs included). */
  #depth(w: Worker, call: Pick<Call, 'taskTimeout'>): number {
    if (call.taskTimeout !== undefined) return 1
    if (w.chunkMs === undefined) return 2
    return Math.min(MAX_DEPTH, Math.max(2, Math.ceil(QUEUE_MS / Math.max(w.chunkMs, 1e-3)) + 1))
  }

  /** The least busy worker that can take a chunk of `call` now. */
  #pickWorker(call: Pick<Call, 'exclusive' | 'taskTimeout'>): Worker | undefined {
    let best: Worker | undefined
    const maxTasks = this.#opts.setup.maxTasks
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
  pump(): void {
    if (this.#pumping) return
    this.#pumping = true
    const kick = () => this.pump()
    let rebalanced = false
    try {
      for (let sent = true; sent; ) {
        sent = false
        for (const call of [...this.#calls]) {
          const w = this.#pickWorker(call)
          if (!w) {
            if (call.exclusive && call.hasWork) this.#reserve(call)
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
    this.retireIfIdle()
    for (const w of this.#workers.values()) w.link.listen()
    this.#holdLoop()
    this.#watchBacklog()
  }

  /**
   * While a call has work pending the pool keeps the process alive (as a pending Queue get does),
   * also while workers are being replaced and no channel is awaited. An idle pool, or one whose
   * only call is an imap waiting for its consumer, holds nothing.
   */
  #holdLoop(): void {
    const pending = this.#state !== 'terminated' && (this.#inflight.size > 0 || this.#admitting > 0 || this.#calls.some((c) => c.hasWork))
    if (pending && !this.#keepAlive) this.#keepAlive = setInterval(() => {}, 1 << 30)
    else if (!pending && this.#keepAlive) {
      clearInterval(this.#keepAlive)
      this.#keepAlive = undefined
    }
  }

  /**
   * A call with a deadline or signal needs a worker with nothing else queued. Rather than wait
   * for one to empty by chance (calls made later keep them busy), keep the least busy worker
   * free for it: nothing more goes to it, and what waits in its queue goes elsewhere.
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

  /**
   * A worker that has been sent its last chunk (maxTasksPerChild) gets its successor while it
   * runs that chunk, not after it has exited; but only once it is itself running. A successor
   * started for a worker still booting would take its own last chunk while booting and start
   * another, and so on: one process per chunk at once, where the pool has `processes`.
   */
  #startSuccessor(w: Worker): void {
    const maxTasks = this.#opts.setup.maxTasks
    if (maxTasks === 0 || w.dispatched < maxTasks || w.replaced || !w.ready) return
    if (this.#state !== 'running' || this.#broken) return
    w.replaced = true
    this.#startWorker()
  }

  #dispatch(w: Worker, chunk: Chunk): void {
    const call = chunk.call
    const tellsTarget = !w.knows.has(call.targetId)
    chunk.worker = w
    chunk.toldTarget = tellsTarget
    chunk.sentAt = performance.now()
    if (call.exclusive) for (const other of this.#workers.values()) if (other.reservedFor === call) other.reservedFor = null
    if (w.inflight.push(chunk) === 1) this.#busy++
    w.dispatched++
    this.#startSuccessor(w)
    if (call.exclusive) w.exclusiveTo = call
    if (tellsTarget) w.knows.add(call.targetId)
    call.running++
    this.#inflight.set(chunk.id, chunk)
    const timeout = call.taskTimeout
    const ms = timeout === undefined ? undefined : timeout * chunk.items.length
    // The clock starts when the chunk starts: such chunks go only to idle workers (depth 1).
    if (ms !== undefined && ms < NO_LIMIT_MS) chunk.timer = setTimeout(() => this.#expire(chunk, ms), ms)
    try {
      w.link.send({ chunkId: chunk.id, targetId: call.targetId, items: chunk.items, star: call.star, spec: tellsTarget ? call.spec : null })
    } catch (err) {
      this.#unsent(chunk, err)
    }
  }

  /** It never reached the worker (its items cannot be encoded, say): the call fails with that error. */
  #unsent(chunk: Chunk, error: unknown): void {
    const w = chunk.worker as Worker
    if (chunk.toldTarget) w.knows.delete(chunk.call.targetId)
    this.#unlink(chunk)
    this.#chunkFailed(chunk, error)
  }

  /** Takes a chunk off its worker's books (answered, or the worker is gone). */
  #unlink(chunk: Chunk): void {
    const w = chunk.worker
    if (w) {
      const before = w.inflight.length
      // Answers come in the order chunks were sent: it is nearly always the first.
      if (w.inflight[0] === chunk) w.inflight.shift()
      else {
        const i = w.inflight.indexOf(chunk)
        if (i >= 0) w.inflight.splice(i, 1)
      }
      if (w.inflight.length === 0) {
        w.exclusiveTo = null
        if (before > 0) this.#busy--
      }
    }
    chunk.worker = null
    if (chunk.timer) clearTimeout(chunk.timer)
    this.#inflight.delete(chunk.id)
    chunk.call.running--
  }

  /**
   * Takes back what waits unstarted in a worker's queue. A message that described the target
   * was never seen, so the worker has not learnt it.
   */
  #takeBack(w: Worker): Chunk[] {
    return this.#takenBack(w, w.link.takeBack())
  }

  #takenBack(w: Worker, ids: number[]): Chunk[] {
    const taken: Chunk[] = []
    for (const id of ids) {
      const chunk = this.#inflight.get(id)
      if (!chunk || chunk.worker !== w) continue
      if (chunk.toldTarget) w.knows.delete(chunk.call.targetId)
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
    if (!this.#opts.backend.canTakeBack) return false
    const maxTasks = this.#opts.setup.maxTasks
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
    if (!call.streaming) this.settle(call)
  }

  #progress(call: Call, n: number): void {
    call.done += n
    const emitter = this.#opts.emitter
    if (!call.onProgress && emitter.listenerCount('progress') === 0) return
    call.reportedTotal = call.total
    const progress: Progress = { done: call.done, total: call.total }
    try {
      call.onProgress?.(progress)
      emitter.emit('progress', progress)
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
    this.settle(call)
    call.sink.completed()
  }

  #fail(call: Call, error: unknown): void {
    if (call.settled) return
    this.settle(call)
    call.sink.failed(error)
  }

  /** The call is over: nothing more of it is sent; queued chunks are dropped; its timer goes. */
  settle(call: Call): void {
    call.settled = true
    call.cleanup()
    for (const w of this.#workers.values()) if (w.reservedFor === call) w.reservedFor = null
    call.closeInput()
    call.queue.length = 0
    const i = this.#calls.indexOf(call)
    if (i >= 0) this.#calls.splice(i, 1)
    this.retireIfIdle()
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
    w.link.kill()
  }

  /** The pool cannot go on (a worker cannot start, or the initializer failed): every call fails. */
  #break(error: Error): void {
    if (this.#broken) return
    this.#broken = error
    for (const call of [...this.#calls]) this.#fail(call, error)
    for (const w of this.#workers.values()) this.#kill(w)
  }

  /** After close(), once no work remains, workers are told to exit when they have run what they hold. */
  retireIfIdle(): void {
    if (this.#state !== 'closed' || this.#calls.length > 0 || this.#inflight.size > 0 || this.#admitting > 0) return
    for (const w of this.#workers.values()) {
      if (!w.retired) {
        w.retired = true
        w.link.retire()
      }
    }
  }

  // ---- workers ----

  /**
   * Adds a worker. Running out of descriptors or memory for it breaks the pool, or, from the
   * constructor (`rethrow`), is thrown from there after the workers made so far are gone.
   */
  #startWorker(rethrow = false): void {
    const index = this.#nextWorker++
    let w: Worker | undefined
    let link: WorkerLink
    try {
      link = this.#opts.backend.start({
        index,
        setup: this.#opts.setup,
        serializer: this.#opts.serializer,
        processOptions: this.#opts.processOptions,
        startMethod: this.#opts.startMethod,
        events: this.#eventsOf(() => w as Worker),
        wantsReplies: () => w !== undefined && this.#wantsReplies(w),
        busyWorkers: () => this.#busy,
      })
    } catch (err) {
      if (rethrow) throw err
      this.#break(err as Error)
      return
    }
    w = {
      index,
      link,
      inflight: [],
      knows: new Set(),
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
  }

  /**
   * Replies are wanted only while a worker has something in flight, or is starting while calls
   * wait for it: an idle pool holds no event loop open, and its workers die with the parent.
   */
  #wantsReplies(w: Worker): boolean {
    if (this.#state === 'terminated') return false
    return w.inflight.length > 0 || (!w.ready && !w.retired && this.#calls.length > 0)
  }

  /** What a worker's link reports, applied to that worker's books. Every reply is followed by a pump. */
  #eventsOf(worker: () => Worker): LinkEvents {
    return {
      ready: () => {
        const w = worker()
        w.ready = true
        this.#startSuccessor(w)
        this.pump()
      },
      done: (chunkId, values) => {
        const chunk = this.#answered(worker(), chunkId)
        if (chunk) this.#chunkDone(chunk, values)
        this.pump()
      },
      failed: (chunkId, record, wrapped) => {
        const chunk = this.#answered(worker(), chunkId)
        if (chunk) this.#chunkFailed(chunk, wrapped ? remoteError(record) : fromRecord(record))
        this.pump()
      },
      unknown: (chunkId) => {
        const w = worker()
        const chunk = this.#inflight.get(chunkId)
        if (chunk) {
          // It was not started: send it again, with the target's description.
          w.knows.delete(chunk.call.targetId)
          w.dispatched--
          this.#unlink(chunk)
          this.#requeue([chunk])
        }
        this.pump()
      },
      initFailed: (record) => {
        const cause = fromRecord(record)
        this.#break(new RemoteError(`the pool's initializer failed: ${record.name}: ${record.message}`, { cause }))
        this.pump()
      },
      undecodable: (err) => this.#undecodable(worker(), err),
      unsent: (chunkId, error) => {
        const chunk = this.#inflight.get(chunkId)
        if (!chunk || chunk.worker !== worker()) return
        this.#unsent(chunk, error)
        this.pump()
      },
      lost: () => {
        worker().retired = true
      },
      startFailed: (error) => this.#startFailed(worker(), error),
      exited: (status, unstarted) => this.#exited(worker(), status, unstarted),
    }
  }

  /** The chunk a reply answers, off its worker's books, with the worker's pace updated. */
  #answered(w: Worker, chunkId: number): Chunk | undefined {
    const chunk = this.#inflight.get(chunkId)
    if (!chunk) return undefined
    // Service time, not latency: a chunk queued behind another started when that one ended.
    const now = performance.now()
    const took = now - Math.max(chunk.sentAt, w.lastReplyAt)
    w.lastReplyAt = now
    w.chunkMs = w.chunkMs === undefined ? took : w.chunkMs * 0.8 + took * 0.2
    this.#unlink(chunk)
    return chunk
  }

  /**
   * A reply the parent cannot decode (its serializer throws). A worker answers its chunks in the
   * order they were sent, and only unstarted ones (the newest) are taken back, so the reply is for
   * the oldest chunk still on its list; before `ready`, it was the ready reply itself (or the
   * initializer's failure), and the pool cannot use its workers at all.
   */
  #undecodable(w: Worker, error: SerializationError): void {
    if (!w.ready) {
      this.#break(error)
      return
    }
    const chunk = w.inflight[0]
    if (!chunk) return
    this.#unlink(chunk)
    this.#chunkFailed(chunk, error)
    this.pump()
  }

  #startFailed(w: Worker, err: unknown): void {
    this.#workers.delete(w.index)
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

  /** V8 aborts (or traps in) a process whose heap is exhausted: say so, since that is the likely cause. */
  #abortHint(signal: string | null): string {
    if (signal !== 'SIGABRT' && signal !== 'SIGTRAP') return ''
    const mib = this.#opts.processOptions.maxOldSpaceSize
    return ` (V8 aborts a process that runs out of heap${mib === undefined ? '' : `; the workers' limit is ${mib} MiB, maxOldSpaceSize`})`
  }

  /** The worker is gone and all it sent is counted: what it still held is settled. */
  #exited(w: Worker, status: ExitStatus, unstarted: number[]): void {
    if (!this.#workers.delete(w.index)) return
    if (w.ready) this.#earlyExits = 0
    else if (!w.retired || status.signal !== 'SIGKILL') this.#earlyExits++
    const taken = this.#takenBack(w, unstarted)
    const { exitCode, signal } = status
    const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`
    const pid = w.link.pid === null ? '' : ` (pid ${w.link.pid})`
    for (const chunk of [...w.inflight]) {
      this.#unlink(chunk)
      this.#chunkFailed(
        chunk,
        new WorkerExitedError(`${w.link.name}${pid} ${how} while running a task${this.#abortHint(signal)}`, exitCode, signal),
      )
    }
    this.#requeue(taken)
    if (this.#earlyExits >= MAX_EARLY_EXITS) {
      // Workers die before they can take work (an initializer that exits, say): do not loop.
      this.#break(
        new WorkerExitedError(`${MAX_EARLY_EXITS} pool workers in a row exited before they were ready; the last ${how}`, exitCode, signal),
      )
    }
    const wanted = this.#state === 'running' || this.#calls.length > 0
    if (!w.replaced && this.#state !== 'terminated' && !this.#broken && wanted) this.#startWorker()
    this.pump()
  }
}
