/**
 * Contexts (Python's `multiprocessing.get_context`): the package's API with `Process` and
 * `Pool` bound to one start method, so that a library can pick its method without changing
 * the program's (`setStartMethod`).
 */
import { Pipe } from './connection.js'
import { Pool, type PoolOptions } from './pool.js'
import { activeChildren, cpuCount, currentProcess, Process, type ProcessOptions, parentProcess } from './process.js'
import { JoinableQueue, Queue, SimpleQueue } from './queue.js'
import { SharedMemory } from './shared-memory.js'
import { RawArray, SharedArray, Value } from './sharedctypes.js'
import { checkStartMethod, getStartMethod, type StartMethod } from './start-method.js'
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from './synchronize.js'

/** The API bound to one start method: its `Process` and `Pool` start children that way. */
export interface Context {
  readonly startMethod: StartMethod
  /** The context's start method, as Python's `ctx.get_start_method()`. */
  getStartMethod(): StartMethod
  readonly Process: typeof Process
  readonly Pool: typeof Pool
  readonly Queue: typeof Queue
  readonly SimpleQueue: typeof SimpleQueue
  readonly JoinableQueue: typeof JoinableQueue
  readonly Pipe: typeof Pipe
  readonly Lock: typeof Lock
  readonly RLock: typeof RLock
  readonly Semaphore: typeof Semaphore
  readonly BoundedSemaphore: typeof BoundedSemaphore
  readonly Event: typeof Event
  readonly Condition: typeof Condition
  readonly Barrier: typeof Barrier
  readonly Value: typeof Value
  readonly RawArray: typeof RawArray
  readonly SharedArray: typeof SharedArray
  readonly SharedMemory: typeof SharedMemory
  readonly activeChildren: typeof activeChildren
  readonly currentProcess: typeof currentProcess
  readonly parentProcess: typeof parentProcess
  readonly cpuCount: typeof cpuCount
}

const contexts = new Map<StartMethod, Context>()

function makeContext(method: StartMethod): Context {
  /** A `Process` started with this context's method unless its options name another. */
  class ContextProcess extends Process {
    constructor(opts: ProcessOptions) {
      super(typeof opts === 'object' && opts !== null && opts.startMethod === undefined ? { ...opts, startMethod: method } : opts)
    }
  }
  /** A `Pool` whose workers are started with this context's method unless its options name another. */
  class ContextPool extends Pool {
    constructor(opts: PoolOptions = {}) {
      super(typeof opts === 'object' && opts !== null && opts.startMethod == null ? { ...opts, startMethod: method } : opts)
    }
  }
  return Object.freeze({
    startMethod: method,
    getStartMethod: () => method,
    Process: ContextProcess,
    Pool: ContextPool,
    Queue,
    SimpleQueue,
    JoinableQueue,
    Pipe,
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Value,
    RawArray,
    SharedArray,
    SharedMemory,
    activeChildren,
    currentProcess,
    parentProcess,
    cpuCount,
  })
}

/**
 * The API bound to `method` (default: the current start method, {@link getStartMethod}). An
 * unknown method is a `RangeError` (`ERR_INVALID_ARG_VALUE`), as Python's `ValueError`.
 */
export function getContext(method?: StartMethod): Context {
  const m = method === undefined ? getStartMethod() : checkStartMethod('method', method)
  let ctx = contexts.get(m)
  if (!ctx) {
    ctx = makeContext(m)
    contexts.set(m, ctx)
  }
  return ctx
}
