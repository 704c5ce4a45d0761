/**
 * One direction of a shared-memory channel as seen by one process: encodes values, moves their
 * bytes through a ring of the binding, and waits (asynchronously or blocking) for room or data.
 * `Queue` and `Connection` are built on it.
 */
import { AbortError, TimeoutError, fromNative } from './errors.js'
import { type Chan, native } from './native.js'
import { decode, encode, type Serializer } from './serialize.js'
import { deadlineOf, remaining, type Waitable, waitFor } from './wait.js'

/** Messages up to this size are copied into one reused buffer instead of a new allocation. */
const SCRATCH = Buffer.allocUnsafeSlow(64 * 1024)
const NOTHING = Symbol('nothing')
type Received = unknown | typeof NOTHING

enum SendStatus {
  Sent = 0,
  Full = 1,
  Streaming = 2,
}

export interface SendOptions {
  timeout?: number | undefined
  signal?: AbortSignal | undefined
}

/** Resolves when `prev` settles; rejects if the deadline passes or the signal aborts first. */
function waitTurn(prev: Promise<unknown>, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  if (deadline === undefined && !signal) return prev.then(noop, noop)
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const onAbort = () => finish(new AbortError('put was aborted', { cause: signal?.reason }))
    const finish = (err?: Error) => {
      if (timer) clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve()
    }
    if (signal?.aborted) return onAbort()
    if (deadline !== undefined) timer = setTimeout(() => finish(new TimeoutError('put timed out')), Math.max(0, deadline - performance.now()))
    signal?.addEventListener('abort', onAbort, { once: true })
    prev.then(() => finish(), () => finish())
  })
}

function noop(): void {}

/** Sending and receiving on one ring of a channel. */
export class RingEnd {
  /** Async sends of this process go one at a time, so FIFO holds and streams never interleave. */
  private sendChain: Promise<unknown> = Promise.resolve()

  constructor(
    readonly chan: Chan,
    readonly ring: number,
    readonly serializer?: Serializer,
    /** A socket whose hang-up means the sending side is gone (pipes); -1 for none. */
    readonly peerFd = -1,
    private readonly watchPeer?: (wake: () => void) => () => void,
  ) {}

  // ---- sending ----

  /** Sends without waiting; false when there is no room. */
  trySend(value: unknown): boolean {
    const { kind, bytes } = encode(value, this.serializer)
    return this.trySendBytes(kind, bytes, false)
  }

  private trySendBytes(kind: number, bytes: Uint8Array, allowStream: boolean): boolean {
    let status: number
    try {
      status = native.channelTrySend(this.chan, this.ring, kind, bytes)
    } catch (err) {
      throw fromNative(err)
    }
    if (status === SendStatus.Streaming) {
      if (!allowStream) {
        // A non-blocking send of a message larger than the ring: finish it blocking, as it began.
        this.finishStreamSync()
      }
      return true
    }
    return status === SendStatus.Sent
  }

  private finishStreamSync(): void {
    try {
      while (!native.channelContinueSend(this.chan, this.ring)) native.channelSpinSend(this.chan, this.ring, 1)
    } catch (err) {
      throw fromNative(err)
    }
  }

  /**
   * Sends asynchronously. Sends of this process go in call order (FIFO per producer); one that
   * is still queued behind another when its deadline passes or its signal aborts fails then.
   */
  send(value: unknown, opts: SendOptions = {}): Promise<void> {
    let encoded: ReturnType<typeof encode>
    let deadline: number | undefined
    try {
      encoded = encode(value, this.serializer)
      deadline = deadlineOf(opts.timeout)
    } catch (err) {
      return Promise.reject(err)
    }
    const prev = this.sendChain
    const next = waitTurn(prev, deadline, opts.signal).then(() => this.sendBytes(encoded.kind, encoded.bytes, deadline, opts.signal))
    this.sendChain = Promise.allSettled([prev, next])
    return next
  }

  private async sendBytes(kind: number, bytes: Uint8Array, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    let streaming = false
    const start: Waitable<true> = {
      attempt: () => {
        const status = this.callSend(kind, bytes)
        if (status === SendStatus.Full) return undefined
        streaming = status === SendStatus.Streaming
        return true
      },
      spin: () => native.channelSpinSend(this.chan, this.ring, bytes.byteLength),
      arm: (key) => native.channelArmSend(this.chan, this.ring, bytes.byteLength, key),
      disarm: (key, ms) => native.channelDisarmSend(this.chan, this.ring, key, ms),
    }
    await waitFor(start, deadline, signal, 'put')
    if (!streaming) return
    // A message larger than the ring has started: it is finished whatever the deadline.
    const more: Waitable<true> = {
      attempt: () => {
        try {
          return native.channelContinueSend(this.chan, this.ring) ? true : undefined
        } catch (err) {
          throw fromNative(err)
        }
      },
      spin: () => native.channelSpinSend(this.chan, this.ring, 1),
      arm: (key) => native.channelArmSend(this.chan, this.ring, 1, key),
      disarm: (key, ms) => native.channelDisarmSend(this.chan, this.ring, key, ms),
    }
    await waitFor(more, undefined, undefined, 'put')
  }

  private callSend(kind: number, bytes: Uint8Array): number {
    try {
      return native.channelTrySend(this.chan, this.ring, kind, bytes)
    } catch (err) {
      throw fromNative(err)
    }
  }

  /** Blocks until sent (or `timeout` ms pass: `TimeoutError`). */
  sendSync(value: unknown, timeout?: number): void {
    const { kind, bytes } = encode(value, this.serializer)
    const deadline = deadlineOf(timeout)
    try {
      native.channelSendSync(this.chan, this.ring, kind, bytes, remaining(deadline))
    } catch (err) {
      throw fromNative(err)
    }
  }

  // ---- receiving ----

  private take(code: number): unknown {
    if (code === -1) return NOTHING
    if (code === -2) {
      const big = native.channelTakeBig(this.chan) as Buffer
      const kind = big[big.length - 1] as number
      return decode(kind, big.subarray(0, big.length - 1), this.serializer)
    }
    const len = Math.floor(code / 256)
    return decode(code % 256, SCRATCH.subarray(0, len), this.serializer)
  }

  /** A message if one is here now; `NOTHING` otherwise. Throws EOFError once closed and drained. */
  tryRecv(): Received {
    let code: number
    try {
      code = native.channelTryRecv(this.chan, this.ring, SCRATCH)
    } catch (err) {
      throw fromNative(err, 'eof')
    }
    return this.take(code)
  }

  /**
   * Receives asynchronously. Receives of one process wait side by side, each with its own
   * deadline; a large message that one of them started is finished by whichever comes next.
   */
  recv(deadline: number | undefined, signal: AbortSignal | undefined, what: string, peerGone: () => boolean): Promise<unknown> {
    const w: Waitable<{ v: unknown }> = {
      attempt: () => {
        const v = this.tryRecv()
        if (v !== NOTHING) return { v }
        if (peerGone()) {
          // Drain what the peer committed before it went, then report the end.
          const last = this.tryRecv()
          if (last !== NOTHING) return { v: last }
          throw fromNative(new Error('ERR_CLOSED: the other end of the pipe is closed'), 'eof')
        }
        return undefined
      },
      spin: () => native.channelSpinRecv(this.chan, this.ring),
      arm: (key) => native.channelArmRecv(this.chan, this.ring, key),
      disarm: (key, ms) => native.channelDisarmRecv(this.chan, this.ring, key, ms),
      watch: this.watchPeer,
    }
    return waitFor(w, deadline, signal, what).then((r) => r.v)
  }

  /** Blocks until a message arrives (or `timeout` ms pass: `TimeoutError`). */
  recvSync(timeout?: number): unknown {
    const deadline = deadlineOf(timeout)
    let code: number
    try {
      code = native.channelRecvSync(this.chan, this.ring, SCRATCH, remaining(deadline), this.peerFd)
    } catch (err) {
      throw fromNative(err, 'eof')
    }
    return this.take(code)
  }
}

export { NOTHING }
