/**
 * Listener and Client: Python's `multiprocessing.connection` over TCP or a Unix socket. With an
 * `authkey`, each new connection passes the HMAC handshake in both directions (`authkey.ts`)
 * before `accept()` hands it out; a peer that fails it, sends garbage or says nothing in time is
 * dropped, and the listener goes on serving.
 */
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import net from 'node:net'

import { answerChallenge, deliverChallenge, HANDSHAKE_MAX_BYTES, toAuthkey } from './authkey.js'
import { ClosedError, OSError, rangeError, TimeoutError, typeError } from './errors.js'
import type { Serializer } from './serialize.js'
import { DEFAULT_MAX_MESSAGE_BYTES, SocketConnection } from './socket-connection.js'
import { checkInteger, checkOptions, checkSerializer, checkString } from './validate.js'
import { deadlineOf, type WaitOptions, waitOptions } from './wait.js'

/** A TCP address (`'host:port'`, `'[::1]:port'`) or a Unix socket path (`'\0name'`: abstract). */
export type Address = string

/** Options of {@link Listener}. */
export interface ListenerOptions {
  /** `'host:port'` (port 0: any free port) or a Unix socket path. Default `'127.0.0.1:0'`. */
  address?: Address
  /** Without one, connections are not authenticated (as Python's `authkey=None`). */
  authkey?: Uint8Array | string
  /** Pending connections the system queues (Python's `backlog`). Default 511. */
  backlog?: number
  /** Replaces the package's serialization for `send`/`recv` on the connections handed out. */
  serializer?: Serializer
  /** A message announced as longer than this drops the connection. Default 1 GiB. */
  maxMessageBytes?: number
  /** How long a new peer has to complete the handshake (ms). Default 20000. */
  handshakeTimeout?: number
}

/** Options of {@link Client}. */
export interface ClientOptions {
  /** The listener's address: `'host:port'` or a Unix socket path. */
  address: Address
  /** The listener's key; without one no handshake takes place (as Python's `authkey=None`). */
  authkey?: Uint8Array | string
  /** Replaces the package's serialization for `send`/`recv`. */
  serializer?: Serializer
  /** A message announced as longer than this drops the connection. Default 1 GiB. */
  maxMessageBytes?: number
  /** How long connecting and the handshake may take (ms). Default 20000. */
  timeout?: number
}

const HANDSHAKE_TIMEOUT_MS = 20_000

type Endpoint = { path: string } | { host: string; port: number }

/** @internal Parses an address: `host:port` is TCP, anything else a Unix socket path. */
export function parseAddress(address: unknown): Endpoint {
  const a = checkString('address', address)
  const m = /^(?:\[([^\]]+)\]|([^:/\0]*)):(\d+)$/.exec(a)
  if (m) {
    const port = Number(m[3])
    if (port > 65535) throw rangeError(`the port of ${a} must be from 0 to 65535`)
    return { host: m[1] ?? (m[2] || '127.0.0.1'), port }
  }
  if (a.length === 0) throw rangeError('address must not be empty')
  return { path: a }
}

function formatAddress(s: net.AddressInfo | string | null, fallback: string): string {
  if (s === null) return fallback
  if (typeof s === 'string') return s
  return s.family === 'IPv6' ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`
}

function checkConnOptions(o: { serializer?: unknown; maxMessageBytes?: unknown; authkey?: unknown }): {
  key: Buffer | undefined
  max: number
} {
  checkSerializer(o.serializer)
  const max = o.maxMessageBytes === undefined ? DEFAULT_MAX_MESSAGE_BYTES : checkInteger('maxMessageBytes', o.maxMessageBytes, 1)
  return { key: o.authkey === undefined ? undefined : toAuthkey(o.authkey), max }
}

/** A bound socket that hands out authenticated {@link SocketConnection}s. */
export class Listener<T = unknown> implements AsyncIterable<SocketConnection<T>> {
  readonly #server: net.Server
  readonly #key: Buffer | undefined
  readonly #max: number
  readonly #serializer: Serializer | undefined
  readonly #handshakeTimeout: number
  readonly #ready: SocketConnection<T>[] = []
  readonly #accepting = new Set<(c: SocketConnection<T> | undefined) => void>()
  readonly #inHandshake = new Set<net.Socket>()
  readonly #watchers = new Set<() => void>()
  #address: string
  #closed = false
  #listening: Promise<void>
  #path: string | undefined

  constructor(opts: ListenerOptions = {}) {
    const o = checkOptions('Listener options', opts)
    const { key, max } = checkConnOptions(o)
    this.#key = key
    this.#max = max
    this.#serializer = o.serializer
    this.#handshakeTimeout =
      o.handshakeTimeout === undefined ? HANDSHAKE_TIMEOUT_MS : checkInteger('handshakeTimeout', o.handshakeTimeout, 0)
    const backlog = o.backlog === undefined ? 511 : checkInteger('backlog', o.backlog, 0, 65535)
    const address = o.address ?? '127.0.0.1:0'
    const endpoint = parseAddress(address)
    this.#address = address
    this.#server = net.createServer({ pauseOnConnect: false, noDelay: true }, (sock) => this.#incoming(sock))
    this.#listening = new Promise<void>((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new OSError('ERR_OS', `cannot listen on ${address}: ${err.code ?? err.message}`, { cause: err }))
      })
      const done = () => {
        this.#address = formatAddress(this.#server.address(), address)
        this.#server.on('error', () => {})
        resolve()
      }
      if ('path' in endpoint) {
        this.#path = endpoint.path.startsWith('\0') ? undefined : endpoint.path
        this.#server.listen({ path: endpoint.path, backlog }, done)
      } else this.#server.listen({ host: endpoint.host, port: endpoint.port, backlog }, done)
    })
    this.#listening.catch(() => {})
    this.#server.unref()
  }

  /** Resolves once the socket is bound (rejects with `OSError` if it cannot be). */
  listening(): Promise<this> {
    return this.#listening.then(() => this)
  }

  /** The bound address, with the real port once listening: `'127.0.0.1:41234'` or the path. */
  get address(): string {
    return this.#address
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed
  }

  #incoming(sock: net.Socket): void {
    if (this.#closed) {
      sock.destroy()
      return
    }
    sock.on('error', () => {})
    const conn = new SocketConnection<T>(sock, {
      serializer: this.#serializer,
      maxMessageBytes: this.#key ? HANDSHAKE_MAX_BYTES : this.#max,
    })
    if (!this.#key) {
      this.#deliver(conn)
      return
    }
    this.#inHandshake.add(sock)
    const key = this.#key
    const t = this.#handshakeTimeout
    deliverChallenge(conn, key, t)
      .then(() => answerChallenge(conn, key, t))
      .then(
        () => {
          this.#inHandshake.delete(sock)
          conn.setMaxMessageBytes(this.#max)
          this.#deliver(conn)
        },
        () => {
          // Wrong key, garbage, silence: dropped; the listener is unaffected.
          this.#inHandshake.delete(sock)
          sock.destroy()
        },
      )
  }

  #deliver(conn: SocketConnection<T>): void {
    if (this.#closed) {
      conn.close()
      return
    }
    const [first] = this.#accepting
    if (first) {
      this.#accepting.delete(first)
      first(conn)
    } else {
      this.#ready.push(conn)
      for (const w of [...this.#watchers]) w()
    }
  }

  /** How many authenticated connections wait to be accepted (`accept()` resolves at once when > 0). */
  get pending(): number {
    return this.#ready.length
  }

  /** The next authenticated connection. Rejects with `ClosedError` once the listener is closed. */
  async accept(opts?: WaitOptions): Promise<SocketConnection<T>> {
    const o = waitOptions(opts)
    if (this.#closed) throw new ClosedError('accept() on a closed listener')
    await this.#listening
    if (this.#closed) throw new ClosedError('the listener was closed')
    const ready = this.#ready.shift()
    if (ready) return ready
    const deadline = deadlineOf(o.timeout)
    return new Promise<SocketConnection<T>>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const settle = (c: SocketConnection<T> | undefined) => {
        if (timer) clearTimeout(timer)
        o.signal?.removeEventListener('abort', onAbort)
        if (this.#accepting.size === 0 && this.#watchers.size === 0) this.#server.unref()
        if (c) resolve(c)
        else reject(new ClosedError('the listener was closed'))
      }
      const onAbort = () => {
        this.#accepting.delete(settle)
        settle(undefined)
      }
      this.#accepting.add(settle)
      this.#server.ref()
      if (deadline !== undefined) {
        timer = setTimeout(
          () => {
            this.#accepting.delete(settle)
            if (this.#accepting.size === 0 && this.#watchers.size === 0) this.#server.unref()
            o.signal?.removeEventListener('abort', onAbort)
            reject(new TimeoutError('accept timed out'))
          },
          Math.max(0, deadline - performance.now()),
        )
      }
      o.signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** @internal Resolves once a connection is ready to be accepted or the listener closed (for `wait`). */
  whenPending(signal: AbortSignal): Promise<void> {
    if (this.#ready.length > 0 || this.#closed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        this.#watchers.delete(done)
        signal.removeEventListener('abort', done)
        if (this.#watchers.size === 0 && this.#accepting.size === 0) this.#server.unref()
        resolve()
      }
      this.#watchers.add(done)
      this.#server.ref()
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /** Stops listening; pending `accept()`s reject, connections not yet accepted are closed. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#server.close()
    for (const s of this.#inHandshake) s.destroy()
    for (const c of this.#ready.splice(0)) c.close()
    for (const settle of [...this.#accepting]) settle(undefined)
    this.#accepting.clear()
    for (const w of [...this.#watchers]) w()
    if (this.#path) rmSync(this.#path, { force: true })
  }

  /** Accepts connections until the listener is closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<SocketConnection<T>> {
    for (;;) {
      try {
        yield await this.accept()
      } catch (err) {
        if (err instanceof ClosedError) return
        throw err
      }
    }
  }

  /** `using listener = …`: closes it. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `await using listener = …`: closes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }
}

/**
 * Connects to a {@link Listener} (or a CPython `multiprocessing.connection.Listener`) and, with
 * an `authkey`, passes its handshake: rejects with `AuthenticationError` on a wrong key.
 */
export async function Client<T = unknown>(opts: ClientOptions): Promise<SocketConnection<T>> {
  if (typeof opts !== 'object' || opts === null) throw typeError('Client takes an options object')
  const { key, max } = checkConnOptions(opts)
  const timeout = opts.timeout === undefined ? HANDSHAKE_TIMEOUT_MS : checkInteger('timeout', opts.timeout, 0)
  const endpoint = parseAddress(opts.address)
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = 'path' in endpoint ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host, port: endpoint.port })
    const timer = setTimeout(() => {
      s.destroy()
      reject(new TimeoutError(`connecting to ${opts.address} timed out`))
    }, timeout)
    s.once('connect', () => {
      clearTimeout(timer)
      s.removeAllListeners('error')
      s.on('error', () => {})
      resolve(s)
    })
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(new OSError('ERR_OS', `cannot connect to ${opts.address}: ${err.code ?? err.message}`, { cause: err }))
    })
  })
  const conn = new SocketConnection<T>(sock, { serializer: opts.serializer, maxMessageBytes: key ? HANDSHAKE_MAX_BYTES : max })
  if (key) {
    try {
      await answerChallenge(conn, key, timeout)
      await deliverChallenge(conn, key, timeout)
    } catch (err) {
      sock.destroy()
      throw err
    }
    conn.setMaxMessageBytes(max)
  }
  return conn
}

/** @internal A random abstract Unix socket address (nothing on the file system to clean up). */
export function arbitraryAddress(): Address {
  return `\0multiproc-${process.pid}-${randomBytes(12).toString('hex')}`
}
