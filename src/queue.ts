/**
 * Queue, SimpleQueue and JoinableQueue: many producers and many consumers in any processes on one
 * shared-memory ring. FIFO per producer; a message larger than the ring still goes through.
 */

import { adoptChannel, NOTHING, RingEnd, untilEnd } from './channel.js'
import { ClosedError, Empty, Full, fromNative, TimeoutError, typeError } from './errors.js'
import { type HandleDescriptor, registerHandle, toHandle } from './handles.js'
import { type Chan, native } from './native.js'
import { encode, type Serializer } from './serialize.js'
import { checkBlock, checkCapacity, checkInteger, checkOptions, checkSerializer } from './validate.js'
import { deadlineOf, remaining, type WaitOptions, waitFor, waitOptions } from './wait.js'

/** Options of a `Queue`, `SimpleQueue` or `JoinableQueue`. */
export interface QueueOptions {
  /** Most items held at once (Python's `maxsize`); 0 or absent: bounded only by `capacityBytes`. */
  maxsize?: number
  /** Bytes of shared ring; larger messages stream through it. Default 4 MiB. */
  capacityBytes?: number
  /** Replaces structured clone for this queue's items. */
  serializer?: Serializer
}

/** Options of the blocking `putSync`/`getSync`. */
export interface BlockingOptions {
  /** `false`: fail at once with `Empty`/`Full` (a `timeout` is then ignored, as in Python). */
  block?: boolean
  /** Milliseconds to wait at most; absent: for ever. */
  timeout?: number
}

const DEFAULT_CAPACITY = 4 << 20

/** A multi-producer, multi-consumer FIFO queue shared between processes. */
export class Queue<T = unknown> implements AsyncIterable<T> {
  protected readonly chan: Chan
  protected readonly end: RingEnd
  readonly #serializer: Serializer | undefined
  #closed = false

  constructor(opts: QueueOptions = {}, adopted?: Chan) {
    if (typeof opts !== 'object' || opts === null) throw typeError('Queue options must be an object')
    checkSerializer(opts.serializer)
    this.#serializer = opts.serializer
    if (adopted) {
      this.chan = adopted
    } else {
      const maxsize = opts.maxsize === undefined ? 0 : Math.max(0, checkInteger('maxsize', opts.maxsize, Number.MIN_SAFE_INTEGER))
      const capacity = opts.capacityBytes === undefined ? DEFAULT_CAPACITY : checkCapacity(opts.capacityBytes)
      try {
        this.chan = native.channelCreate(1, capacity, 0xffff_ffff - 64, maxsize)
      } catch (err) {
        throw fromNative(err)
      }
    }
    this.end = new RingEnd(this.chan, 0, this.#serializer)
  }

  /** Python's `maxsize` (0: unbounded). */
  get maxsize(): number {
    return native.channelInfo(this.chan).maxsize
  }

  /** Closed here; a close by another process is reported by the ring itself. */
  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('put() on a closed queue')
  }

  /** Puts an item, waiting for room. A timed put that runs out rejects with `TimeoutError`. */
  put(item: T, opts?: WaitOptions): Promise<void> {
    let o: WaitOptions
    try {
      o = waitOptions(opts)
      this.#checkOpen()
    } catch (err) {
      return Promise.reject(err)
    }
    this.beforePut()
    // `send` reports every failure, even an unserialisable item, as a rejection.
    return this.counted(this.end.send(item, o))
  }

  /** Puts an item, blocking the thread while there is no room. */
  putSync(item: T, opts: BlockingOptions | number = {}): void {
    this.#checkOpen()
    const o = waitOptions(opts) as BlockingOptions
    checkBlock(o)
    if (o.block === false) {
      this.putNowait(item)
      return
    }
    this.#counting(() => this.end.sendSync(item, o.timeout))
  }

  /** Puts an item or throws `Full` at once. */
  putNowait(item: T): void {
    this.#checkOpen()
    this.#counting(() => {
      if (!this.end.trySend(item)) throw new Full(this.#fullReason(item))
    })
  }

  #counting(put: () => void): void {
    this.beforePut()
    try {
      put()
    } catch (err) {
      this.putFailed()
      throw err
    }
  }

  #fullReason(item: T): string {
    const { bytes } = encode(item, this.#serializer)
    if (!this.end.fitsWhole(bytes.byteLength)) {
      return `the item (${bytes.byteLength} bytes) is larger than the queue's ring (capacityBytes): it can only stream through with put() or putSync()`
    }
    return 'the queue is full'
  }

  /** Takes an item, waiting for one. Rejects with `EOFError` once closed and drained. */
  get(opts?: WaitOptions): Promise<T> {
    try {
      const o = waitOptions(opts)
      return this.end.recv(deadlineOf(o.timeout), o.signal, 'get') as Promise<T>
    } catch (err) {
      // A promise-returning method reports bad arguments as a rejection, never a throw.
      return Promise.reject(err)
    }
  }

  /** @internal Puts without waiting or throwing: false when there is no room now. */
  tryPut(item: T): boolean {
    this.#checkOpen()
    this.beforePut()
    let sent = false
    try {
      sent = this.end.trySend(item)
    } finally {
      if (!sent) this.putFailed()
    }
    return sent
  }

  /** @internal Takes an item if there is one now, else `NOTHING` (no exception, no promise). */
  tryGet(): T | typeof NOTHING {
    return this.end.tryRecv() as T | typeof NOTHING
  }

  /** @internal `get` that spins only when `spinIf()` says so (the pool waits on many queues). */
  getWhen(spinIf: () => boolean, signal: AbortSignal): Promise<T> {
    return this.end.recv(undefined, signal, 'get', spinIf) as Promise<T>
  }

  /** Takes an item, blocking the thread while there is none. */
  getSync(opts: BlockingOptions | number = {}): T {
    const o = waitOptions(opts) as BlockingOptions
    checkBlock(o)
    if (o.block === false) return this.getNowait()
    return this.end.recvSync(o.timeout) as T
  }

  /** Takes an item or throws `Empty` at once. */
  getNowait(): T {
    const v = this.end.tryRecv()
    if (v === NOTHING) throw new Empty('the queue is empty')
    return v as T
  }

  /** Items in the queue now (approximate while others are active, as in Python). */
  qsize(): number {
    return native.channelQsize(this.chan, 0)
  }

  /** Whether the queue holds no item now (approximate while others are active, as in Python). */
  empty(): boolean {
    return this.qsize() === 0
  }

  /** Whether a `put` would have to wait now (approximate while others are active, as in Python). */
  full(): boolean {
    return native.channelIsFull(this.chan, 0)
  }

  /** Closes the queue for every process: no more puts; gets drain what is left, then `EOFError`. */
  close(): void {
    this.#closed = true
    native.channelClose(this.chan, 0)
  }

  /** Nothing to wait for: items are in shared memory as soon as `put` returns (Python compatibility). */
  joinThread(): void {}

  /** Iterates items until the queue is closed and drained. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return untilEnd(() => this.get())
  }

  /** Called before an item becomes visible to consumers (JoinableQueue counts it here). */
  protected beforePut(): void {}
  /** Undoes `beforePut` for a put that failed. */
  protected putFailed(): void {}
  /** Undoes `beforePut` if an asynchronous put fails. */
  protected counted(sent: Promise<void>): Promise<void> {
    return sent
  }

  /** @internal Whether a `get` could make progress now (an item, or the queue closed). */
  readableNow(): boolean {
    return native.channelCanRecv(this.chan, 0)
  }

  /** @internal Resolves once a `get` could make progress (an item, or the queue closed); for `wait()`. */
  whenReadable(signal: AbortSignal): Promise<unknown> {
    const chan = this.chan
    return waitFor(
      {
        attempt: () => (native.channelCanRecv(chan, 0) ? true : undefined),
        spin: () => native.channelSpinRecv(chan, 0),
        arm: (key) => native.channelArmRecv(chan, 0, key),
        disarm: (key, ms) => native.channelDisarmRecv(chan, 0, key, ms),
      },
      undefined,
      signal,
      'wait',
    )
  }

  /** @internal Another end of the same queue in this process, with its own serializer. */
  withSerializer(serializer: Serializer | undefined): Queue<T> {
    return new Queue<T>({ serializer }, this.chan)
  }

  /** @internal How the queue travels to another process. */
  [toHandle](): HandleDescriptor {
    return { type: this.constructor.name, data: {}, fds: [native.channelInfo(this.chan).fd] }
  }
}

/** Python's SimpleQueue: an unbounded Queue without `maxsize`. */
export class SimpleQueue<T = unknown> extends Queue<T> {
  constructor(opts: Omit<QueueOptions, 'maxsize'> = {}, adopted?: Chan) {
    super({ ...checkOptions('SimpleQueue options', opts), maxsize: 0 }, adopted)
  }
}

/** A Queue whose consumers mark items done, so producers can `join()` until all are handled. */
export class JoinableQueue<T = unknown> extends Queue<T> {
  // Counted before the item is visible, so a consumer's taskDone() can never come first.
  protected override beforePut(): void {
    native.channelTaskAdded(this.chan)
  }

  protected override putFailed(): void {
    native.channelTaskDone(this.chan)
  }

  protected override counted(sent: Promise<void>): Promise<void> {
    return sent.catch((err) => {
      this.putFailed()
      throw err
    })
  }

  /** Marks one item taken by `get` as handled. Too many calls throw `InvalidStateError`. */
  taskDone(): void {
    try {
      native.channelTaskDone(this.chan)
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Resolves once every item put has been marked done. */
  async join(opts?: WaitOptions): Promise<void> {
    const o = waitOptions(opts)
    await waitFor(
      {
        attempt: () => (native.channelJoinSync(this.chan, 0) ? true : undefined),
        spin: () => false,
        arm: (key) => native.channelArmJoin(this.chan, key),
        disarm: (key) => native.wakerDisarm(key),
      },
      deadlineOf(o.timeout),
      o.signal,
      'join',
    )
  }

  /** Blocks until every item put has been marked done. */
  joinSync(timeout?: number): void {
    if (!native.channelJoinSync(this.chan, remaining(deadlineOf(timeout)))) throw new TimeoutError('join timed out')
  }
}

registerHandle('Queue', (_data, [fd]) => new Queue({}, adoptChannel(fd as number)))
registerHandle('SimpleQueue', (_data, [fd]) => new SimpleQueue({}, adoptChannel(fd as number)))
registerHandle('JoinableQueue', (_data, [fd]) => new JoinableQueue({}, adoptChannel(fd as number)))
