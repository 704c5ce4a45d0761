/**
 * multiproc: Python's multiprocessing for Node.js. Real processes, shared-memory queues and
 * pipes moved by a Rust core, and an API a Python user recognises.
 */

export type { PipeOptions } from './connection.js'
export { Connection, Pipe } from './connection.js'
export type { Context } from './context.js'
export { getContext } from './context.js'
export type { ResourceCode } from './errors.js'
export {
  AbortError,
  AuthenticationError,
  BootstrapError,
  BrokenBarrierError,
  BrokenPipeError,
  BrokerError,
  BufferTooShort,
  ClosedError,
  Empty,
  EOFError,
  Full,
  InvalidStateError,
  ManagerError,
  MissingPeerError,
  MultiprocError,
  OSError,
  OwnerDiedError,
  ProcessError,
  ProtocolError,
  RemoteError,
  ResourceError,
  SerializationError,
  TargetError,
  TerminatedError,
  TimeoutError,
  WorkerExitedError,
} from './errors.js'
export type { Address, ClientOptions, ListenerOptions } from './listener.js'
export { Client, Listener } from './listener.js'
export type { ConnectOptions, ManagerOptions, NamedOptions, TypeRef } from './manager.js'
export { Manager } from './manager.js'
export type { ApplyOptions, CallOptions, MapAsyncOptions, MapOptions, PoolOptions, Progress } from './pool.js'
export { Pool } from './pool.js'
export type { Backend } from './pool-link.js'
export type { ResultCallbacks } from './pool-result.js'
export { AsyncResult, IMapIterator } from './pool-result.js'
export type { ParentProcess, ProcessOptions, RequiredArgs } from './process.js'
export { activeChildren, CurrentProcess, cpuCount, currentProcess, Process, parentProcess } from './process.js'
export type { Proxied } from './proxy.js'
export {
  ArrayProxy,
  BarrierProxy,
  BaseProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  LockProxy,
  NamespaceProxy,
  QueueProxy,
  SemaphoreProxy,
  ValueProxy,
} from './proxy.js'
export type { BlockingOptions, QueueOptions } from './queue.js'
export { JoinableQueue, Queue, SimpleQueue } from './queue.js'
export type { Serializer } from './serialize.js'
export type { SharedMemoryOptions } from './shared-memory.js'
export { SharedMemory } from './shared-memory.js'
export type { ArrayOf, TypeCode, ValueOf } from './sharedctypes.js'
export { RawArray, RawValue, SharedArray, SharedValue, SynchronizedArray, Value } from './sharedctypes.js'
export type { SocketConnectionOptions } from './socket-connection.js'
export { SocketConnection } from './socket-connection.js'
export type { StartMethod } from './start-method.js'
export { getAllStartMethods, getStartMethod, setForkserverPreload, setStartMethod } from './start-method.js'
export type { AcquireSyncOptions, BarrierOptions } from './synchronize.js'
export { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from './synchronize.js'
export type { ExportedFunctionName, ExportOf, ModuleTarget, Target, TargetFunction } from './target.js'
export type { WaitOptions } from './wait.js'
export type { Waitable } from './wait-ready.js'
export { wait } from './wait-ready.js'
