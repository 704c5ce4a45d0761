/**
 * A Connection over a stream socket (TCP or Unix), as Python's `multiprocessing.connection`
 * makes them for `Listener`/`Client`. The wire is CPython's: each message is a 4-byte big-endian
 * length (or -1 and an 8-byte length) and its bytes, so `sendBytes`/`recvBytes` talk to a CPython
 * `Connection`'s `send_bytes`/`recv_bytes` byte for byte. A value sent with `send` is its kind
 * (one byte) followed by the package's serialization, read back by `recv` on this side.
 */
import type net from 'node:net'

import {
  AbortError,
  BrokenPipeError,
  BufferTooShort,
  ClosedError,
  EOFError,
  ProtocolError,
  SerializationError,
  TimeoutError,
  typeError,
} from './errors.js'
import { decode, encode, type Serializer } from './serialize.js'
import { checkInteger } from './validate.js'
import { deadlineOf, type WaitOptions, waitOptions } from './wait.js'

/** The longest message a socket Connection accepts unless told otherwise (1 GiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 30

/** How much a peer may send ahead of the reader before the socket is paused. */
const HIGH_WATER_BYTES = 8 << 20

/** @internal Options a socket connection is made with (by `Listener` and `Client`). */
export interface SocketConnectionOptions {
  /** Replaces the package's serialization for `send`/`recv`. */
  serializer?: Serializer | undefined
  /** A message announced as longer than this drops the connection (`ProtocolError`). */
  maxMessageBytes?: number | undefined
}

/** Splits a byte stream into CPython's length-prefixed messages. */
export class FrameReader {
  #chunks: Buffer[] = []
  #buffered = 0
  /** The length of the message being read, once its header is in. */
  #want = -1
  #headerBytes = 0

  constructor(public max: number) {}

  /** Adds bytes; returns the messages they complete. Throws `ProtocolError` on a bad header. */
  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    const out: Buffer[] = []
    for (;;) {
      if (this.#want < 0) {
        if (this.#buffered < 4) break
        const head = this.#peek(4)
        const n = head.readInt32BE(0)
        if (n === -1) {
          if (this.#buffered < 12) break
          const big = this.#peek(12).readBigUInt64BE(4)
          if (big > BigInt(this.max)) throw new ProtocolError(`a message of ${big} bytes announced (the limit is ${this.max})`)
          this.#want = Number(big)
          this.#headerBytes = 12
        } else {
          if (n < 0) throw new ProtocolError(`a negative message length (${n}) announced`)
          if (n > this.max) throw new ProtocolError(`a message of ${n} bytes announced (the limit is ${this.max})`)
          this.#want = n
          this.#headerBytes = 4
        }
      }
      if (this.#buffered < this.#headerBytes + this.#want) break
      const all = this.#take(this.#headerBytes + this.#want)
      out.push(all.subarray(this.#headerBytes))
      this.#want = -1
    }
    return out
  }

  /** Bytes held for a message not yet complete. */
  get buffered(): number {
    return this.#buffered
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0] && this.#chunks[0].length >= n) return this.#chunks[0]
    const joined = Buffer.concat(this.#chunks)
    this.#chunks = [joined]
    return joined
  }

  #take(n: number): Buffer {
    const head = this.#peek(n)
    const rest = head.subarray(n)
    this.#chunks[0] = rest
    if (rest.length === 0) this.#chunks.shift()
    this.#buffered -= n
    return head.subarray(0, n)
  }
}

/** One framed message as bytes: CPython's header and the payload. */
export function frame(payload: Uint8Array): Buffer[] {
  const n = payload.byteLength
  if (n > 0x7fffffff) {
    const head = Buffer.alloc(12)
    head.writeInt32BE(-1, 0)
    head.writeBigUInt64BE(BigInt(n), 4)
    return [head, Buffer.from(payload.buffer, payload.byteOffset, n)]
  }
  const head = Buffer.alloc(4)
  head.writeInt32BE(n, 0)
  return [head, Buffer.from(payload.buffer, payload.byteOffset, n)]
}

interface Waiter {
  wake(): void
}

/** One end of a socket connection made by {@link Listener} or {@link Client}. */
export class SocketConnection<T = unknown> implements AsyncIterable<T> {
  readonly #socket: net.Socket
  readonly #serializer: Serializer | undefined
  readonly #reader: FrameReader
  readonly #inbox: Buffer[] = []
  #inboxBytes = 0
  #eof = false
  #failure: Error | undefined
  #closed = false
  readonly #waiters = new Set<Waiter>()
  #pending = 0

  /** @internal Use {@link Listener} or {@link Client}. */
  constructor(socket: net.Socket, opts: SocketConnectionOptions = {}) {
    this.#socket = socket
    this.#serializer = opts.serializer
    this.#reader = new FrameReader(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES)
    socket.setNoDelay?.(true)
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[]
      try {
        frames = this.#reader.push(chunk)
      } catch (err) {
        // A peer that breaks the framing is dropped: nothing after it can be trusted.
        this.#fail(err as Error)
        return
      }
      for (const f of frames) {
        this.#inbox.push(f)
        this.#inboxBytes += f.length
      }
      if (this.#inboxBytes + this.#reader.buffered > HIGH_WATER_BYTES) socket.pause()
      if (frames.length > 0) this.#wakeAll()
    })
    const ended = () => {
      this.#eof = true
      this.#wakeAll()
    }
    socket.on('end', ended)
    socket.on('close', ended)
    socket.on('error', (err) => {
      this.#failure ??= err
      ended()
    })
    socket.on('drain', () => this.#wakeAll())
    socket.unref()
  }

  /** @internal The handshake reads with CPython's 256-byte limit, then the connection's own applies. */
  setMaxMessageBytes(max: number): void {
    this.#reader.max = max
  }

  /** Socket connections always both send and receive. */
  get readable(): boolean {
    return true
  }

  /** Socket connections always both send and receive. */
  get writable(): boolean {
    return true
  }

  /** Whether `close()` was called here. */
  get closed(): boolean {
    return this.#closed
  }

  /** The peer's address: `'host:port'`, or the socket path for a Unix socket. */
  get remoteAddress(): string {
    const s = this.#socket
    return s.remoteAddress ? `${s.remoteFamily === 'IPv6' ? `[${s.remoteAddress}]` : s.remoteAddress}:${s.remotePort}` : 'unix'
  }

  #fail(err: Error): void {
    this.#failure ??= err
    this.#eof = true
    this.#socket.destroy()
    this.#wakeAll()
  }

  #wakeAll(): void {
    for (const w of [...this.#waiters]) w.wake()
  }

  #hold(): void {
    if (this.#pending++ === 0) this.#socket.ref()
  }

  #release(): void {
    if (--this.#pending === 0) this.#socket.unref()
  }

  /** Waits until `ready()` holds, the deadline passes (`TimeoutError`) or the signal aborts. */
  async #until(ready: () => boolean, opts: WaitOptions, what: string): Promise<void> {
    if (ready()) return
    const deadline = deadlineOf(opts.timeout)
    const signal = opts.signal
    if (signal?.aborted) throw abortError(what, signal)
    this.#hold()
    try {
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined
        const waiter: Waiter = {
          wake: () => {
            if (!ready()) return
            done()
            resolve()
          },
        }
        const onAbort = () => {
          done()
          reject(abortError(what, signal as AbortSignal))
        }
        const done = () => {
          this.#waiters.delete(waiter)
          if (timer) clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
        }
        this.#waiters.add(waiter)
        signal?.addEventListener('abort', onAbort, { once: true })
        if (deadline !== undefined) {
          timer = setTimeout(
            () => {
              done()
              reject(new TimeoutError(`${what} timed out`))
            },
            Math.max(0, deadline - performance.now()),
          )
        }
      })
    } finally {
      this.#release()
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('the connection is closed')
  }

  async #write(parts: Buffer[], opts: WaitOptions): Promise<void> {
    this.#checkOpen()
    const s = this.#socket
    if (s.destroyed || s.writableEnded) throw new BrokenPipeError('the other end of the connection is closed', { cause: this.#failure })
    let flushed = true
    for (const p of parts) flushed = s.write(p)
    if (flushed) return
    await this.#until(() => !s.writableNeedDrain || s.destroyed, opts, 'send')
    if (s.destroyed && s.writableLength > 0)
      throw new BrokenPipeError('the other end of the connection is closed', { cause: this.#failure })
  }

  /** Sends a value (the package's serialization, or this connection's `serializer`). */
  async send(value: T, opts?: WaitOptions): Promise<void> {
    const o = waitOptions(opts)
    this.#checkOpen()
    const { kind, bytes } = encode(value, this.#serializer)
    const head = Buffer.allocUnsafe(5)
    head.writeInt32BE(bytes.byteLength + 1, 0)
    head[4] = kind
    if (bytes.byteLength + 1 > 0x7fffffff) {
      const body = Buffer.concat([Buffer.of(kind), bytes])
      return this.#write(frame(body), o)
    }
    return this.#write([head, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)], o)
  }

  /** Sends raw bytes (a view of `buf` from `offset`, `size` bytes long): CPython's `send_bytes`. */
  async sendBytes(buf: Uint8Array | ArrayBuffer, offset = 0, size?: number, opts?: WaitOptions): Promise<void> {
    const o = waitOptions(opts)
    return this.#write(frame(sliceBytes(buf, offset, size)), o)
  }

  /** The next message's bytes, waiting for one; `EOFError` once the peer has closed. */
  async #next(opts: WaitOptions, what: string): Promise<Buffer> {
    this.#checkOpen()
    await this.#until(() => this.#inbox.length > 0 || this.#eof || this.#closed, opts, what)
    this.#checkOpen()
    const msg = this.#inbox.shift()
    if (msg === undefined) {
      if (this.#failure instanceof ProtocolError) throw this.#failure
      throw new EOFError('the other end of the connection is closed', { cause: this.#failure })
    }
    this.#inboxBytes -= msg.length
    if (this.#socket.isPaused() && this.#inboxBytes + this.#reader.buffered <= HIGH_WATER_BYTES / 2) this.#socket.resume()
    return msg
  }

  /** Receives a value sent with `send`; rejects with `EOFError` once the peer has closed. */
  async recv(opts?: WaitOptions): Promise<T> {
    const msg = await this.#next(waitOptions(opts), 'recv')
    if (msg.length === 0) throw new SerializationError('an empty message cannot be a value (was it sent with sendBytes?)')
    return decode(msg[0] as number, msg.subarray(1), this.#serializer, true) as T
  }

  /** Receives a message's raw bytes (CPython's `recv_bytes`). */
  recvBytes(opts?: WaitOptions): Promise<Buffer> {
    return this.#next(waitOptions(opts), 'recvBytes')
  }

  /** Receives a message's bytes into `buf` at `offset` and resolves to their count (`BufferTooShort` if longer). */
  async recvBytesInto(buf: Uint8Array, offset = 0, opts?: WaitOptions): Promise<number> {
    if (!(buf instanceof Uint8Array)) throw typeError('recvBytesInto takes a Buffer or Uint8Array')
    checkInteger('offset', offset, 0, buf.byteLength)
    const msg = await this.#next(waitOptions(opts), 'recvBytesInto')
    if (msg.length > buf.byteLength - offset) {
      throw new BufferTooShort(`the message (${msg.length} bytes) is longer than the room left (${buf.byteLength - offset})`, msg)
    }
    buf.set(msg, offset)
    return msg.length
  }

  /**
   * Whether a message (or the end of the stream) is there, waiting up to `timeout` ms (no
   * argument: return at once).
   */
  async poll(timeout?: number | WaitOptions): Promise<boolean> {
    this.#checkOpen()
    const o = waitOptions(timeout)
    try {
      await this.#until(() => this.#inbox.length > 0 || this.#eof, { timeout: o.timeout ?? 0, signal: o.signal }, 'poll')
      return true
    } catch (err) {
      if (err instanceof TimeoutError) return false
      throw err
    }
  }

  /** Closes the connection; the peer sees the end of the stream. Closing twice does nothing. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#socket.end()
    this.#socket.destroySoon?.()
    this.#wakeAll()
  }

  /** Receives values until the peer closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      try {
        yield await this.recv()
      } catch (err) {
        if (err instanceof EOFError || (err instanceof ClosedError && this.#closed)) return
        throw err
      }
    }
  }

  /** `using conn = …`: closes it. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `await using conn = …`: closes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }
}

function abortError(what: string, signal: AbortSignal): Error {
  return new AbortError(`${what} was aborted`, { cause: signal.reason })
}

function sliceBytes(buf: Uint8Array | ArrayBuffer, offset: number, size?: number): Buffer {
  checkInteger('offset', offset, 0)
  if (size !== undefined) checkInteger('size', size, 0)
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : buf
  if (!(bytes instanceof Uint8Array)) throw typeError('sendBytes takes a Buffer, Uint8Array or ArrayBuffer')
  const end = size === undefined ? bytes.byteLength : offset + size
  if (end > bytes.byteLength) throw Object.assign(new RangeError('offset/size out of range'), { code: 'ERR_OUT_OF_RANGE' })
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, end - offset)
}
