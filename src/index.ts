/**
 * multiproc: Python's multiprocessing for Node.js. Real processes, shared-memory queues and
 * pipes moved by a Rust core, and an API a Python user recognises.
 */
export { Process, activeChildren, cpuCount, currentProcess, parentProcess } from './process.js'
export type { ProcessOptions, ParentProcess } from './process.js'
export { Queue, SimpleQueue, JoinableQueue } from './queue.js'
export type { QueueOptions, BlockingOptions } from './queue.js'
export { Pipe, Connection } from './connection.js'
export type { PipeOptions } from './connection.js'
export type { Serializer } from './serialize.js'
export type { Target, TargetFunction } from './target.js'
export type { WaitOptions } from './wait.js'
export {
  AbortError,
  BrokenBarrierError,
  ClosedError,
  EOFError,
  Empty,
  Full,
  InvalidStateError,
  MultiprocError,
  OwnerDiedError,
  ProcessError,
  ProtocolError,
  RemoteError,
  SerializationError,
  TargetError,
  TerminatedError,
  TimeoutError,
  WorkerExitedError,
} from './errors.js'
