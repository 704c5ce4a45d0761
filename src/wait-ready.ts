/**
 * `wait(objects, timeout)`: Python's `multiprocessing.connection.wait`. Resolves with the objects
 * that are ready: a Connection (shared-memory or socket) with a message or at its end, a Queue
 * with an item or closed, a Process that has exited, a Listener with a connection to accept.
 * An empty array on timeout.
 */
import { Connection } from './connection.js'
import { AbortError, typeError } from './errors.js'
import { Listener } from './listener.js'
import { Process } from './process.js'
import { Queue } from './queue.js'
import { SocketConnection } from './socket-connection.js'
import { deadlineOf, MAX_TIMER_MS, type WaitOptions, waitOptions } from './wait.js'

/** What `wait` can watch. */
export type Waitable = Connection | SocketConnection | Queue | Process | Listener

/** Resolves when `obj` is ready, or when `signal` aborts (then with nothing to say). */
function whenReady(obj: Waitable, signal: AbortSignal): Promise<unknown> {
  if (obj instanceof Connection || obj instanceof SocketConnection) {
    if (obj.closed) return Promise.resolve()
    return obj.poll({ timeout: MAX_TIMER_MS, signal })
  }
  if (obj instanceof Queue) return obj.whenReadable(signal)
  if (obj instanceof Process) {
    if (!obj.isAlive()) return Promise.resolve()
    return obj.join({ signal })
  }
  return obj.whenPending(signal)
}

/** Whether `obj` is ready now (a quick check, no waiting). */
async function readyNow(obj: Waitable): Promise<boolean> {
  if (obj instanceof Connection || obj instanceof SocketConnection) return obj.closed || obj.poll()
  if (obj instanceof Queue) return obj.readableNow()
  if (obj instanceof Process) return !obj.isAlive()
  return obj.pending > 0 || obj.closed
}

function check(obj: unknown): Waitable {
  if (
    obj instanceof Connection ||
    obj instanceof SocketConnection ||
    obj instanceof Queue ||
    obj instanceof Process ||
    obj instanceof Listener
  ) {
    if (obj instanceof Process && obj.pid === null) throw typeError('wait() takes started processes only')
    return obj
  }
  throw typeError('wait() takes Connections, Queues, Processes and Listeners')
}

/**
 * Waits until at least one of `objects` is ready, or `timeout` ms pass (no timeout: for ever);
 * resolves with every one that is ready then, in the order given (`[]` on timeout).
 */
export async function wait<T extends Waitable>(objects: Iterable<T>, timeout?: number | WaitOptions): Promise<T[]> {
  if (objects === null || typeof (objects as Iterable<T>)?.[Symbol.iterator] !== 'function')
    throw typeError('wait() takes an iterable of objects')
  const list = [...objects].map(check) as T[]
  const o = waitOptions(timeout)
  const deadline = deadlineOf(o.timeout)
  const collect = async () => {
    const flags = await Promise.all(list.map(readyNow))
    return list.filter((_, i) => flags[i])
  }
  const first = await collect()
  if (first.length > 0 || list.length === 0) return first
  if (deadline !== undefined && deadline <= performance.now()) return []
  const ac = new AbortController()
  const onAbort = () => ac.abort()
  o.signal?.addEventListener('abort', onAbort, { once: true })
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<void>((resolve) => {
    if (deadline !== undefined) timer = setTimeout(resolve, Math.max(0, deadline - performance.now()))
  })
  try {
    await Promise.race([timedOut, ...list.map((obj) => whenReady(obj, ac.signal).catch(() => {}))])
  } finally {
    if (timer) clearTimeout(timer)
    ac.abort()
    o.signal?.removeEventListener('abort', onAbort)
  }
  if (o.signal?.aborted) throw new AbortError('wait was aborted', { cause: o.signal.reason })
  return collect()
}
