/**
 * The seam between the pool's scheduler and its workers. The scheduler decides what runs where;
 * a link moves chunks to one worker and its replies back. A backend makes links: local processes
 * over shared-memory queues (`pool-local-link.ts`) today, remote workers behind a job queue
 * later. The scheduler reaches workers through nothing else, so every backend runs the same pool.
 */
import type { SerializationError } from './errors.js'
import type { WorkerSetup } from './pool-messages.js'
import type { Process } from './process.js'
import type { ErrorRecord } from './remote-error.js'
import type { Serializer } from './serialize.js'
import type { StartMethod } from './start-method.js'
import type { TargetSpec } from './target.js'

/** One chunk of one call, as the scheduler hands it to a link. */
export interface ChunkMessage {
  readonly chunkId: number
  readonly targetId: number
  readonly items: unknown[]
  /** Each item is an array of arguments (`starmap`). */
  readonly star: boolean
  /** How to find the target: given the first time this worker gets it, else null. */
  readonly spec: TargetSpec | null
}

/** How a worker ended: its exit code, or the name of the signal that killed it. */
export interface ExitStatus {
  readonly exitCode: number | null
  readonly signal: string | null
}

/**
 * What a link reports about its worker. Replies come in the order the worker sent them, and a
 * worker answers chunks in the order they were sent (what `undecodable` relies on).
 */
export interface LinkEvents {
  /** The worker is up and its initializer ran: it can run chunks. */
  ready(): void
  done(chunkId: number, values: unknown[]): void
  /** `wrapped`: the task threw it (the call sees a `RemoteError`); else the worker did (the error itself). */
  failed(chunkId: number, error: ErrorRecord, wrapped: boolean): void
  /** The worker lacks the chunk's target or one of its handles (what brought them was taken back): send it again. */
  unknown(chunkId: number): void
  /** The initializer failed: no worker of this pool can run anything. */
  initFailed(error: ErrorRecord): void
  /** A reply arrived that cannot be decoded here: the oldest unanswered chunk's, or before `ready` the ready reply. */
  undecodable(error: SerializationError): void
  /** A chunk whose sending had to wait could not be sent after all; nothing of it reached the worker. */
  unsent(chunkId: number, error: unknown): void
  /** The worker takes no more work: it exited, or its channel broke and the link is killing it. `exited` follows. */
  lost(): void
  /** The worker could not be started at all; nothing else follows. */
  startFailed(error: unknown): void
  /**
   * The worker is gone and every reply it sent has been reported. `unstarted`: the chunks it never
   * took (they can run elsewhere); the others it held were running or queued where none can reach.
   */
  exited(status: ExitStatus, unstarted: number[]): void
}

/**
 * How the pool's worker processes are started, for a backend that starts them itself
 * (`configuresProcesses`); a pool on another backend is refused these options.
 */
export interface WorkerProcessOptions {
  /** Node flags, already checked (none that would replace the program); undefined: the parent's, filtered. */
  readonly execArgv: readonly string[] | undefined
  /** Variables added to the parent's environment. */
  readonly env: Readonly<Record<string, string>> | undefined
  /** The V8 heap limit (old generation) of each worker, in MiB (`--max-old-space-size`). */
  readonly maxOldSpaceSize: number | undefined
}

/** What the scheduler gives a backend to start one worker. */
export interface LinkStart {
  /** The worker's number in its pool (1, 2, …; replacements get new ones). */
  readonly index: number
  /** What every worker of the pool runs with. */
  readonly setup: WorkerConfig
  /** The pool's serializer, for the parent's side of the channels. */
  readonly serializer: Serializer | undefined
  /** How to start the worker's process (all undefined unless the backend `configuresProcesses`). */
  readonly processOptions: WorkerProcessOptions
  /** How a worker that is a local process is started (default: the program's start method). */
  readonly startMethod?: StartMethod | undefined
  readonly events: LinkEvents
  /**
   * Whether the scheduler wants this worker's replies now. A link receives only while it does
   * (and until its exit is reported), so that an idle pool holds no event loop open.
   */
  wantsReplies(): boolean
  /** How many of the pool's workers have chunks in flight (waiting on several, a link should not spin). */
  busyWorkers(): number
}

/** The worker's setup, as the pool gives it (the link adds what only it knows). */
export type WorkerConfig = Omit<WorkerSetup, 'index' | 'carrier'>

/** One worker, as the scheduler sees it. */
export interface WorkerLink {
  /** For messages: `PoolWorker-3`. */
  readonly name: string
  /** The worker's process id, where it has one the parent can name. */
  readonly pid: number | null
  /** The local process behind the link (listed in `pool.workers`), or null for a remote worker. */
  readonly process: Process | null
  /**
   * Sends a chunk (and the handles in its items, where the backend carries them). Throws when it
   * cannot be sent (nothing reached the worker); a send that has to wait reports failure as `unsent`.
   */
  send(chunk: ChunkMessage): void
  /** Takes back the chunks the worker has not started; their ids, oldest first (none if it cannot). */
  takeBack(): number[]
  /** The scheduler's want of replies may have changed: receive now if `wantsReplies()` says so. */
  listen(): void
  /** No more work comes: the worker exits once it has run what it holds. */
  retire(): void
  /** Ends the worker now; `exited` follows (killing one that has not started yet takes effect once it has). */
  kill(): void
  /** Resolves once the worker has exited, keeping this process alive meanwhile. */
  join(): Promise<void>
}

/** Makes the links of a pool: where its workers run, and how chunks reach them. */
export interface Backend {
  /** For messages and tests: `local`. */
  readonly name: string
  /** Handles (a Queue, a Lock, …) in task arguments reach the workers. */
  readonly carriesHandles: boolean
  /** `takeBack` can return chunks a worker has not started (else a slow task holds up those behind it). */
  readonly canTakeBack: boolean
  /** The workers are processes of this machine, listed in `pool.workers`. */
  readonly localProcesses: boolean
  /**
   * The backend starts each worker's process itself, so the pool's `execArgv`, `env` and
   * `maxOldSpaceSize` reach it (`LinkStart.processOptions`). A backend without it (workers
   * started elsewhere, by `npx multiproc worker` say) makes the pool refuse those options.
   */
  readonly configuresProcesses: boolean
  /**
   * The least number of tasks `map` puts in a chunk when no `chunksize` is given (default 1):
   * where sending a chunk costs a round trip to a server, a chunk must carry enough work.
   */
  readonly minChunksize?: number
  /**
   * Starts one worker. Throws when it cannot even begin (no descriptors or memory left for it).
   * @internal The pool calls it; a backend comes from `bullmq()` of `multiproc/bullmq`, or is the default.
   */
  start(worker: LinkStart): WorkerLink
}
