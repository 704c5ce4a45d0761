/**
 * The error classes of multiproc. Each has a stable `code`; native errors arrive with that
 * `code` (and an errno's name as their `cause`'s message, where the OS gave one) and are turned
 * into the matching class by {@link fromNative}.
 */

/** The base class of every error class of multiproc; `code` tells them apart. */
export class MultiprocError extends Error {
  /** A stable identifier of the error's kind (`ERR_EMPTY`, `ERR_TIMEOUT`, …), for code to test. */
  readonly code: string = 'ERR_MULTIPROC'
  constructor(message?: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

function define<C extends string>(code: C) {
  return class extends MultiprocError {
    /** This class's stable code. */
    override readonly code: C = code
  }
}

/** `getNowait()` / `get({ block: false })` on an empty queue. */
export class Empty extends define('ERR_EMPTY') {}
/** `putNowait()` / `put({ block: false })` on a full queue. */
export class Full extends define('ERR_FULL') {}
/** A timed wait ran out. */
export class TimeoutError extends define('ERR_TIMEOUT') {}
/** A wait was cancelled through its `AbortSignal`. */
export class AbortError extends MultiprocError {
  /** `ABORT_ERR`, the code of Node's own abort errors. */
  override readonly code = 'ABORT_ERR'
}
/** Nothing more will arrive: the queue is closed and drained, or the pipe's peer is gone. */
export class EOFError extends define('ERR_EOF') {}
/** A send on a pipe whose other end is closed (every copy of it), once the pipe is full. */
export class BrokenPipeError extends define('ERR_BROKEN_PIPE') {}
/** `recvBytesInto` got a message longer than the buffer; `data` holds the whole message. */
export class BufferTooShort extends MultiprocError {
  /** `ERR_BUFFER_TOO_SHORT`. */
  override readonly code = 'ERR_BUFFER_TOO_SHORT'
  constructor(
    message: string,
    /** The whole message that did not fit. */
    readonly data: Buffer,
  ) {
    super(message)
  }
}
/** A task failed in another process; `cause` is the revived error. */
export class RemoteError extends define('ERR_REMOTE') {}
/** A worker process died while running a task. */
export class WorkerExitedError extends MultiprocError {
  /** `ERR_WORKER_EXITED`. */
  override readonly code = 'ERR_WORKER_EXITED'
  constructor(
    message: string,
    /** The worker's exit code, or `null` when a signal ended it. */
    readonly exitCode: number | null,
    /** The signal that ended the worker (`'SIGKILL'`, `'SIGABRT'`, …), or `null` when it exited. */
    readonly signal: string | null,
  ) {
    super(message)
  }
}
/** The function a child should run cannot be found or compiled there. */
export class TargetError extends define('ERR_TARGET') {}
/** A value cannot be serialised (a function, a symbol, …) or deserialised. */
export class SerializationError extends define('ERR_SERIALIZATION') {}
/** Shared memory that does not hold what it should: corrupt, hostile or foreign. */
export class ProtocolError extends define('ERR_PROTOCOL') {}
/** A barrier was broken (aborted, or a wait timed out). */
export class BrokenBarrierError extends define('ERR_BROKEN_BARRIER') {}
/** A lock's owner died while holding it. */
export class OwnerDiedError extends define('ERR_OWNER_DIED') {}
/** Starting or controlling a process failed. */
export class ProcessError extends define('ERR_PROCESS') {}
/** Use of a closed Queue, Connection, Process or Pool. */
export class ClosedError extends define('ERR_CLOSED') {}
/** Tasks still pending when a Pool was terminated. */
export class TerminatedError extends define('ERR_TERMINATED') {}
/** The job queue's server (Redis, for `multiproc/bullmq`) cannot be reached, or refused what was asked. */
export class BrokerError extends define('ERR_BROKER') {}
/** An optional peer dependency a feature needs is not installed (`bullmq` and `ioredis` for `multiproc/bullmq`). */
export class MissingPeerError extends define('ERR_MISSING_PEER') {}
/** An operation not allowed in the object's current state. */
export class InvalidStateError extends define('ERR_INVALID_STATE') {}

/** The codes of {@link ResourceError}, one per resource. */
export type ResourceCode = 'ERR_NO_DESCRIPTORS' | 'ERR_NO_MEMORY' | 'ERR_NO_SPACE' | 'ERR_NO_PROCESSES'

/**
 * The system ran out of something: descriptors (`EMFILE`/`ENFILE`: `ERR_NO_DESCRIPTORS`), memory
 * (`ENOMEM`: `ERR_NO_MEMORY`), space in `/dev/shm` (`ENOSPC`: `ERR_NO_SPACE`) or processes
 * (`EAGAIN` from fork: `ERR_NO_PROCESSES`). Nothing was created; closing objects or raising the
 * limit (`ulimit -n`, `ulimit -u`, the container's `--shm-size`) helps.
 */
export class ResourceError extends MultiprocError {
  /** Which resource ran out. */
  override readonly code: ResourceCode
  /** The system's error name: `EMFILE`, `ENFILE`, `ENOMEM`, `ENOSPC` or `EAGAIN`. */
  readonly errno: string
  constructor(code: ResourceCode, errno: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.errno = errno
  }
}

/** Another refusal of the system (`ERR_OS`), or shared memory that cannot be made (`ERR_SHARED_MEMORY`). */
export class OSError extends MultiprocError {
  /** `ERR_SHARED_MEMORY` when shared memory could not be made, else `ERR_OS`. */
  override readonly code: 'ERR_OS' | 'ERR_SHARED_MEMORY'
  /** The system's error name (`EACCES`, `EPERM`, …) when it gave a known one. */
  readonly errno: string | undefined
  constructor(code: 'ERR_OS' | 'ERR_SHARED_MEMORY', message: string, options?: { cause?: unknown; errno?: string | undefined }) {
    super(message, options)
    this.code = code
    this.errno = options?.errno
  }
}

/**
 * A process or pool started while this process is still starting up as a child: the module
 * being imported to find the child's target starts children itself, which would recurse without
 * end (Python's "bootstrapping phase" error). Guard such code with `if (!parentProcess())`, or
 * move it out of the module that holds the target.
 */
export class BootstrapError extends define('ERR_BOOTSTRAP') {}

/** A `TypeError` with a Node-style code. */
export function typeError(message: string): TypeError & { code: string } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' })
}

/** A `RangeError` with a Node-style code. */
export function rangeError(message: string): RangeError & { code: string } {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' })
}

/** An error of the system kind Node's `fs` throws (`code` such as `EEXIST`, `ENOENT`). */
function systemError(message: string, code: string): Error & { code: string } {
  return Object.assign(new Error(`${code}: ${message}`), { code })
}

/** An error as the binding throws it: a stable `code`, and an errno's name in its cause. */
interface NativeError extends Error {
  code?: unknown
  cause?: unknown
}

/** The errno's name the binding attached to `err`, if any. */
function errnoOf(err: NativeError): string | undefined {
  const name = err.cause instanceof Error ? err.cause.message : undefined
  return name && /^E[A-Z0-9]+$/.test(name) ? name : undefined
}

/**
 * Maps an error thrown by the binding to its class, by its `code`. `closed` picks the class for
 * `ERR_CLOSED`, which means EOF to a receiver, a broken pipe to a pipe's sender, use-after-close
 * to a queue's.
 */
export function fromNative(err: unknown, closed: 'eof' | 'closed' | 'broken' = 'closed'): unknown {
  if (!(err instanceof Error) || err instanceof MultiprocError) return err
  const native: NativeError = err
  const { message } = native
  const code = typeof native.code === 'string' ? native.code : undefined
  const errno = errnoOf(native)
  switch (code) {
    case 'ERR_CLOSED':
      if (closed === 'eof') return new EOFError(message)
      return closed === 'broken' ? new BrokenPipeError(message) : new ClosedError(message)
    case 'ERR_PROTOCOL':
      return new ProtocolError(message)
    case 'ERR_TIMEOUT':
      return new TimeoutError(message)
    case 'ERR_INVALID_STATE':
      return new InvalidStateError(message)
    case 'ERR_MESSAGE_TOO_LARGE':
      return Object.assign(rangeError(message), { code: 'ERR_MESSAGE_TOO_LARGE' })
    case 'ERR_INVALID_ARG':
    case 'ERR_OUT_OF_RANGE':
      return rangeError(message)
    case 'ERR_INVALID_ARG_VALUE':
      return Object.assign(new TypeError(message), { code })
    case 'ERR_EXISTS':
      return systemError(message, 'EEXIST')
    case 'ERR_NOT_FOUND':
      return systemError(message, 'ENOENT')
    case 'ERR_PERMISSION':
      return systemError(message, 'EACCES')
    case 'ERR_BROKEN_BARRIER':
      return new BrokenBarrierError(message)
    case 'ERR_NO_DESCRIPTORS':
    case 'ERR_NO_MEMORY':
    case 'ERR_NO_SPACE':
    case 'ERR_NO_PROCESSES':
      return new ResourceError(code, errno ?? '', errno ? `${errno}: ${message}` : message, { cause: err })
    case 'ERR_OS':
    case 'ERR_SHARED_MEMORY':
      return new OSError(code, errno ? `${errno}: ${message}` : message, { cause: err, errno })
    case 'ERR_INTERNAL':
    case 'ERR_FORKSERVER':
    case 'ERR_FORKSERVER_DOWN':
      return new ProcessError(message, { cause: err })
    default:
      // Node-API's own refusals (a value of the wrong type reached the binding): the package
      // validates arguments first, so this is a value it let through.
      return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE', cause: err })
  }
}

/** The peer of a `Listener`/`Client` or manager connection does not hold the same authkey. */
export class AuthenticationError extends define('ERR_AUTHENTICATION') {}
/** A manager is gone (its process died, its server closed): calls pending on it and later ones fail. */
export class ManagerError extends define('ERR_MANAGER_GONE') {}
