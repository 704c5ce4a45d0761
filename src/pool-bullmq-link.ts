/**
 * The BullMQ backend: a pool's workers are slots, each a share of the jobs the pool keeps in
 * flight on one BullMQ queue; remote worker hosts (`multiproc worker`) take the jobs and run
 * them on processes of their own. A slot's chunk is one job; its reply comes back on the pool's
 * reply list. A slot that is killed (a timeout, an abort, `terminate()`) withdraws its jobs: those
 * still waiting are removed from Redis, and the hosts running the others are told to kill the
 * processes that run them.
 *
 * One session per backend holds the Redis clients, the BullMQ producer and the loop that reads
 * replies; it lives while the pool has slots. Its sockets do not hold the event loop: the
 * scheduler does, while calls are pending.
 */
import { randomBytes } from 'node:crypto'

import type { Queue as BullQueue } from 'bullmq'
import type { Redis as IORedis } from 'ioredis'

import { type Connection, connect, loadPeers, unrefSocket } from './bullmq-peers.js'
import {
  encodePayload,
  type FailedBody,
  JOB_NAME,
  type JobData,
  jobIdOf,
  type RemoteSetup,
  type ReplyHeader,
  ReplyKind,
  replyBody,
  replyHeader,
  WIRE_VERSION,
  WireKeys,
} from './bullmq-wire.js'
import { BrokerError, ProtocolError, SerializationError, WorkerExitedError } from './errors.js'
import { holdsHandles } from './handles.js'
import type { Backend, ExitStatus, LinkStart, WorkerLink } from './pool-link.js'
import type { ErrorRecord } from './remote-error.js'
import type { TargetSpec } from './target.js'

/** What `bullmq()` needs: where Redis is, and which queue the workers serve. */
export interface BullmqBackendOptions {
  connection: Connection
  queue: string
  /** BullMQ's key prefix; default `bull` (the workers must use the same). */
  prefix?: string | undefined
  /** The least number of tasks `map` puts in a job when no `chunksize` is given; default 8. */
  minChunksize?: number | undefined
  /**
   * Milliseconds Redis may be unreachable before the chunks in flight reject with `BrokerError`
   * (and new ones at once, until it is back); default 30,000. Within it, the pool reconnects and
   * re-adds the jobs that Redis lost.
   */
  reconnectTimeout?: number | undefined
}

/** A chunk is tried at most twice: once more after the process running it died. */
const JOB_OPTIONS = { attempts: 2, removeOnComplete: true, removeOnFail: true } as const
/** Replies taken in one go after a blocking pop. */
const DRAIN = 256

/** The TypeError for what cannot reach another machine. */
export function notRemote(message: string): TypeError & { code: string } {
  return Object.assign(new TypeError(message), { code: 'ERR_NOT_REMOTE' })
}

/** The BullMQ backend (see `bullmq()` in bullmq.ts, which checks the options). */
export function bullmqBackend(options: Required<Omit<BullmqBackendOptions, 'prefix'>> & { prefix: string }): Backend {
  loadPeers()
  let session: Session | undefined
  return {
    name: 'bullmq',
    carriesHandles: false,
    canTakeBack: false,
    localProcesses: false,
    // The hosts start their processes; execArgv, env and maxOldSpaceSize are theirs to set.
    configuresProcesses: false,
    minChunksize: options.minChunksize,
    start(worker: LinkStart): WorkerLink {
      if (worker.setup.serializer) {
        throw notRemote('a Pool on the BullMQ backend cannot have a custom serializer: values travel in the structured-clone format')
      }
      if (!session || session.closing) {
        const s = new Session(options, () => {
          if (session === s) session = undefined
        })
        session = s
      }
      return new BullmqLink(session, worker)
    },
  }
}

interface PendingJob {
  readonly link: BullmqLink
  readonly chunkId: number
  readonly data: JobData
}

class Session {
  readonly clientId = randomBytes(8).toString('hex')
  readonly keys: WireKeys
  readonly replyKey: string
  readonly links = new Set<BullmqLink>()
  readonly #opts: Required<BullmqBackendOptions>
  readonly #redis: IORedis
  readonly #blocking: IORedis
  readonly #queue: BullQueue
  readonly #jobs = new Map<string, PendingJob>()
  readonly #onClosed: () => void
  #batch: string[] | null = null
  #sendings = 0
  closing = false
  #everReady = false
  #down = true
  #downTimer: NodeJS.Timeout | undefined
  /** Set once Redis has been away longer than `reconnectTimeout`, until it is back. */
  #unreachable: BrokerError | null = null

  constructor(opts: Required<BullmqBackendOptions>, onClosed: () => void) {
    this.#opts = opts
    this.#onClosed = onClosed
    this.keys = new WireKeys(opts.prefix, opts.queue)
    this.replyKey = this.keys.replies(this.clientId)
    const { Queue } = loadPeers()
    this.#redis = connect(opts.connection, { connectionName: `multiproc-pool-${this.clientId}` })
    this.#blocking = connect(opts.connection, { connectionName: `multiproc-pool-${this.clientId}-replies` })
    for (const client of [this.#redis, this.#blocking]) {
      unrefSocket(client)
      // The state is followed through 'close'/'ready'; the errors themselves say nothing more.
      client.on('error', () => {})
    }
    this.#redis.on('ready', () => this.#ready())
    this.#redis.on('close', () => this.#lost())
    this.#queue = new Queue(opts.queue, { connection: this.#redis, prefix: opts.prefix })
    this.#queue.on('error', () => {})
    this.#armDownTimer()
    void this.#receive()
  }

  /** Adds a chunk's job (in one batch with the others sent in this turn); returns its id. */
  add(link: BullmqLink, chunkId: number, data: JobData): string {
    if (this.#unreachable) throw this.#unreachable
    const jobId = jobIdOf(this.clientId, chunkId, ++this.#sendings)
    this.#jobs.set(jobId, { link, chunkId, data })
    this.#enqueue(jobId)
    return jobId
  }

  /** The pool gave up on a job: it is removed if still waiting, and its host told to stop it if running. */
  cancel(jobId: string): void {
    if (!this.#jobs.delete(jobId)) return
    if (this.#batch?.includes(jobId)) return // never added
    this.#redis.publish(this.keys.cancel, jobId).catch(() => {})
    this.#queue.remove(jobId).catch(() => {})
  }

  release(link: BullmqLink): void {
    this.links.delete(link)
    if (this.links.size > 0) return
    // A replacement slot may start right after the last one ends.
    setImmediate(() => {
      if (this.links.size === 0) this.#close()
    })
  }

  #enqueue(jobId: string): void {
    if (this.#batch) {
      this.#batch.push(jobId)
      return
    }
    this.#batch = [jobId]
    queueMicrotask(() => this.#flush())
  }

  #flush(): void {
    const ids = (this.#batch ?? []).filter((id) => this.#jobs.has(id))
    this.#batch = null
    if (ids.length === 0 || this.closing) return
    const jobs = ids.map((id) => ({ name: JOB_NAME, data: (this.#jobs.get(id) as PendingJob).data, opts: { ...JOB_OPTIONS, jobId: id } }))
    const added = jobs.length === 1 ? this.#queue.add(JOB_NAME, jobs[0]?.data, jobs[0]?.opts) : this.#queue.addBulk(jobs)
    added.catch((err: unknown) => {
      if (this.closing) return
      const error = new BrokerError(`cannot add jobs to the queue ${this.#opts.queue}: ${(err as Error)?.message ?? err}`, { cause: err })
      for (const id of ids) this.#fail(id, error)
    })
  }

  #fail(jobId: string, error: Error): void {
    const job = this.#jobs.get(jobId)
    if (!job) return
    this.#jobs.delete(jobId)
    job.link.failed(job.chunkId, error)
  }

  /** Reads the pool's replies for as long as the session lives. */
  async #receive(): Promise<void> {
    // After a blocking pop, what else is there is taken in one go; only an empty list blocks.
    let drained = true
    while (!this.closing) {
      let got: Buffer[]
      try {
        if (drained) {
          const first = await this.#blocking.brpopBuffer(this.replyKey, 0)
          got = first ? [first[1]] : []
        } else {
          got = ((await this.#blocking.rpopBuffer(this.replyKey, DRAIN)) as Buffer[] | null) ?? []
        }
      } catch {
        if (this.closing) return
        drained = true
        await new Promise((r) => setTimeout(r, 100).unref())
        continue
      }
      drained = got.length === 0
      for (const buf of got) this.#reply(buf)
    }
  }

  #reply(buf: Buffer): void {
    let header: ReplyHeader
    try {
      header = replyHeader(buf)
    } catch (err) {
      // Not from a multiproc worker: whose it was cannot be told.
      process.emitWarning(`multiproc/bullmq: a reply on ${this.replyKey} cannot be read: ${(err as Error).message}`)
      return
    }
    const job = this.#jobs.get(header.j)
    // A second answer (the job ran again after a stall or a lost Redis), or one given up on.
    if (!job) return
    this.#jobs.delete(header.j)
    job.link.answered(job.chunkId, header, buf)
  }

  // ---- the connection ----

  #armDownTimer(): void {
    clearTimeout(this.#downTimer)
    this.#downTimer = setTimeout(() => this.#giveUp(), this.#opts.reconnectTimeout)
    // The scheduler holds the loop while chunks are in flight; an idle pool must not.
    this.#downTimer.unref()
  }

  #lost(): void {
    if (this.closing || this.#down) return
    this.#down = true
    this.#armDownTimer()
  }

  #ready(): void {
    clearTimeout(this.#downTimer)
    const back = this.#everReady && this.#down
    this.#down = false
    this.#everReady = true
    this.#unreachable = null
    if (back) void this.#resync()
  }

  /** Redis stayed away: what is in flight rejects, and so does what is sent until it is back. */
  #giveUp(): void {
    if (this.closing || !this.#down) return
    const where = typeof this.#opts.connection === 'string' ? this.#opts.connection : 'the configured server'
    this.#unreachable = new BrokerError(`Redis (${where}) has been unreachable for ${this.#opts.reconnectTimeout} ms`)
    for (const id of [...this.#jobs.keys()]) this.#fail(id, this.#unreachable)
  }

  /**
   * Back after a disconnection: jobs that Redis no longer has (a restart without persistence)
   * are added again under the same ids; those it still has are left alone (adding an existing id
   * does nothing).
   */
  async #resync(): Promise<void> {
    const ids = [...this.#jobs.keys()]
    if (ids.length === 0) return
    let exists: [Error | null, unknown][] | null
    try {
      const pipeline = this.#redis.pipeline()
      for (const id of ids) pipeline.exists(this.keys.job(id))
      exists = await pipeline.exec()
    } catch {
      return // lost again: the next 'ready' tries again
    }
    ids.forEach((id, i) => {
      if (exists?.[i]?.[1] === 0 && this.#jobs.has(id)) this.#enqueue(id)
    })
  }

  #close(): void {
    if (this.closing) return
    this.closing = true
    clearTimeout(this.#downTimer)
    this.#onClosed()
    this.#blocking.disconnect()
    this.#queue
      .close()
      .catch(() => {})
      .finally(() => this.#redis.quit().catch(() => this.#redis.disconnect()))
  }
}

/** One slot of the pool: the chunks it has in flight are jobs. */
class BullmqLink implements WorkerLink {
  readonly name: string
  readonly pid = null
  readonly process = null
  readonly #session: Session
  readonly #start: LinkStart
  /** Its chunks in flight: chunk id → job id. */
  readonly #held = new Map<number, string>()
  /** Targets by id, as the scheduler described them the first time (every job carries its target). */
  readonly #specs = new Map<number, TargetSpec>()
  readonly #setup: Pick<JobData, 'u' | 'uk'>
  #retiring = false
  #finished = false
  readonly #exited: Promise<void>
  #markExited!: () => void

  constructor(session: Session, start: LinkStart) {
    this.#session = session
    this.#start = start
    this.name = `PoolWorker-${start.index}`
    session.links.add(this)
    this.#exited = new Promise((resolve) => {
      this.#markExited = resolve
    })
    const { initializer, initargs, maxTasks } = start.setup
    let setupError: unknown
    this.#setup = {}
    if (initializer || initargs.length > 0 || maxTasks > 0) {
      try {
        const encoded = encodePayload({ initializer, initargs, maxTasks } satisfies RemoteSetup)
        this.#setup = { u: encoded.base64, uk: encoded.kind }
      } catch (err) {
        setupError = err
      }
    }
    // A slot needs nothing to start: its jobs wait in Redis until a worker takes them. One whose
    // setup cannot be sent fails as a local worker that cannot start does: the calls reject.
    queueMicrotask(() => {
      if (setupError === undefined) {
        if (!this.#finished) start.events.ready()
        return
      }
      this.#finished = true
      this.#session.release(this)
      start.events.startFailed(setupError)
      this.#markExited()
    })
  }

  send(chunk: Parameters<WorkerLink['send']>[0]): void {
    if (holdsHandles(chunk.items)) {
      throw notRemote('a Queue, Lock, SharedMemory or other handle cannot reach a remote worker: pass plain values')
    }
    if (chunk.spec) this.#specs.set(chunk.targetId, chunk.spec)
    const spec = chunk.spec ?? this.#specs.get(chunk.targetId)
    if (!spec) {
      // Not described to this slot: the scheduler sends it again with its description.
      queueMicrotask(() => this.#start.events.unknown(chunk.chunkId))
      return
    }
    const payload = encodePayload(chunk.items)
    const data: JobData = {
      v: WIRE_VERSION,
      r: this.#session.replyKey,
      t: spec,
      s: chunk.star,
      k: payload.kind,
      p: payload.base64,
      ...this.#setup,
    }
    this.#held.set(chunk.chunkId, this.#session.add(this, chunk.chunkId, data))
  }

  /** A reply for one of its chunks. */
  answered(chunkId: number, header: ReplyHeader, buf: Buffer): void {
    this.#held.delete(chunkId)
    const events = this.#start.events
    let body: unknown
    try {
      body = replyBody(buf)
    } catch (err) {
      // The header says whose it was: that chunk fails, nothing else.
      events.unsent(
        chunkId,
        new SerializationError(`the reply for a task cannot be decoded here: ${(err as Error).message}`, { cause: err }),
      )
      this.#maybeExit()
      return
    }
    switch (header.k) {
      case ReplyKind.Done:
        events.done(chunkId, body as unknown[])
        break
      case ReplyKind.Failed: {
        const { record, wrapped } = body as FailedBody
        events.failed(chunkId, record, wrapped)
        break
      }
      case ReplyKind.Exited:
        events.unsent(chunkId, exitedError(header))
        break
      case ReplyKind.InitFailed:
        events.initFailed(body as ErrorRecord)
        break
      default:
        events.unsent(chunkId, new ProtocolError(`a reply of unknown kind ${header.k}`))
    }
    this.#maybeExit()
  }

  /** A chunk that could not be added, or that Redis took away for too long. */
  failed(chunkId: number, error: Error): void {
    if (!this.#held.delete(chunkId)) return
    // The error itself reaches the call (as for a chunk that could not be sent).
    this.#start.events.unsent(chunkId, error)
    this.#maybeExit()
  }

  takeBack(): number[] {
    return []
  }

  listen(): void {
    // The session reads every reply as it comes.
  }

  retire(): void {
    this.#retiring = true
    this.#maybeExit()
  }

  kill(): void {
    if (this.#finished) return
    this.#finished = true
    for (const jobId of this.#held.values()) this.#session.cancel(jobId)
    this.#held.clear()
    this.#start.events.lost()
    setImmediate(() => this.#report({ exitCode: null, signal: 'SIGKILL' }))
  }

  join(): Promise<void> {
    return this.#exited
  }

  #maybeExit(): void {
    if (!this.#retiring || this.#finished || this.#held.size > 0) return
    this.#finished = true
    setImmediate(() => this.#report({ exitCode: 0, signal: null }))
  }

  #report(status: ExitStatus): void {
    this.#session.release(this)
    this.#start.events.exited(status, [])
    this.#markExited()
  }
}

/** What a call sees when a chunk's process died on its second try, or its host twice stopped renewing the job's lock. */
function exitedError(header: ReplyHeader): WorkerExitedError {
  const exitCode = header.exitCode ?? null
  const signal = header.signal ?? null
  if (header.stalled) {
    return new WorkerExitedError(
      'the remote worker running a task stopped renewing its lock twice (its host was killed or cut off from Redis); it was tried twice',
      exitCode,
      signal,
    )
  }
  const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`
  const at = header.at ? ` (${header.at})` : ''
  return new WorkerExitedError(`a remote worker process${at} ${how} while running a task; it was tried twice`, exitCode, signal)
}
