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
  /** The start method this context's processes and pools use. */
  readonly startMethod: StartMethod
  /** The context's start method, as Python's `ctx.get_start_method()`. */
  getStartMethod(): StartMethod
  /** `Process`, started with this context's method unless its options name another. */
  readonly Process: typeof Process
  /** `Pool`, whose workers start with this context's method unless its options name another. */
  readonly Pool: typeof Pool
  /** The package's `Queue` (queues do not depend on the start method). */
  readonly Queue: typeof Queue
  /** The package's `SimpleQueue`. */
  readonly SimpleQueue: typeof SimpleQueue
  /** The package's `JoinableQueue`. */
  readonly JoinableQueue: typeof JoinableQueue
  /** The package's `Pipe`. */
  readonly Pipe: typeof Pipe
  /** The package's `Lock`. */
  readonly Lock: typeof Lock
  /** The package's `RLock`. */
  readonly RLock: typeof RLock
  /** The package's `Semaphore`. */
  readonly Semaphore: typeof Semaphore
  /** The package's `BoundedSemaphore`. */
  readonly BoundedSemaphore: typeof BoundedSemaphore
  /** The package's `Event`. */
  readonly Event: typeof Event
  /** The package's `Condition`. */
  readonly Condition: typeof Condition
  /** The package's `Barrier`. */
  readonly Barrier: typeof Barrier
  /** The package's `Value`. */
  readonly Value: typeof Value
  /** The package's `RawArray`. */
  readonly RawArray: typeof RawArray
  /** The package's `SharedArray`. */
  readonly SharedArray: typeof SharedArray
  /** The package's `SharedMemory`. */
  readonly SharedMemory: typeof SharedMemory
  /** The package's `activeChildren()`. */
  readonly activeChildren: typeof activeChildren
  /** The package's `currentProcess()`. */
  readonly currentProcess: typeof currentProcess
  /** The package's `parentProcess()`. */
  readonly parentProcess: typeof parentProcess
  /** The package's `cpuCount()`. */
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
