/**
 * Errors that cross a process boundary. A worker turns what a task threw into a record of plain
 * data (class name, message, stack, `code`, own `cause`, other own data properties); the parent
 * revives it as an error of the same built-in class, or an `Error` carrying the class's name,
 * with the remote stack.
 */
import * as errors from './errors.js'

/** An error as plain data. `thrown` holds a non-Error value that was thrown. */
export interface ErrorRecord {
  name: string
  message: string
  stack?: string | undefined
  code?: unknown
  cause?: ErrorRecord | undefined
  props?: Record<string, unknown> | undefined
  /** An AggregateError's errors. */
  errors?: ErrorRecord[] | undefined
  thrown?: unknown
}

const MAX_DEPTH = 8
const BUILT_IN: Record<string, new (message?: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
}
/** multiproc's own classes whose constructor takes just a message. */
const OURS: Record<string, new (message: string) => Error> = {
  TargetError: errors.TargetError,
  SerializationError: errors.SerializationError,
  TimeoutError: errors.TimeoutError,
  ClosedError: errors.ClosedError,
  EOFError: errors.EOFError,
  ProtocolError: errors.ProtocolError,
  InvalidStateError: errors.InvalidStateError,
  BrokenBarrierError: errors.BrokenBarrierError,
  OwnerDiedError: errors.OwnerDiedError,
  Empty: errors.Empty,
  Full: errors.Full,
  AbortError: errors.AbortError,
  AuthenticationError: errors.AuthenticationError,
  ManagerError: errors.ManagerError,
}
const SKIP = new Set(['name', 'message', 'stack', 'code', 'cause', 'errors'])

function isPrimitiveish(v: unknown): boolean {
  return v === null || ['string', 'number', 'boolean', 'bigint', 'undefined'].includes(typeof v)
}

/** In the process where `err` was thrown: the record that travels. */
export function toRecord(err: unknown, depth = 0): ErrorRecord {
  if (!(err instanceof Error)) {
    const thrown = isPrimitiveish(err) ? err : String(err)
    return { name: 'Error', message: `a non-Error value was thrown: ${String(err)}`, thrown }
  }
  const name = err.constructor?.name && err.constructor.name !== 'Object' ? err.constructor.name : err.name
  const record: ErrorRecord = { name, message: String(err.message), stack: err.stack }
  const code = (err as { code?: unknown }).code
  if (code !== undefined && isPrimitiveish(code)) record.code = code
  if (err.cause !== undefined && depth < MAX_DEPTH) record.cause = toRecord(err.cause, depth + 1)
  if (err instanceof AggregateError && Array.isArray(err.errors) && depth < MAX_DEPTH) {
    record.errors = err.errors.map((e: unknown) => toRecord(e, depth + 1))
  }
  for (const key of Object.keys(err)) {
    const value = (err as unknown as Record<string, unknown>)[key]
    if (SKIP.has(key) || !isPrimitiveish(value)) continue
    record.props ??= {}
    record.props[key] = value
  }
  return record
}

/** In the receiving process: an error like the one thrown, with the remote stack. */
export function fromRecord(record: ErrorRecord): Error {
  const Ctor = OURS[record.name] ?? BUILT_IN[record.name]
  const err =
    record.name === 'AggregateError'
      ? new AggregateError((record.errors ?? []).map(fromRecord), record.message)
      : Ctor
        ? new Ctor(record.message)
        : new Error(record.message)
  const known = Ctor !== undefined || record.name === 'AggregateError'
  if (!known) Object.defineProperty(err, 'name', { value: record.name, configurable: true, writable: true })
  if (record.props) Object.assign(err, record.props)
  if (record.code !== undefined) Object.defineProperty(err, 'code', { value: record.code, enumerable: true, configurable: true })
  if (record.cause) Object.defineProperty(err, 'cause', { value: fromRecord(record.cause), configurable: true, writable: true })
  if (record.stack !== undefined) err.stack = record.stack
  if ('thrown' in record) Object.defineProperty(err, 'thrown', { value: record.thrown, enumerable: true })
  return err
}

/** The error a pool call rejects with for a task that threw: `RemoteError` with the revived cause. */
export function remoteError(record: ErrorRecord): Error {
  const cause = fromRecord(record)
  const err = new errors.RemoteError(`${record.name}: ${record.message}`, { cause })
  if (record.stack) err.stack = `${err.name}: ${err.message}\n[remote] ${record.stack}`
  return err
}
