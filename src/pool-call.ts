/**
 * One pool call (`map`, `imap`, `apply`, …): its input, cut into chunks as workers can take them,
 * and what it does with their outcomes. Which worker runs a chunk is the scheduler's business.
 */
import { trustArray } from './plain.js'
import type { Progress } from './pool.js'
import type { Worker } from './pool-scheduler.js'
import type { TargetSpec } from './target.js'

let nextChunkId = 1

/** A slice of a call's input, sent to one worker as one message. */
export interface Chunk {
  readonly id: number
  readonly call: Call
  /** Position among the call's chunks (for ordered delivery). */
  readonly seq: number
  readonly items: unknown[]
  worker: Worker | null
  /** The message that took it to `worker` described the target (the worker learns it from there). */
  toldTarget: boolean
  sentAt: number
  timer: NodeJS.Timeout | undefined
  /** The call no longer wants its result (failed, cancelled, timed out). */
  dropped: boolean
}

/** What a call does with its chunks' outcomes. */
export interface Sink {
  chunkDone(chunk: Chunk, values: unknown[]): void
  chunkFailed(chunk: Chunk, error: unknown): void
  failed(error: unknown): void
  completed(): void
}

export type Input = { array: readonly unknown[] } | { iterator: Iterator<unknown> } | { asyncIterator: AsyncIterator<unknown> }

/** A call as the pool's API hands it to the scheduler. */
export interface CallRequest {
  readonly targetId: number
  readonly spec: TargetSpec
  readonly star: boolean
  readonly chunksize: number
  readonly input: Input
  readonly timeout: number | undefined
  readonly signal: AbortSignal | undefined
  readonly onProgress: ((p: Progress) => void) | undefined
  readonly sink: Sink
  /** Subject to `maxQueue`: a call made now (not a map whose input was read after it was admitted). */
  readonly limited: boolean
  /** imap: a failed chunk takes its place among the results and the call goes on. */
  readonly streaming?: boolean
  /** imap backpressure: whether the call may take more input now. */
  readonly mayPull?: (call: Call) => boolean
}

export class Call {
  readonly targetId: number
  readonly spec: TargetSpec
  readonly star: boolean
  readonly chunksize: number
  readonly input: Input
  readonly onProgress: ((p: Progress) => void) | undefined
  readonly sink: Sink
  readonly streaming: boolean
  readonly queue: Chunk[] = []
  nextSeq = 0
  nextIndex = 0
  running = 0
  done = 0
  total: number | null = null
  inputDone = false
  pulling = false
  settled = false
  /** The input threw: the call fails with it once the chunks taken before are answered. */
  inputError: { error: unknown } | undefined
  /** The total the last progress report gave. */
  reportedTotal: number | null = null
  /** Drops the call's deadline timer and abort listener. */
  cleanup: () => void = () => {}
  /** Lets the call say it has enough undelivered results (imap backpressure). */
  readonly mayPull: () => boolean

  constructor(
    request: CallRequest,
    /** It has a deadline or a signal: its workers run nothing else meanwhile. */
    readonly exclusive: boolean,
    readonly taskTimeout: number | undefined,
  ) {
    this.targetId = request.targetId
    this.spec = request.spec
    this.star = request.star
    this.chunksize = request.chunksize
    this.input = request.input
    this.onProgress = request.onProgress
    this.sink = request.sink
    this.streaming = request.streaming ?? false
    const mayPull = request.mayPull
    this.mayPull = mayPull ? () => mayPull(this) : () => true
    if ('array' in this.input) this.total = this.input.array.length
  }

  /** The next chunk to send, if one is ready now; may start an asynchronous pull. */
  take(kick: () => void): Chunk | undefined {
    if (this.settled) return undefined
    const queued = this.queue.shift()
    if (queued) return queued
    if (this.inputDone || this.pulling || !this.mayPull()) return undefined
    const input = this.input
    if ('array' in input) {
      const items = trustArray(input.array.slice(this.nextIndex, this.nextIndex + this.chunksize))
      if (this.nextIndex + items.length >= input.array.length) this.inputDone = true
      return items.length > 0 ? this.chunk(items) : undefined
    }
    if ('iterator' in input) {
      const items: unknown[] = []
      try {
        while (items.length < this.chunksize && this.accept(input.iterator.next(), items));
      } catch (error) {
        this.inputFailed(error)
      }
      return items.length > 0 ? this.chunk(items) : undefined
    }
    this.pulling = true
    void this.pullAsync(input.asyncIterator).finally(() => {
      this.pulling = false
      kick()
    })
    return undefined
  }

  private async pullAsync(iterator: AsyncIterator<unknown>): Promise<void> {
    const items: unknown[] = []
    try {
      while (items.length < this.chunksize && this.accept(await iterator.next(), items));
    } catch (error) {
      this.inputFailed(error)
    }
    if (items.length > 0 && !this.settled) this.queue.push(this.chunk(items))
  }

  /** Takes one step of the input into `items`; false once the input has ended. */
  private accept(r: IteratorResult<unknown>, items: unknown[]): boolean {
    if (!r.done) {
      items.push(r.value)
      return true
    }
    this.inputDone = true
    this.total = this.nextIndex
    return false
  }

  private inputFailed(error: unknown): void {
    this.inputDone = true
    this.inputError = { error }
  }

  private chunk(items: unknown[]): Chunk {
    this.nextIndex += items.length
    if (this.inputDone) this.total = this.nextIndex
    return {
      id: nextChunkId++,
      call: this,
      seq: this.nextSeq++,
      items: trustArray(items),
      worker: null,
      toldTarget: false,
      sentAt: 0,
      timer: undefined,
      dropped: false,
    }
  }

  /** Whether it has something to run (an imap waiting only for its consumer has not). */
  get hasWork(): boolean {
    return this.queue.length > 0 || (!this.inputDone && this.mayPull())
  }

  /** Whether every chunk has been answered and no input remains. */
  get finished(): boolean {
    return this.inputDone && !this.pulling && this.running === 0 && this.queue.length === 0
  }

  /** Stops the input: releases an iterator the call still holds (as `for…of` does on `break`). */
  closeInput(): void {
    if (this.inputDone) return
    this.inputDone = true
    const input = this.input
    try {
      if ('iterator' in input) input.iterator.return?.()
      else if ('asyncIterator' in input) void input.asyncIterator.return?.()?.then(undefined, () => {})
    } catch {
      // The iterator's own cleanup failed; the call is over either way.
    }
  }
}
