/**
 * Asynchronous waits on shared memory. A wait first tries at once, then lets the binding spin
 * for its learned budget, then arms the process's waker thread on the shared word and sleeps:
 * the waker rings a pipe that the event loop watches. Nothing spins while idle, no thread-pool
 * thread is parked, and the pipe holds the loop open only while some wait is armed.
 */
import net from 'node:net'

import { AbortError, rangeError, TimeoutError, typeError } from './errors.js'
import { native } from './native.js'

/** Options of every asynchronous wait: a deadline and a way to cancel it. */
export interface WaitOptions {
  /** Milliseconds; negative counts as 0. */
  timeout?: number | undefined
  /** Aborting rejects the wait with `AbortError`. */
  signal?: AbortSignal | undefined
}

/** The longest delay a Node timer takes; longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** Validates a timeout (ms) and turns it into a deadline (`performance.now()` based). */
export function deadlineOf(timeout: unknown): number | undefined {
  if (timeout === undefined || timeout === null) return undefined
  if (typeof timeout !== 'number') throw typeError(`timeout must be a number of milliseconds, not ${typeof timeout}`)
  if (Number.isNaN(timeout)) throw rangeError('timeout must not be NaN')
  // Beyond what a timer can wait (about 24.8 days) there is no practical limit.
  if (timeout >= MAX_TIMER_MS) return undefined
  return performance.now() + Math.max(0, timeout)
}

/** Accepts `{ timeout, signal }` or, where Python takes a positional timeout, a bare number. */
const NO_OPTIONS: WaitOptions = Object.freeze({})

export function waitOptions(opts: unknown): WaitOptions {
  if (opts === undefined || opts === null) return NO_OPTIONS
  if (typeof opts === 'number') return { timeout: opts }
  if (typeof opts !== 'object') throw typeError('options must be an object or a timeout in milliseconds')
  const o = opts as WaitOptions
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('signal must be an AbortSignal')
  return o
}

/** Milliseconds left until `deadline`, as the binding takes it (-1: no limit). */
export function remaining(deadline: number | undefined): number {
  return deadline === undefined ? -1 : Math.max(0, deadline - performance.now())
}

/** The longest an armed wait sleeps before it re-checks. */
const SLICE_MS = 250

let doorbell: net.Socket | undefined
const armed = new Map<number, () => void>()
let nextKey = 1

let doorbellFd = -1

/**
 * @internal In a child forked by the fork server: forgets the waits the server had armed (their
 * waker thread did not come through the fork) and its doorbell.
 */
export function forgetInheritedWaits(): void {
  armed.clear()
  doorbell = undefined
  doorbellFd = -1
}

function ensureDoorbell(): void {
  // A child forked off a process that had a waker (a fork server's) gets a waker of its own, with
  // another doorbell: the inherited socket would watch the old one.
  const fd = native.wakerDoorbell()
  if (doorbell && fd === doorbellFd) return
  doorbellFd = fd
  doorbell = new net.Socket({ fd, readable: true, writable: false })
  doorbell.on('data', () => {
    for (const key of native.wakerTakeFired()) {
      const wake = armed.get(key)
      if (wake) wake()
    }
  })
  doorbell.unref()
}

/** Shared-memory progress a wait can poll, spin on and sleep on. */
export interface Waitable<T> {
  /** The result if it is available now, else `undefined`. */
  attempt(): T | undefined
  /** Spins briefly (native, bounded); true if progress may now be possible. */
  spin(): boolean
  /** Arms the waker under `key`; false if progress is possible now (nothing armed). */
  arm(key: number): boolean
  /** Undoes `arm`, whether or not the waker fired; `waitedMs` teaches the spinner. */
  disarm(key: number, waitedMs: number): void
  /** Extra wake-up sources (e.g. a peer hanging up); returns a function that removes them. */
  watch?(wake: () => void): () => void
}

/** Waits until `w.attempt()` yields a result, the deadline passes, or the signal aborts. */
export async function waitFor<T>(w: Waitable<T>, deadline: number | undefined, signal: AbortSignal | undefined, what: string): Promise<T> {
  let rounds = 0
  for (;;) {
    if (signal?.aborted) throw new AbortError(`${what} was aborted`, { cause: signal.reason })
    const r = w.attempt()
    if (r !== undefined) return r
    // Progress looked possible but did not come: yield now and then so that a stubborn race
    // (another process holding the ring a moment) cannot starve the event loop.
    if (++rounds % 64 === 0) await new Promise((resolve) => setImmediate(resolve))
    if (w.spin()) continue
    if (deadline !== undefined && performance.now() >= deadline) throw new TimeoutError(`${what} timed out`)
    const key = nextKey++
    if (!w.arm(key)) continue
    const started = performance.now()
    await sleep(key, deadline, signal, w)
    w.disarm(key, performance.now() - started)
  }
}

function sleep(key: number, deadline: number | undefined, signal: AbortSignal | undefined, w: Waitable<unknown>): Promise<void> {
  ensureDoorbell()
  return new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined
    let unwatch: (() => void) | undefined
    const done = () => {
      armed.delete(key)
      if (armed.size === 0) doorbell?.unref()
      if (timer) clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      unwatch?.()
      resolve()
    }
    armed.set(key, done)
    if (armed.size === 1) doorbell?.ref()
    // Bounded: re-check at least every SLICE_MS, for what moves no shared word (a lock holder
    // that died). Costs a wake-up four times a second while a wait is pending.
    const until = deadline === undefined ? SLICE_MS : Math.min(SLICE_MS, Math.max(0, deadline - performance.now()) + 1)
    timer = setTimeout(done, until)
    signal?.addEventListener('abort', done, { once: true })
    unwatch = w.watch?.(done)
  })
}
