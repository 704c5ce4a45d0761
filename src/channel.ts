/**
 * One direction of a shared-memory channel as seen by one process: encodes values, moves their
 * bytes through a ring of the binding, and waits (asynchronously or blocking) for room or data.
 * `Queue` and `Connection` are built on it.
 */
import { AbortError, BufferTooShort, EOFError, fromNative, TimeoutError } from './errors.js'
import { type Chan, native } from './native.js'
import { decode, encode, type Serializer } from './serialize.js'
import { deadlineOf, remaining, type Waitable, waitFor } from './wait.js'

/** Small messages are copied into one reused buffer and decoded from there. */
const SCRATCH = Buffer.allocUnsafeSlow(64 * 1024)
/** Room for a frame header in the ring: a message that fits `capacity - 8` never streams. */
const FRAME_HEADER = 8
const NOTHING = Symbol('nothing')
/** A larger buffer was set up: call the binding again. (A message may itself be `undefined`.) */
const AGAIN = Symbol('again')
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

/** The other side of a pipe: whether it is gone, and a way to be woken when it goes. */
export interface Peer {
  fd: number
  /** What is known without a system call; with `probe`, asks the kernel. */
  gone(probe?: boolean): boolean
  watch(wake: () => void): () => void
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
    if (deadline !== undefined)
      timer = setTimeout(() => finish(new TimeoutError('put timed out')), Math.max(0, deadline - performance.now()))
    signal?.addEventListener('abort', onAbort, { once: true })
    prev.then(
      () => finish(),
      () => finish(),
    )
  })
}

function noop(): void {}

const RESOLVED: Promise<void> = Promise.resolve()

/** Sending and receiving on one ring of a channel. */
export class RingEnd {
  /** Async sends of this process go one at a time, so FIFO holds and streams never interleave. */
  private sendChain: Promise<unknown> = Promise.resolve()
  private sendsPending = 0
  /** Where messages that fit are received: never a message that streams through the ring. */
  private readonly scratch: Buffer
  /** The buffer a larger message is being received into; the binding needs the same one back. */
  private inflight: Buffer | undefined
  /** `inflight` is a caller's buffer (`recvBytesInto`), not one of ours to hand out. */
  private inflightIsCallers = false
  /** A large message has begun arriving into `inflight`. */
  private streaming = false
  /** Async receives of this process now waiting; the last to give up abandons a stream. */
  private recvsPending = 0
  private readonly capacity: number

  constructor(
    readonly chan: Chan,
    readonly ring: number,
    readonly serializer?: Serializer,
    readonly peer?: Peer,
  ) {
    this.capacity = native.channelInfo(chan).capacity
    this.scratch = SCRATCH.subarray(0, Math.min(SCRATCH.length, this.capacity - FRAME_HEADER))
  }

  /** Maps a native error; a closed ring means EOF to a receiver, a broken pipe or use-after-close to a sender. */
  private error(err: unknown, receiving: boolean): unknown {
    return fromNative(err, receiving ? 'eof' : this.peer ? 'broken' : 'closed')
  }

  // ---- sending ----

  /**
   * Sends without waiting; false when there is no room now. A message larger than the ring can
   * never be sent without waiting for a receiver, so it is refused too (see `fitsWhole`).
   */
  trySend(value: unknown): boolean {
    // The bytes are copied into the ring (or dropped) before anything else is encoded.
    const { kind, bytes } = encode(value, this.serializer, true)
    // FIFO per producer: nothing overtakes a send of this process that is still waiting.
    if (this.sendsPending > 0) return false
    try {
      return native.channelTrySend(this.chan, this.ring, kind, bytes, true) === SendStatus.Sent
    } catch (err) {
      throw this.error(err, false)
    }
  }

  /** Whether a message of `len` encoded bytes fits the ring whole (else it must stream). */
  fitsWhole(len: number): boolean {
    return len + FRAME_HEADER <= this.capacity
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
    if (this.sendsPending === 0 && !opts.signal?.aborted) {
      // Nothing queued before it: try at once, and settle without a trip through the chain.
      let status: number
      try {
        status = this.callSend(encoded.kind, encoded.bytes)
      } catch (err) {
        return Promise.reject(err)
      }
      if (status === SendStatus.Sent) return RESOLVED
      if (status === SendStatus.Streaming)
        return this.chained(Promise.resolve(), () => this.finishStream(encoded.bytes, deadline, opts.signal))
    }
    return this.chained(waitTurn(this.sendChain, deadline, opts.signal), () =>
      this.sendBytes(encoded.kind, encoded.bytes, deadline, opts.signal),
    )
  }

  /** Runs `step` after `turn`, as the last link of this process's chain of sends. */
  private chained(turn: Promise<void>, step: () => Promise<void>): Promise<void> {
    const prev = this.sendChain
    this.sendsPending++
    const next = turn.then(step)
    const settled = () => {
      this.sendsPending--
    }
    next.then(settled, settled)
    this.sendChain = Promise.allSettled([prev, next])
    return next
  }

  private async sendBytes(kind: number, bytes: Uint8Array, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    let streaming = false
    const peer = this.peer
    const start: Waitable<true> = {
      attempt: () => {
        const status = this.callSend(kind, bytes)
        if (status === SendStatus.Full) {
          if (peer?.gone(true)) throw this.error(closedByPeer(), false)
          return undefined
        }
        streaming = status === SendStatus.Streaming
        return true
      },
      spin: () => native.channelSpinSend(this.chan, this.ring, bytes.byteLength),
      arm: (key) => native.channelArmSend(this.chan, this.ring, bytes.byteLength, key),
      disarm: (key, ms) => native.channelDisarmSend(this.chan, this.ring, key, ms),
      watch: peer && ((wake) => peer.watch(wake)),
    }
    await waitFor(start, deadline, signal, 'put')
    if (streaming) await this.finishStream(bytes, deadline, signal)
  }

  /**
   * Writes the rest of a message larger than the ring. If the deadline passes, the signal
   * aborts or the peer goes first, the message is abandoned: receivers discard what of it is
   * in the ring, and the channel goes on.
   */
  private async finishStream(bytes: Uint8Array, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const peer = this.peer
    const more: Waitable<true> = {
      attempt: () => {
        try {
          if (native.channelContinueSend(this.chan, this.ring, bytes)) return true
        } catch (err) {
          throw this.error(err, false)
        }
        if (peer?.gone(true)) throw this.error(closedByPeer(), false)
        return undefined
      },
      spin: () => native.channelSpinSend(this.chan, this.ring, 1),
      arm: (key) => native.channelArmSend(this.chan, this.ring, 1, key),
      disarm: (key, ms) => native.channelDisarmSend(this.chan, this.ring, key, ms),
      watch: peer && ((wake) => peer.watch(wake)),
    }
    try {
      await waitFor(more, deadline, signal, 'put')
    } catch (err) {
      try {
        native.channelAbandonSend(this.chan, this.ring)
      } catch {
        // A corrupt ring: the error that ended the wait says more.
      }
      throw err
    }
  }

  private callSend(kind: number, bytes: Uint8Array): number {
    try {
      return native.channelTrySend(this.chan, this.ring, kind, bytes, false)
    } catch (err) {
      throw this.error(err, false)
    }
  }

  /** Blocks until sent (or `timeout` ms pass: `TimeoutError`). */
  sendSync(value: unknown, timeout?: number): void {
    const { kind, bytes } = encode(value, this.serializer)
    const limit = timeout === undefined ? -1 : remaining(deadlineOf(timeout))
    try {
      native.channelSendSync(this.chan, this.ring, kind, bytes, limit, this.peer?.fd ?? -1)
    } catch (err) {
      throw this.error(err, false)
    }
  }

  // ---- receiving ----

  /** The buffer to receive into now: a large message's own, else the shared scratch. */
  private target(): Buffer {
    return this.inflight ?? this.scratch
  }

  /**
   * Turns a receipt into a value: `NOTHING` for nothing yet, `AGAIN` after a larger buffer was
   * set up (call again), else the message.
   */
  private take(code: number, dst: Buffer): Received | typeof AGAIN {
    const p = this.pending(code, dst)
    if (p !== undefined) return p
    const len = Math.floor(code / 256)
    const kind = code % 256
    if (dst === this.inflight) {
      // A buffer made for a larger message that was lost is not handed out for a smaller one.
      const owned = !this.inflightIsCallers && len === dst.length
      this.finished()
      return decode(kind, len === dst.length ? dst : dst.subarray(0, len), this.serializer, owned)
    }
    return decode(kind, dst.subarray(0, len), this.serializer, false)
  }

  /**
   * Handles the receipts that are not a message: nothing yet (-1), a stream under way into
   * `dst` (-2), or the need for a buffer of n bytes (-(n + 2)), which it allocates. Returns
   * `NOTHING` or `AGAIN` (call again) for those, `undefined` for a message.
   */
  private pending(code: number, dst: Buffer): typeof NOTHING | typeof AGAIN | undefined {
    if (code >= 0) return undefined
    if (code === -1) {
      if (!this.streaming) return NOTHING
      // The message that was arriving was abandoned by its producer: it is lost. Go on.
      this.finished()
      return AGAIN
    }
    if (code === -2) {
      this.streaming = true
      if (this.inflight !== dst) {
        this.inflight = dst
        this.inflightIsCallers = true
      }
    } else if (code < -2) {
      this.inflight = Buffer.allocUnsafeSlow(-code - 2)
      this.inflightIsCallers = false
      return AGAIN
    }
    return NOTHING
  }

  private finished(): void {
    this.inflight = undefined
    this.inflightIsCallers = false
    this.streaming = false
  }

  /** A message if one is here now; `NOTHING` otherwise. Throws EOFError once closed and drained. */
  tryRecv(): Received {
    for (;;) {
      const dst = this.target()
      let code: number
      try {
        code = native.channelTryRecv(this.chan, this.ring, dst)
      } catch (err) {
        throw this.error(err, true)
      }
      const v = this.take(code, dst)
      if (v !== AGAIN) return v
    }
  }

  /** One attempt to receive a message's raw bytes into `into`: its length, or `NOTHING`. */
  tryRecvInto(into: Buffer): number | typeof NOTHING {
    for (;;) {
      const dst = this.inflight ?? into
      let code: number
      try {
        code = native.channelTryRecv(this.chan, this.ring, dst)
      } catch (err) {
        throw this.error(err, true)
      }
      const len = this.intoResult(code, dst, into)
      if (len !== AGAIN) return len
    }
  }

  /** A receipt for a raw receive: the length, `NOTHING`, or `AGAIN` to call again. */
  private intoResult(code: number, dst: Buffer, into: Buffer): number | typeof NOTHING | typeof AGAIN {
    const p = this.pending(code, dst)
    if (p !== undefined) return p
    const len = Math.floor(code / 256)
    if (dst === this.inflight) this.finished()
    if (dst === into) return len
    // It arrived in a buffer of its own: larger than `into`, or begun by another receive.
    if (len > into.length) {
      throw new BufferTooShort(`the message has ${len} bytes, the buffer room for ${into.length}`, dst.subarray(0, len))
    }
    dst.copy(into, 0, 0, len)
    return len
  }

  /**
   * Receives asynchronously. Receives of one process wait side by side, each with its own
   * deadline; a large message that one of them started is finished by whichever comes next,
   * and abandoned (lost) when the last of them gives up.
   */
  recv(deadline: number | undefined, signal: AbortSignal | undefined, what: string, spinIf?: () => boolean): Promise<unknown> {
    if (!signal?.aborted) {
      // A message already here settles without building a wait.
      let v: unknown
      try {
        v = this.tryRecv()
      } catch (err) {
        return Promise.reject(err)
      }
      if (v !== NOTHING) return Promise.resolve(v)
    }
    return this.receive(() => this.tryRecv(), deadline, signal, what, spinIf)
  }

  /** Receives a message's raw bytes into `into` (Python's `recv_bytes_into`); resolves to its length. */
  recvInto(into: Buffer, deadline: number | undefined, signal: AbortSignal | undefined): Promise<number> {
    return this.receive(() => this.tryRecvInto(into), deadline, signal, 'recvBytesInto') as Promise<number>
  }

  /** `spinIf`: whether spinning is worth it now (a process waiting on several channels spins on none). */
  private receive(
    attempt: () => unknown,
    deadline: number | undefined,
    signal: AbortSignal | undefined,
    what: string,
    spinIf?: () => boolean,
  ): Promise<unknown> {
    const peer = this.peer
    const w: Waitable<{ v: unknown }> = {
      attempt: () => {
        const v = attempt()
        if (v !== NOTHING) return { v }
        if (peer?.gone()) {
          // Drain what the peer committed before it went, then report the end.
          const last = attempt()
          if (last !== NOTHING) return { v: last }
          throw this.error(closedByPeer(), true)
        }
        return undefined
      },
      spin: () => (spinIf === undefined || spinIf()) && native.channelSpinRecv(this.chan, this.ring),
      // Ask the kernel about the peer only before sleeping; while asleep, its socket wakes us.
      arm: (key) => !peer?.gone(true) && native.channelArmRecv(this.chan, this.ring, key),
      disarm: (key, ms) => native.channelDisarmRecv(this.chan, this.ring, key, ms),
      watch: peer && ((wake) => peer.watch(wake)),
    }
    this.recvsPending++
    return waitFor(w, deadline, signal, what).then(
      (r) => {
        this.recvsPending--
        return r.v
      },
      (err) => {
        if (--this.recvsPending === 0 && this.streaming) this.abandonRecv()
        throw err
      },
    )
  }

  /** Gives up the large message arriving: the next receiver, here or elsewhere, skips its rest. */
  private abandonRecv(): void {
    this.finished()
    native.channelAbandonRecv(this.chan, this.ring)
  }

  /** Blocks until a message arrives (or `timeout` ms pass: `TimeoutError`). */
  recvSync(timeout?: number): unknown {
    const deadline = deadlineOf(timeout)
    for (;;) {
      const dst = this.target()
      const v = this.take(this.recvSyncInto(dst, deadline), dst)
      if (v !== AGAIN && v !== NOTHING) return v
    }
  }

  /** Blocks until a message arrives and puts its raw bytes into `into`; returns its length. */
  recvIntoSync(into: Buffer, timeout?: number): number {
    const deadline = deadlineOf(timeout)
    for (;;) {
      const dst = this.inflight ?? into
      const len = this.intoResult(this.recvSyncInto(dst, deadline), dst, into)
      if (len !== AGAIN && len !== NOTHING) return len
    }
  }

  private recvSyncInto(dst: Buffer, deadline: number | undefined): number {
    try {
      return native.channelRecvSync(this.chan, this.ring, dst, remaining(deadline), this.peer?.fd ?? -1)
    } catch (err) {
      const e = this.error(err, true)
      // Out of time inside a large message: the binding gave it up.
      if (e instanceof TimeoutError) this.finished()
      throw e
    }
  }
}

/** Yields what `receive` resolves to until it rejects with `EOFError`: the end of the stream. */
export async function* untilEnd<T>(receive: () => Promise<T>): AsyncGenerator<T, void, undefined> {
  for (;;) {
    let v: T
    try {
      v = await receive()
    } catch (err) {
      if (err instanceof EOFError) return
      throw err
    }
    yield v
  }
}

/** Maps an inherited channel; a corrupt or foreign segment gives `ProtocolError`. */
export function adoptChannel(fd: number): Chan {
  try {
    return native.channelAdopt(fd)
  } catch (err) {
    throw fromNative(err)
  }
}

export { NOTHING }

/** The binding's error for a pipe whose other end is gone (as `fromNative` takes it). */
function closedByPeer(): Error {
  return Object.assign(new Error('the other end of the pipe is closed'), { code: 'ERR_CLOSED' })
}
