/**
 * A remote worker host (`multiproc worker`): a BullMQ Worker on the queue that takes the pools'
 * chunks and runs each on a local multiproc Pool. User code runs only in the local pool's
 * processes, never on this event loop, so the Worker renews its job locks however long a task
 * takes. A process that dies mid-chunk fails the job once (BullMQ runs it again, on whichever
 * worker takes it next) and answers the pool on the second death; a cancelled job's process is
 * killed. SIGTERM or SIGINT drains: no new jobs, the running ones finish, then the host exits.
 */
import { hostname } from 'node:os'
import { basename } from 'node:path'

import type { Worker as BullWorker, ConnectionOptions, Job } from 'bullmq'
import type { Redis as IORedis } from 'ioredis'

import type { RemoteChunk } from './bullmq-chunk.js'
import { type Connection, connect, loadPeers } from './bullmq-peers.js'
import {
  decodePayload,
  encodeReply,
  type FailedBody,
  type JobData,
  type RemoteSetup,
  type ReplyHeader,
  ReplyKind,
  WIRE_VERSION,
  WireKeys,
} from './bullmq-wire.js'
import { ProtocolError, RemoteError, TargetError, WorkerExitedError } from './errors.js'
import { Pool } from './pool.js'
import { type ErrorRecord, toRecord } from './remote-error.js'
import { describedTarget, moduleHref, type Target, type TargetSpec } from './target.js'

/** How a host is run (the command line's options). */
export interface WorkerHostOptions {
  connection: Connection
  queue: string
  prefix: string
  /** Modules whose exports tasks may name (and where functions are found by identity). */
  modules: string[]
  /** Processes of the local pool, and jobs taken at a time. */
  processes: number
  /** BullMQ's lock on a running job, renewed every half of it. */
  lockDuration: number
  /** How often this host looks for jobs whose lock expired (their host died). */
  stalledInterval: number
  /** Run functions sent as source, and exports of modules not in `modules`. */
  allowSource: boolean
  /** Seconds a reply list is kept when its pool stops reading (it ended, or died). */
  replyTtl: number
  log: (line: string) => void
}

const DEFAULT_SETUP: RemoteSetup = { initializer: null, initargs: [], maxTasks: 0 }
/** A pool for a setup other than the default one is closed after this long unused. */
const SETUP_IDLE_MS = 60_000
/** How long a cancellation is remembered for a job this host has not started yet. */
const CANCEL_MEMORY_MS = 10 * 60_000
const INIT_FAILED = /^the pool's initializer failed/
/** What the host's processes run for a job (bullmq-chunk.ts). */
const CHUNK_RUNNER = { module: new URL('./bullmq-chunk.js', import.meta.url), name: 'runRemoteChunk' }

interface LocalPool {
  pool: Pool
  running: number
  idle: NodeJS.Timeout | undefined
}

/** How long a draining host waits for its connections to close once no job runs. */
const STUCK_AFTER_IDLE_MS = 10_000

/** Runs a host until SIGTERM or SIGINT; resolves with the exit code. */
export async function runWorkerHost(opts: WorkerHostOptions): Promise<number> {
  const host = new WorkerHost(opts)
  await host.start()
  return host.stopped
}

class WorkerHost {
  readonly #opts: WorkerHostOptions
  readonly #keys: WireKeys
  readonly #modules: Map<string, string>
  readonly #pools = new Map<string, LocalPool>()
  /** Jobs running here: job id → what stops them. */
  readonly #running = new Map<string, AbortController>()
  /** Jobs cancelled that may not have reached this host yet: id → when. */
  readonly #cancelled = new Map<string, number>()
  readonly #at = `${hostname()} pid ${process.pid}`
  #replies!: IORedis
  #subscriber!: IORedis
  #worker!: BullWorker
  #stopping = false
  #markStopped!: (code: number) => void
  readonly stopped = new Promise<number>((resolve) => {
    this.#markStopped = resolve
  })

  constructor(opts: WorkerHostOptions) {
    this.#opts = opts
    this.#keys = new WireKeys(opts.prefix, opts.queue)
    // By URL, and by file name (the same module may sit elsewhere on this machine).
    this.#modules = new Map()
    for (const m of opts.modules) {
      const href = moduleHref(m)
      this.#modules.set(href, href)
      this.#modules.set(`name:${basename(new URL(href).pathname)}`, href)
    }
  }

  async start(): Promise<void> {
    const { Worker } = loadPeers()
    const opts = this.#opts
    this.#poolFor(DEFAULT_SETUP) // started now, not on the first job
    this.#replies = connect(opts.connection, { connectionName: `multiproc-worker-${process.pid}` })
    this.#subscriber = connect(opts.connection, { connectionName: `multiproc-worker-${process.pid}-cancel` })
    for (const client of [this.#replies, this.#subscriber]) client.on('error', (err) => this.#warn(`redis: ${err.message}`))
    this.#subscriber.on('message', (_channel: string, jobId: string) => this.#cancel(jobId))
    await this.#subscriber.subscribe(this.#keys.cancel)
    const connection = typeof opts.connection === 'string' ? { url: redisUrl(opts.connection) } : opts.connection
    this.#worker = new Worker(opts.queue, (job: Job) => this.#process(job), {
      connection: { ...connection, maxRetriesPerRequest: null } as ConnectionOptions,
      prefix: opts.prefix,
      concurrency: opts.processes,
      lockDuration: opts.lockDuration,
      stalledInterval: opts.stalledInterval,
      maxStalledCount: 1,
      autorun: true,
    })
    this.#worker.on('error', (err: Error) => this.#warn(`worker: ${err.message}`))
    this.#worker.on('failed', (job, err) => this.#failed(job, err))
    const drain = (signal: string) => {
      if (this.#stopping) {
        this.#opts.log(`${signal} again: stopping now`)
        this.#stop(true)
        return
      }
      this.#opts.log(`${signal}: finishing the running jobs, then exiting`)
      void this.#stop(false)
    }
    process.on('SIGTERM', () => drain('SIGTERM'))
    process.on('SIGINT', () => drain('SIGINT'))
    await this.#worker.waitUntilReady()
    opts.log(`multiproc worker: queue ${opts.queue}, ${opts.processes} processes (${this.#at})`)
  }

  async #stop(now: boolean): Promise<void> {
    if (now) {
      for (const p of this.#pools.values()) p.pool.terminate()
      this.#markStopped(1)
      return
    }
    this.#stopping = true
    const report = setInterval(() => {
      this.#opts.log(`multiproc worker: still running ${this.#running.size} jobs (${[...this.#running.keys()].join(', ')})`)
    }, 10_000)
    report.unref()
    const graceful = (async () => {
      try {
        await this.#worker.close()
      } catch (err) {
        this.#warn(`closing the worker: ${(err as Error).message}`)
      }
      for (const p of this.#pools.values()) p.pool.close()
      await Promise.all([...this.#pools.values()].map((p) => p.pool.join()))
      await Promise.all([this.#replies.quit().catch(() => {}), this.#subscriber.quit().catch(() => {})])
    })()
    // Once no job runs, nothing is left to lose: a close that still has not returned after
    // STUCK_AFTER_IDLE_MS (a connection that does not answer) must not keep the host alive.
    let idleSince: number | undefined
    let watch: NodeJS.Timeout | undefined
    const stuck = new Promise<'stuck'>((resolve) => {
      watch = setInterval(() => {
        if (this.#running.size > 0) idleSince = undefined
        else if ((idleSince ??= Date.now()) + STUCK_AFTER_IDLE_MS <= Date.now()) resolve('stuck')
      }, 500)
      watch.unref()
    })
    const how = await Promise.race([graceful.then(() => 'done' as const), stuck])
    clearInterval(watch)
    clearInterval(report)
    if (how === 'stuck') {
      this.#opts.log('multiproc worker: no job runs, but closing does not end: exiting anyway')
      for (const p of this.#pools.values()) p.pool.terminate()
    }
    this.#markStopped(0)
  }

  #warn(line: string): void {
    if (!this.#stopping) this.#opts.log(`multiproc worker: ${line}`)
  }

  // ---- jobs ----

  #cancel(jobId: string): void {
    const running = this.#running.get(jobId)
    if (running) {
      running.abort()
      return
    }
    const now = Date.now()
    this.#cancelled.set(jobId, now)
    for (const [id, at] of this.#cancelled) {
      if (now - at < CANCEL_MEMORY_MS) break
      this.#cancelled.delete(id)
    }
  }

  async #process(job: Job): Promise<null> {
    const data = job.data as JobData
    const jobId = job.id as string
    if (data?.v !== WIRE_VERSION || typeof data.r !== 'string') {
      throw new ProtocolError(`job ${jobId} is not a multiproc ${WIRE_VERSION} chunk`)
    }
    if (this.#cancelled.delete(jobId)) return null
    const stop = new AbortController()
    this.#running.set(jobId, stop)
    let reply: Buffer
    let local: LocalPool | undefined
    try {
      const setup = data.u === undefined ? DEFAULT_SETUP : (decodePayload(data.uk ?? 0, data.u) as RemoteSetup)
      const spec = this.#allowed(data.t)
      if (setup.initializer) setup.initializer = this.#allowed(setup.initializer)
      local = this.#poolFor(setup)
      local.running++
      const chunk: RemoteChunk = {
        connection: this.#opts.connection,
        replyKey: data.r,
        replyTtl: this.#opts.replyTtl,
        jobId,
        spec,
        star: data.s,
        kind: data.k,
        payload: data.p,
      }
      // The process runs the task and sends the reply itself.
      await local.pool.apply(CHUNK_RUNNER, [chunk], { signal: stop.signal })
      return null
    } catch (err) {
      if (stop.signal.aborted) return null // the pool gave up on it
      if (err instanceof WorkerExitedError) {
        // The first death: BullMQ runs the job again, here or elsewhere.
        if (job.attemptsMade + (job.stalledCounter ?? 0) < 1) throw err
        reply = this.#reply({ j: jobId, k: ReplyKind.Exited, exitCode: err.exitCode, signal: err.signal, at: this.#at })
      } else if (err instanceof RemoteError && INIT_FAILED.test(err.message)) {
        reply = this.#reply({ j: jobId, k: ReplyKind.InitFailed }, recordOfRevived(err.cause))
      } else if (err instanceof RemoteError) {
        reply = this.#reply({ j: jobId, k: ReplyKind.Failed }, { record: recordOfRevived(err.cause), wrapped: false } satisfies FailedBody)
      } else {
        reply = this.#reply({ j: jobId, k: ReplyKind.Failed }, { record: toRecord(err), wrapped: false } satisfies FailedBody)
      }
    } finally {
      this.#running.delete(jobId)
      if (local) this.#done(local)
    }
    await this.#send(data.r, reply)
    return null
  }

  /** A job BullMQ failed for good without running it here: its lock expired twice (its hosts died). */
  #failed(job: Job | undefined, err: Error): void {
    const data = job?.data as JobData | undefined
    if (!job || data?.v !== WIRE_VERSION) return
    const final = err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1)
    if (!final) return
    const jobId = job.id as string
    const stalled = /stalled/.test(err.message)
    const reply = stalled
      ? this.#reply({ j: jobId, k: ReplyKind.Exited, exitCode: null, signal: null, stalled: true })
      : err instanceof WorkerExitedError
        ? this.#reply({ j: jobId, k: ReplyKind.Exited, exitCode: err.exitCode, signal: err.signal, at: this.#at })
        : this.#reply({ j: jobId, k: ReplyKind.Failed }, { record: toRecord(err), wrapped: false } satisfies FailedBody)
    void this.#send(data.r, reply)
  }

  #reply(header: ReplyHeader, body?: unknown): Buffer {
    try {
      return encodeReply(header, body)
    } catch (err) {
      // What the local pool returned cannot be encoded again (it decoded it itself): say so.
      return encodeReply({ j: header.j, k: ReplyKind.Failed }, { record: toRecord(err), wrapped: false } satisfies FailedBody)
    }
  }

  async #send(key: string, reply: Buffer): Promise<void> {
    try {
      // A pipeline, not a transaction: the pool's blocking pop wakes at the push.
      const results = await this.#replies.pipeline().lpush(key, reply).expire(key, this.#opts.replyTtl).exec()
      const failed = results?.find(([err]) => err)?.[0]
      if (failed) throw failed
    } catch (err) {
      this.#warn(`cannot send a reply to ${key}: ${(err as Error).message}`)
    }
  }

  // ---- targets and local pools ----

  /** The target as this host may run it, or a TargetError saying why not. */
  #allowed(spec: TargetSpec): TargetSpec {
    if (spec.kind === 'export') return { ...spec, module: this.#module(spec.module) }
    if (!this.#opts.allowSource) {
      throw new TargetError(
        `${spec.name || 'a function'} was sent as source, which this worker does not run: export it from a module the worker lists in --modules (or start the worker with --allow-source)`,
      )
    }
    return { ...spec, modules: spec.modules.map((m) => this.#module(m)) }
  }

  #module(href: string): string {
    const known = this.#modules.get(href) ?? this.#modules.get(`name:${basename(safePath(href))}`)
    if (known) return known
    if (this.#opts.allowSource) return href
    throw new TargetError(`${href} is not among this worker's --modules (${this.#opts.modules.join(', ') || 'none'})`)
  }

  #poolFor(setup: RemoteSetup): LocalPool {
    const key = JSON.stringify([setup.initializer, setup.maxTasks, setup.initargs.length === 0 ? null : encodeKey(setup.initargs)])
    let local = this.#pools.get(key)
    if (!local) {
      const pool = new Pool({
        processes: this.#opts.processes,
        modules: [...new Set(this.#modules.values())],
        initializer: setup.initializer ? targetOf(setup.initializer) : undefined,
        initargs: setup.initargs,
        maxTasksPerChild: setup.maxTasks > 0 ? setup.maxTasks : undefined,
      })
      local = { pool, running: 0, idle: undefined }
      this.#pools.set(key, local)
    }
    clearTimeout(local.idle)
    local.idle = undefined
    return local
  }

  /** A job of that pool ended; a pool of another setup than the default closes once unused for a while. */
  #done(local: LocalPool): void {
    local.running--
    if (local.running > 0 || this.#stopping) return
    const key = [...this.#pools].find(([, p]) => p === local)?.[0]
    if (key === undefined || key === JSON.stringify([null, 0, null])) return
    local.idle = setTimeout(() => {
      if (local.running > 0) return
      this.#pools.delete(key)
      local.pool.close()
    }, SETUP_IDLE_MS)
    local.idle.unref()
  }
}

function targetOf(spec: TargetSpec): Target {
  return { [describedTarget]: spec } as unknown as Target
}

function encodeKey(initargs: unknown[]): string {
  try {
    return JSON.stringify(initargs)
  } catch {
    return String(initargs.length)
  }
}

function safePath(href: string): string {
  try {
    return new URL(href).pathname
  } catch {
    return href
  }
}

/** BullMQ hands its `url` to ioredis, which reads a Unix socket only as a path. */
function redisUrl(url: string): string {
  return url.startsWith('unix://') ? url.slice('unix://'.length) : url
}

/**
 * The record of an error this host revived from its own pool's record: the same record again.
 * Revived errors of classes unknown here are `Error`s carrying the class name: the name is kept.
 */
function recordOfRevived(err: unknown, depth = 0): ErrorRecord {
  const record = toRecord(err)
  if (err instanceof Error) {
    if (Object.hasOwn(err, 'name')) record.name = err.name
    if (record.props && 'thrown' in record.props) {
      record.thrown = record.props.thrown
      delete record.props.thrown
      if (Object.keys(record.props).length === 0) record.props = undefined
    }
    if (err.cause !== undefined && depth < 8) record.cause = recordOfRevived(err.cause, depth + 1)
  }
  return record
}
