/**
 * Pipe and Connection: two ends joined by a shared-memory channel (one ring each way when
 * duplex). Each end also holds one side of a socket pair, so that, as with Python's pipes, a
 * receiver sees the end of the stream once every copy of the other end is closed, whether by
 * `close()` or by the death of the processes that held it.
 */
import net from 'node:net'
import { adoptChannel, type Peer, RingEnd, untilEnd } from './channel.js'
import { ClosedError, fromNative, InvalidStateError, TimeoutError, typeError } from './errors.js'
import { type HandleDescriptor, registerHandle, toHandle } from './handles.js'
import { type Chan, native } from './native.js'
import type { Serializer } from './serialize.js'
import { checkBoolean, checkCapacity, checkInteger, checkOptions, checkSerializer } from './validate.js'
import { deadlineOf, type WaitOptions, waitFor, waitOptions } from './wait.js'

export interface PipeOptions {
  /** Both ends can send and receive (default). `false`: `[reader, writer]` as in Python. */
  duplex?: boolean
  /** Bytes of ring per direction. Default 4 MiB. */
  capacityBytes?: number
  /** Replaces structured clone for the values sent through this pipe. */
  serializer?: Serializer
}

interface EndSpec {
  recvRing: number
  sendRing: number
}

/** A process an end was passed to as an argument: whether it still runs, and when it exits. */
export interface Borrower {
  isAlive(): boolean
  exited(): Promise<void>
  /** Runs `release` once the child is spawned (it holds its own copies of what was passed), or failed to be. */
  onSpawned(release: () => void): void
}

let lending: Borrower | undefined

/** @internal The process the handles being packed now are for (inside `Process.start`), if any. */
export function currentBorrower(): Borrower | undefined {
  return lending
}

/** @internal Runs `pack` noting that the ends it packs are passed to `borrower` (`Process.start`). */
export function lendWhile<T>(borrower: Borrower, pack: () => T): T {
  const outer = lending
  lending = borrower
  try {
    return pack()
  } finally {
    lending = outer
  }
}

/** One end of a pipe. */
export class Connection<T = unknown> implements AsyncIterable<T> {
  readonly #chan: Chan
  readonly #spec: EndSpec
  #peerFd: number
  #peerWatch: net.Socket | undefined
  #peerGone = false
  readonly #wakers = new Set<() => void>()
  readonly #in: RingEnd | undefined
  readonly #out: RingEnd | undefined
  #closed = false
  /** The other end of the same Pipe, while this process holds it. */
  #twin: Connection<T> | undefined
  /** The processes this end was passed to; while it is not used here after that, they are its only users. */
  readonly #lent = new Set<Borrower>()
  #usedHere = false

  /** @internal Use {@link Pipe}. */
  constructor(chan: Chan, spec: EndSpec, peerFd: number, serializer?: Serializer) {
    this.#chan = chan
    this.#spec = spec
    this.#peerFd = peerFd
    const self = this
    const peer: Peer = {
      get fd() {
        return self.#peerFd
      },
      gone: (probe) => (probe ? this.#isPeerGone() : this.#peerGone || this.#twinAbandoned()),
      watch: (wake) => this.#watchPeer(wake),
    }
    this.#in = spec.recvRing >= 0 ? new RingEnd(chan, spec.recvRing, serializer, peer) : undefined
    this.#out = spec.sendRing >= 0 ? new RingEnd(chan, spec.sendRing, serializer, peer) : undefined
  }

  /** Whether this end can receive. */
  get readable(): boolean {
    return this.#in !== undefined
  }

  /** Whether this end can send. */
  get writable(): boolean {
    return this.#out !== undefined
  }

  /** Whether `close()` was called on this end. */
  get closed(): boolean {
    return this.#closed
  }

  /** @internal Pipe() links its two ends. */
  static link<T>(a: Connection<T>, b: Connection<T>): void {
    a.#twin = b
    b.#twin = a
  }

  /**
   * The other end is held here only as a copy this process passed to children and has not used
   * since, and each of those children has exited: nobody can send any more (unless a child
   * passed it further on). Then this end sees the end of the stream, as if the copy was closed.
   */
  #twinAbandoned(): boolean {
    const twin = this.#twin
    if (!twin || twin.#closed || twin.#usedHere || twin.#lent.size === 0) return false
    for (const b of twin.#lent) if (b.isAlive()) return false
    // Not remembered: should this process use its copy after all, the pipe is open again.
    return true
  }

  #sender(): RingEnd {
    if (this.#closed) throw new ClosedError('the connection is closed')
    this.#usedHere = true
    if (!this.#out) throw new InvalidStateError('this end of the pipe is read-only')
    return this.#out
  }

  #receiver(): RingEnd {
    if (this.#closed) throw new ClosedError('the connection is closed')
    this.#usedHere = true
    if (!this.#in) throw new InvalidStateError('this end of the pipe is write-only')
    return this.#in
  }

  /** True once every copy of the other end is closed (its processes may have died). */
  #isPeerGone(): boolean {
    if (!this.#peerGone && this.#peerFd >= 0 && native.peerHungUp(this.#peerFd)) this.#peerGone = true
    return this.#peerGone || this.#twinAbandoned()
  }

  /** Lets async waits wake when the other end hangs up: the event loop watches the socket. */
  #watchPeer(wake: () => void): () => void {
    if (!this.#peerWatch && !this.#closed) {
      const sock = new net.Socket({ fd: this.#peerFd, readable: true, writable: false, allowHalfOpen: true })
      const gone = () => {
        this.#peerGone = true
        for (const w of [...this.#wakers]) w()
      }
      sock.on('end', gone)
      sock.on('close', gone)
      sock.on('error', gone)
      sock.on('data', () => {})
      sock.unref()
      this.#peerWatch = sock
    }
    const twin = this.#twin
    if (twin && !twin.#usedHere) {
      for (const b of twin.#lent) {
        b.exited().then(() => {
          if (this.#twinAbandoned()) for (const w of [...this.#wakers]) w()
        })
      }
    }
    this.#wakers.add(wake)
    return () => this.#wakers.delete(wake)
  }

  /**
   * Sends a value; waits while the pipe is full. Rejects with `BrokenPipeError` when the pipe is
   * full and every copy of the other end is closed.
   */
  send(value: T, opts?: WaitOptions): Promise<void> {
    try {
      return this.#sender().send(value, waitOptions(opts))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Sends a value, blocking the thread while the pipe is full (at most `timeout` ms). */
  sendSync(value: T, opts?: { timeout?: number } | number): void {
    this.#sender().sendSync(value, waitOptions(opts).timeout)
  }

  /** Sends raw bytes (a view of `buf` from `offset`, `size` bytes long). */
  sendBytes(buf: Uint8Array | ArrayBuffer, offset?: number, size?: number, opts?: WaitOptions): Promise<void> {
    try {
      return this.#sender().send(sliceBytes(buf, offset, size), waitOptions(opts))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** The blocking twin of `sendBytes`. */
  sendBytesSync(buf: Uint8Array | ArrayBuffer, offset?: number, size?: number, opts?: { timeout?: number } | number): void {
    this.#sender().sendSync(sliceBytes(buf, offset, size), waitOptions(opts).timeout)
  }

  /** Receives a value; rejects with `EOFError` once the other end is closed and nothing is left. */
  recv(opts?: WaitOptions): Promise<T> {
    try {
      const o = waitOptions(opts)
      return this.#receiver().recv(deadlineOf(o.timeout), o.signal, 'recv') as Promise<T>
    } catch (err) {
      // A promise-returning method reports a closed end or bad arguments as a rejection, never a throw.
      return Promise.reject(err)
    }
  }

  /** The blocking twin of `recv`: throws `EOFError` once the other end is closed and nothing is left. */
  recvSync(opts?: { timeout?: number } | number): T {
    const o = waitOptions(opts)
    return this.#receiver().recvSync(o.timeout) as T
  }

  /** Receives a message sent with `sendBytes` as a Buffer. */
  async recvBytes(opts?: WaitOptions): Promise<Buffer> {
    return toBuffer(await this.recv(opts))
  }

  /** The blocking twin of `recvBytes`. */
  recvBytesSync(opts?: { timeout?: number } | number): Buffer {
    return toBuffer(this.recvSync(opts))
  }

  /**
   * Receives a message's bytes into `buf` at `offset` (Python's `recv_bytes_into`) and resolves
   * to their count. Reusing one buffer saves the allocation a received message otherwise needs,
   * which for large messages costs more than the copy. A message longer than the room left
   * rejects with `BufferTooShort`, whose `data` holds all of it.
   */
  recvBytesInto(buf: Uint8Array, offset = 0, opts?: WaitOptions): Promise<number> {
    try {
      const o = waitOptions(opts)
      return this.#receiver().recvInto(intoView(buf, offset), deadlineOf(o.timeout), o.signal)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** The blocking twin of `recvBytesInto`. */
  recvBytesIntoSync(buf: Uint8Array, offset = 0, opts?: { timeout?: number } | number): number {
    return this.#receiver().recvIntoSync(intoView(buf, offset), waitOptions(opts).timeout)
  }

  /**
   * Whether data is available, waiting up to `timeout` ms (no argument: return at once). A
   * hung-up peer also counts as readable, as in Python: the next `recv` raises `EOFError`.
   */
  async poll(timeout?: number | WaitOptions): Promise<boolean> {
    const rx = this.#receiver()
    const o = waitOptions(timeout)
    try {
      await waitFor(
        {
          attempt: () => (native.channelCanRecv(rx.chan, rx.ring) || this.#isPeerGone() ? true : undefined),
          spin: () => native.channelSpinRecv(rx.chan, rx.ring),
          arm: (key) => native.channelArmRecv(rx.chan, rx.ring, key),
          disarm: (key, ms) => native.channelDisarmRecv(rx.chan, rx.ring, key, ms),
          watch: (wake) => this.#watchPeer(wake),
        },
        deadlineOf(o.timeout ?? 0),
        o.signal,
        'poll',
      )
      return true
    } catch (err) {
      if (err instanceof TimeoutError) return false
      throw err
    }
  }

  /** Closes this end in this process. The other end sees EOF once every copy is closed. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#peerWatch) this.#peerWatch.destroy()
    else native.closeFd(this.#peerFd)
    this.#peerFd = -1
    for (const w of [...this.#wakers]) w()
  }

  /** Receives values until the other end is closed and nothing is left (`for await`). */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return untilEnd(() => this.recv())
  }

  /** `using conn = …`: closes this end. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `await using conn = …`: closes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** @internal How the end travels to another process. */
  [toHandle](): HandleDescriptor {
    if (this.#closed) throw new ClosedError('cannot pass a closed connection to another process')
    if (lending) this.#lent.add(lending)
    return {
      type: 'Connection',
      data: { recvRing: this.#spec.recvRing, sendRing: this.#spec.sendRing },
      fds: [native.channelInfo(this.#chan).fd, this.#peerFd],
    }
  }
}

function sliceBytes(buf: Uint8Array | ArrayBuffer, offset = 0, size?: number): Buffer {
  checkInteger('offset', offset, 0)
  if (size !== undefined) checkInteger('size', size, 0)
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : buf
  if (!(bytes instanceof Uint8Array)) throw typeError('sendBytes takes a Buffer, Uint8Array or ArrayBuffer')
  const end = size === undefined ? bytes.byteLength : offset + size
  if (offset < 0 || end > bytes.byteLength || end < offset)
    throw Object.assign(new RangeError('offset/size out of range'), { code: 'ERR_OUT_OF_RANGE' })
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, end - offset)
}

function intoView(buf: Uint8Array, offset: number): Buffer {
  if (!(buf instanceof Uint8Array)) throw typeError('recvBytesInto takes a Buffer or Uint8Array')
  checkInteger('offset', offset, 0, buf.byteLength)
  return Buffer.from(buf.buffer, buf.byteOffset + offset, buf.byteLength - offset)
}

function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  if (v instanceof ArrayBuffer) return Buffer.from(v)
  throw typeError('the message received is not bytes (it was not sent with sendBytes)')
}

/** A pair of connected ends: `[a, b]` (duplex) or `[reader, writer]` (`duplex: false`). */
export function Pipe<T = unknown>(opts: PipeOptions | boolean = {}): [Connection<T>, Connection<T>] {
  const o = typeof opts === 'boolean' ? { duplex: opts } : checkOptions('Pipe options', opts)
  const duplex = o.duplex === undefined ? true : checkBoolean('duplex', o.duplex)
  const capacity = o.capacityBytes === undefined ? 4 << 20 : checkCapacity(o.capacityBytes)
  checkSerializer(o.serializer)
  let chan: Chan
  let fa: number
  let fb: number
  try {
    chan = native.channelCreate(duplex ? 2 : 1, capacity, 0xffff_ffff - 64, 0)
    ;[fa, fb] = native.socketPair() as [number, number]
  } catch (err) {
    throw fromNative(err)
  }
  const ends: [Connection<T>, Connection<T>] = duplex
    ? [
        new Connection<T>(chan, { recvRing: 1, sendRing: 0 }, fa, o.serializer),
        new Connection<T>(chan, { recvRing: 0, sendRing: 1 }, fb, o.serializer),
      ]
    : [
        new Connection<T>(chan, { recvRing: 0, sendRing: -1 }, fa, o.serializer),
        new Connection<T>(chan, { recvRing: -1, sendRing: 0 }, fb, o.serializer),
      ]
  Connection.link(ends[0], ends[1])
  return ends
}

registerHandle('Connection', (data, [segFd, peerFd]) => {
  const chan = adoptChannel(segFd as number)
  return new Connection(chan, data as unknown as EndSpec, peerFd as number)
})
