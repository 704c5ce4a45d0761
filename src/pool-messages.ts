/**
 * What a pool and its local workers say to each other through a worker's inbox and reply
 * channel, and what a worker is started with. Apart from `pool-worker.ts`, which only workers
 * load.
 */
import type { ErrorRecord } from './remote-error.js'
import type { TargetSpec } from './target.js'

/**
 * parent → worker: `[chunkId, targetId, items, star, spec, handles]`. `spec` comes the first time
 * a target is used; `handles` is null unless the items hold handles, else the parent's numbers of
 * the descriptors sent for them over the carrier socket just before (empty: all sent earlier).
 */
export type TaskMessage = [
  chunkId: number,
  targetId: number,
  items: unknown[],
  star: boolean,
  spec: TargetSpec | null,
  handles: number[] | null,
]

/** worker → parent, tagged by the first element. */
export enum Reply {
  Ready = 0,
  Done = 1,
  Failed = 2,
  InitFailed = 3,
  /** The worker lacks the chunk's target or a handle (the message that brought it was taken back): send it again. */
  Unknown = 5,
  /** Put by the pool itself after it saw the worker exit: everything the worker sent is before it. */
  Exited = 4,
  /** A task message taken whole that the worker cannot decode: it answers the oldest chunk it holds. */
  Undecodable = 6,
}
/** A worker's reply (and the pool's own `Exited` marker), by its `Reply` tag. */
export type ReplyMessage =
  | [Reply.Ready, worker: number, pid: number]
  | [Reply.Done, worker: number, chunkId: number, values: unknown[]]
  | [Reply.Failed, worker: number, chunkId: number, error: ErrorRecord, wrapped: boolean]
  | [Reply.InitFailed, worker: number, error: ErrorRecord]
  | [Reply.Exited, worker: number]
  | [Reply.Unknown, worker: number, chunkId: number]
  | [Reply.Undecodable, worker: number, error: ErrorRecord]

/** What a worker is started with (its argument beside its inbox and reply channel). */
export interface WorkerSetup {
  index: number
  initializer: TargetSpec | null
  initargs: unknown[]
  /** Chunks to run before exiting; 0: no limit. */
  maxTasks: number
  /** Where the pool's serializer is exported, if it has one. */
  serializer: { module: string; name: string } | null
  /** The worker's end of the descriptor socket (an `FdCarrier` in the parent). */
  carrier: unknown
}
