/**
 * A manager's server: a Listener whose authenticated connections call methods of the shared
 * objects it holds (`manager-objects.ts`, and the registered types). Requests of one client are
 * started in the order they arrive and may finish in any order (a blocked `get` does not hold
 * up the client's other calls). A client that goes away has its waits cancelled and the locks
 * it held released. Runs in the manager process (`runManager`) or in the caller's own
 * (`Manager.serve`).
 */
import { randomBytes } from 'node:crypto'

import { adoptChannel } from './channel.js'
import { Connection } from './connection.js'
import { InvalidStateError, typeError } from './errors.js'
import { receiveFds, unpackHandles } from './handles.js'
import { Listener } from './listener.js'
import {
  type CallContext,
  EXPOSED,
  Shared,
  SharedArrayObject,
  SharedBarrier,
  SharedCondition,
  SharedDict,
  SharedEvent,
  SharedJoinableQueue,
  SharedList,
  SharedLock,
  SharedNamespace,
  SharedQueue,
  SharedSemaphore,
  SharedValueObject,
} from './manager-objects.js'
import './proxy.js'
import type { Reply, Request } from './proxy.js'
import { toRecord } from './remote-error.js'
import type { SocketConnection } from './socket-connection.js'

/** A registered type: the export `name` of `module` (a class or a factory function). */
export interface TypeSpec {
  module: string
  name: string
}

export interface ServerOptions {
  address: string
  authkey: Buffer
  types?: Record<string, TypeSpec> | undefined
}

/** A client's link: a socket connection, or the starter's shared-memory pipe. */
export interface ServedLink extends AsyncIterable<unknown> {
  send(value: unknown): Promise<void>
  close(): void
  readonly closed: boolean
}

interface Entry {
  typeid: string
  obj: object
  name: string | undefined
  /**
   * Kept for the manager's life: named, or it travelled as a handle (stored in another object,
   * passed to a process, put in a message), so references to it may be anywhere.
   */
  pinned: boolean
  /** The proxies made by `create`, per client, not yet garbage collected there. */
  readonly made: Map<number, number>
}

/** What `create` resolves with: enough for a proxy. */
export interface Created {
  id: string
  typeid: string
}

const HANDLE_MARK = '__multiproc_handle__'

function builtin(typeid: string, args: unknown[], lookup: (ref: unknown) => object | undefined): Shared | undefined {
  const [a, b] = args
  switch (typeid) {
    case 'dict':
      return new SharedDict(a)
    case 'list':
      return new SharedList(a)
    case 'namespace':
      return new SharedNamespace(a)
    case 'Queue':
      return new SharedQueue(a as { maxsize?: number })
    case 'JoinableQueue':
      return new SharedJoinableQueue(a as { maxsize?: number })
    case 'Lock':
      return new SharedLock(false)
    case 'RLock':
      return new SharedLock(true)
    case 'Semaphore':
      return new SharedSemaphore(a === undefined ? 1 : (a as number), false)
    case 'BoundedSemaphore':
      return new SharedSemaphore(a === undefined ? 1 : (a as number), true)
    case 'Event':
      return new SharedEvent()
    case 'Condition': {
      if (a === undefined || a === null) return new SharedCondition()
      const lock = lookup(a)
      if (!(lock instanceof SharedLock)) throw typeError('a Condition takes a Lock or RLock of the same manager')
      return new SharedCondition(lock)
    }
    case 'Barrier':
      return new SharedBarrier(a as number, b as { timeout?: number })
    case 'Value':
      return new SharedValueObject(a, b)
    case 'Array':
      return new SharedArrayObject(a, b)
    default:
      return undefined
  }
}

/** A call's context; its AbortController is made only if a method waits (most never do). */
class LazyAbort implements CallContext {
  #ac: AbortController | undefined
  #aborted = false
  constructor(
    readonly client: number,
    readonly clientSignal: AbortSignal,
  ) {}
  get signal(): AbortSignal {
    if (!this.#ac) {
      this.#ac = new AbortController()
      if (this.#aborted) this.#ac.abort()
    }
    return this.#ac.signal
  }
  abort(): void {
    this.#aborted = true
    this.#ac?.abort()
  }
}

/** The server side of a manager. */
export class ManagerServer {
  readonly #listener: Listener<Request>
  readonly #types: Record<string, TypeSpec>
  readonly #loaded = new Map<string, Promise<unknown>>()
  readonly #objects = new Map<string, Entry>()
  readonly #names = new Map<string, string>()
  readonly #clients = new Map<number, { conn: ServedLink }>()
  #nextClient = 1
  #stopping = false
  /** The starter's side channel: the links of its children arrive on it. */
  carrierFd: number | undefined
  #stopped!: () => void
  /** Resolves once the server has shut down. */
  readonly stopped: Promise<void>

  private constructor(listener: Listener<Request>, types: Record<string, TypeSpec>) {
    this.#listener = listener
    this.#types = types
    this.stopped = new Promise<void>((resolve) => {
      this.#stopped = resolve
    })
  }

  /** Binds `opts.address` and starts serving. */
  static async start(opts: ServerOptions): Promise<ManagerServer> {
    const listener = await new Listener<Request>({ address: opts.address, authkey: opts.authkey }).listening()
    const server = new ManagerServer(listener, opts.types ?? {})
    server.#acceptLoop()
    return server
  }

  get address(): string {
    return this.#listener.address
  }

  async #acceptLoop(): Promise<void> {
    for await (const conn of this.#listener) this.serve(conn as SocketConnection<unknown>)
  }

  /** Serves one client over `conn` until it closes. */
  async serve(conn: ServedLink): Promise<void> {
    const client = this.#nextClient++
    const gone = new AbortController()
    const calls = new Map<number, LazyAbort>()
    this.#clients.set(client, { conn })
    try {
      for await (const msg of conn) {
        if (!Array.isArray(msg)) break
        const req = msg as Request
        if (req.length === 1) {
          calls.get(req[0])?.abort()
          continue
        }
        const [c, o, m, a] = req
        if (req.length !== 4 || typeof c !== 'number' || typeof o !== 'string' || typeof m !== 'string' || !Array.isArray(a)) break
        // Cancelled by the client, or with all the client's calls when it goes away (below).
        const ctx = new LazyAbort(client, gone.signal)
        calls.set(c, ctx)
        const running = this.#handle(conn, c, o, m, a, ctx)
        if (running) running.finally(() => calls.delete(c))
        else calls.delete(c)
      }
    } catch {
      // A client that breaks the protocol is dropped like one that went away.
    } finally {
      conn.close()
      gone.abort()
      for (const ac of calls.values()) ac.abort()
      this.#clients.delete(client)
      for (const [id, e] of [...this.#objects]) {
        if (e.obj instanceof Shared) e.obj.dropClient(client)
        if (e.made.has(client)) this.#release(id, client, true)
      }
    }
  }

  /** Runs a call; a result that is there at once is sent at once (before the next receive spins). */
  #handle(conn: ServedLink, c: number, o: string, m: string, a: unknown[], ctx: CallContext): Promise<void> | undefined {
    let result: unknown
    try {
      result = this.#dispatch(o, m, a, ctx)
    } catch (err) {
      return this.#reply(conn, [c, undefined, toRecord(err)])
    }
    if (result instanceof Promise) {
      return result.then(
        (v) => this.#reply(conn, [c, v]),
        (err) => this.#reply(conn, [c, undefined, toRecord(err)]),
      )
    }
    return this.#reply(conn, [c, result])
  }

  #reply(conn: ServedLink, reply: Reply): Promise<void> {
    let sent: Promise<void>
    try {
      sent = conn.send(reply)
    } catch (err) {
      sent = Promise.reject(err)
    }
    // A result that cannot be serialised is the call's error; a closed connection is nobody's.
    return sent.catch((err) => {
      if (!conn.closed) return conn.send([reply[0], undefined, toRecord(err)] satisfies Reply).catch(() => {})
    })
  }

  #lookup = (ref: unknown): object | undefined => {
    const data = (ref as { [HANDLE_MARK]?: string; data?: { id?: unknown } } | null)?.data
    if (typeof data?.id !== 'string') return undefined
    return this.#objects.get(data.id)?.obj
  }

  #dispatch(o: string, m: string, a: unknown[], ctx: CallContext): unknown {
    if (o === '') return this.#managerCall(m, a, ctx.client)
    const entry = this.#objects.get(o)
    if (!entry) throw new InvalidStateError(`the manager holds no object ${o}`)
    const obj = entry.obj as Record<string, unknown>
    if (obj instanceof Shared) {
      if (!EXPOSED[obj.constructor.name]?.has(m)) throw typeError(`a ${entry.typeid} proxy has no method ${m}`)
      return (obj[m] as (...args: unknown[]) => unknown)(ctx, ...a)
    }
    const fn = obj[m]
    if (m.startsWith('_') || m === 'constructor' || typeof fn !== 'function') throw typeError(`${entry.typeid} has no public method ${m}`)
    return Promise.resolve((fn as (...args: unknown[]) => unknown).apply(obj, unpackHandles(a) as unknown[]))
  }

  async #managerCall(m: string, a: unknown[], client: number): Promise<unknown> {
    switch (m) {
      case 'ping':
        return true
      case 'pin': {
        const e = this.#objects.get(a[0] as string)
        if (e) e.pinned = true
        return true
      }
      case 'decref':
        this.#release(a[0] as string, client)
        return true
      case 'objectCount':
        return this.#objects.size
      case 'create':
        return this.#create(a[0], (a[1] ?? []) as unknown[], a[2], client)
      case 'types':
        return [
          'dict',
          'list',
          'namespace',
          'Queue',
          'JoinableQueue',
          'Lock',
          'RLock',
          'Semaphore',
          'BoundedSemaphore',
          'Event',
          'Condition',
          'Barrier',
          'Value',
          'Array',
          ...Object.keys(this.#types),
        ]
      case 'attach': {
        // A child's link: its descriptors were sent on the carrier before this request.
        const [tag, spec] = a as [number, { recvRing: number; sendRing: number }]
        if (this.carrierFd === undefined || typeof tag !== 'number') throw typeError('this manager takes no links')
        const [seg, peer] = receiveFds(this.carrierFd, tag, 5000)
        this.serve(new Connection<unknown>(adoptChannel(seg as number), spec, peer as number))
        return true
      }
      case 'shutdown':
        setImmediate(() => this.stop())
        return true
      default:
        throw typeError(`a manager has no method ${m}`)
    }
  }

  async #create(typeid: unknown, args: unknown[], name: unknown, client: number): Promise<Created> {
    if (typeof typeid !== 'string') throw typeError('a typeid must be a string')
    if (!Array.isArray(args)) throw typeError('the arguments must be an array')
    if (name !== undefined && typeof name !== 'string') throw typeError('name must be a string')
    if (name !== undefined) {
      const id = this.#names.get(name)
      if (id !== undefined) {
        const e = this.#objects.get(id) as Entry
        if (e.typeid !== typeid) throw typeError(`the manager's object named ${JSON.stringify(name)} is a ${e.typeid}, not a ${typeid}`)
        return { id, typeid }
      }
    }
    let obj: object | undefined = builtin(typeid, args, this.#lookup)
    if (!obj) {
      const spec = this.#types[typeid]
      if (!spec) throw typeError(`the manager has no type ${JSON.stringify(typeid)} (register it with types: { ${typeid}: … })`)
      obj = await this.#construct(typeid, spec, unpackHandles(args) as unknown[])
    }
    // A name may have been taken while the type's module loaded.
    if (name !== undefined && this.#names.has(name)) return this.#create(typeid, args, name, client)
    const id = randomBytes(8).toString('hex')
    // Made for a client that went away meanwhile: nobody can reach it.
    if (!this.#clients.has(client) && name === undefined) return { id, typeid }
    this.#objects.set(id, { typeid, obj, name, pinned: name !== undefined, made: new Map([[client, 1]]) })
    if (name !== undefined) this.#names.set(name, id)
    return { id, typeid }
  }

  async #construct(typeid: string, spec: TypeSpec, args: unknown[]): Promise<object> {
    let load = this.#loaded.get(typeid)
    if (!load) {
      load = import(spec.module).then((mod: Record<string, unknown>) => {
        const C = mod[spec.name]
        if (typeof C !== 'function') throw typeError(`${spec.module} exports no class or function named ${spec.name}`)
        return C
      })
      this.#loaded.set(typeid, load)
      load.catch(() => this.#loaded.delete(typeid))
    }
    const C = (await load) as new (...a: unknown[]) => object
    const obj = C.prototype ? new C(...args) : await (C as unknown as (...a: unknown[]) => object)(...args)
    if (typeof obj !== 'object' || obj === null) throw typeError(`${typeid}'s factory returned no object`)
    return obj
  }

  /** One proxy that `client` got from `create` was garbage collected (or the client went away: all). */
  #release(id: string, client: number, all = false): void {
    const e = this.#objects.get(id)
    if (!e) return
    const n = e.made.get(client) ?? 0
    if (n <= 1 || all) e.made.delete(client)
    else e.made.set(client, n - 1)
    if (!e.pinned && e.made.size === 0) this.#objects.delete(id)
  }

  /** Stops serving: clients see the connection end, and their pending calls fail. */
  stop(): void {
    if (this.#stopping) return
    this.#stopping = true
    this.#listener.close()
    for (const { conn } of [...this.#clients.values()]) conn.close()
    this.#stopped()
  }
}

/** What `Manager.start` sends the manager process. */
export interface ManagerBoot {
  address: string
  authkey: Uint8Array
  types: Record<string, TypeSpec>
}

/**
 * The manager process's target: serves until told to shut down, after telling the parent its
 * address (or why it could not start) through `ready`.
 */
export async function runManager(
  ready: Connection<unknown>,
  boot: ManagerBoot,
  starter: Connection<unknown>,
  carrierFd: number,
): Promise<void> {
  let server: ManagerServer
  try {
    server = await ManagerServer.start({ address: boot.address, authkey: Buffer.from(boot.authkey), types: boot.types })
  } catch (err) {
    await ready.send({ error: toRecord(err) })
    ready.close()
    return
  }
  server.carrierFd = carrierFd
  server.serve(starter)
  await ready.send({ address: server.address })
  ready.close()
  await server.stopped
  starter.close()
}
