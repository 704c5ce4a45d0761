/**
 * Manager: Python's `multiprocessing.Manager()` / `BaseManager`. A server (its own process with
 * `Manager.start`, this one with `Manager.serve`) holds shared objects; every process reaches
 * them through proxies over an authenticated socket (a private abstract Unix socket by default,
 * or a TCP address for managers other machines use). Factories resolve with proxies; named
 * objects let clients that connected by address alone find what others made.
 */
import { randomBytes } from 'node:crypto'

import { toAuthkey } from './authkey.js'
import { Pipe } from './connection.js'
import { ClosedError, ManagerError, OSError, ProcessError, typeError } from './errors.js'
import { FdCarrier } from './handles.js'
import { arbitraryAddress, parseAddress } from './listener.js'
import { type Created, ManagerServer, type TypeSpec } from './manager-server.js'
import { Process } from './process.js'
import {
  type ArrayProxy,
  type BarrierProxy,
  type BaseProxy,
  type ConditionProxy,
  type DictProxy,
  type EventProxy,
  type JoinableQueueProxy,
  type ListProxy,
  LockProxy,
  ManagerClient,
  makeProxy,
  type NamespaceProxy,
  type Proxied,
  type QueueProxy,
  type SemaphoreProxy,
  trackMade,
  type ValueProxy,
} from './proxy.js'
import { fromRecord } from './remote-error.js'
import { findExport, moduleHref } from './target.js'
import { checkOptions, checkString } from './validate.js'

/** A type to register: `{ module, name }` (a class or factory exported there), or a class exported from one of `modules`. */
export type TypeRef =
  | {
      /** The module's URL or path. */
      module: string | URL
      /** The export's name. */
      name: string
    }
  | (abstract new (
      ...args: never[]
    ) => object)
  | ((...args: never[]) => object)

/** Options of {@link Manager.start} (and {@link Manager.serve}). */
export interface ManagerOptions {
  /** Where the server listens: `'host:port'` or a Unix socket path. Default: a private abstract socket. */
  address?: string
  /** The key clients must prove they hold. Default: 32 random bytes (see `manager.authkey`). */
  authkey?: Uint8Array | string
  /** Shared types of your own (Python's `register`): the manager serves them, `create(name)` makes one. */
  types?: Record<string, TypeRef>
  /** Modules where a class given in `types` is found by identity. */
  modules?: (string | URL)[]
}

/** Options of {@link Manager.connect}. */
export interface ConnectOptions {
  /** Where the manager listens: `'host:port'` or a Unix socket path. */
  address: string
  /** The manager's key. */
  authkey: Uint8Array | string
}

/** Options of every factory: a name under which the object is made, or found if it exists. */
export interface NamedOptions {
  /** Make the object under this name, or return a proxy of the one that has it (of the same type). */
  name?: string
}

function resolveTypes(types: Record<string, TypeRef> | undefined, modules: (string | URL)[] = []): Record<string, TypeSpec> {
  const out: Record<string, TypeSpec> = {}
  if (types === undefined) return out
  if (typeof types !== 'object' || types === null) throw typeError('types must be an object of { name: type }')
  for (const [typeid, ref] of Object.entries(types)) {
    if (typeof ref === 'function') {
      const found = findExport(ref, modules)
      if (!found) throw typeError(`types.${typeid} must be exported from one of modules (or given as { module, name })`)
      out[typeid] = found
    } else if (typeof ref === 'object' && ref !== null && 'module' in ref) {
      out[typeid] = { module: moduleHref(ref.module), name: checkString(`types.${typeid}.name`, ref.name) }
    } else throw typeError(`types.${typeid} must be a class or { module, name }`)
  }
  return out
}

let started = 0

function checkName(opts: NamedOptions | undefined): string | undefined {
  const o = checkOptions('options', opts)
  return o.name === undefined ? undefined : checkString('name', o.name)
}

/** A manager: its address and authkey, factories of shared objects, and its shutdown. */
export class Manager implements AsyncDisposable {
  readonly #address: string
  readonly #authkey: Buffer
  readonly #process: Process | undefined
  readonly #server: ManagerServer | undefined
  #closed = false

  private constructor(address: string, authkey: Buffer, process?: Process, server?: ManagerServer) {
    this.#address = address
    this.#authkey = authkey
    this.#process = process
    this.#server = server
  }

  /** Starts a manager process (Python's `Manager()` / `BaseManager.start()`) and resolves once it serves. */
  static async start(opts: ManagerOptions = {}): Promise<Manager> {
    const o = checkOptions('Manager options', opts)
    const address = o.address === undefined ? arbitraryAddress() : o.address
    parseAddress(address)
    const authkey = o.authkey === undefined ? randomBytes(32) : toAuthkey(o.authkey)
    const types = resolveTypes(o.types, o.modules)
    // The starter's own calls go through shared memory; every other process connects by socket.
    const [mine, theirs] = Pipe({ capacityBytes: 1 << 20 })
    // The links of children this process starts reach the manager over this side channel.
    const carrier = new FdCarrier()
    const [reader, writer] = Pipe<{ address?: string; error?: Parameters<typeof fromRecord>[0] }>({ duplex: false, capacityBytes: 1 << 16 })
    const p = new Process({
      target: { module: new URL('./manager-server.js', import.meta.url), name: 'runManager' },
      args: [writer, { address, authkey, types }, theirs, carrier],
      // A daemon: it dies with this process, never outlives it, and does not keep it alive.
      daemon: true,
      name: `Manager-${++started}`,
    })
    try {
      await p.start()
      writer.close()
      theirs.close()
      carrier.releaseTheirs()
      let said: Awaited<ReturnType<typeof reader.recv>>
      try {
        said = await reader.recv()
      } catch (err) {
        await p.join(5000)
        throw new ProcessError(`the manager process exited before it served (exit code ${p.exitCode})`, { cause: err })
      }
      if (said.error) {
        const { name, code, message } = said.error
        // Binding the address failed: the same OSError a Listener here would give.
        if (name === 'OSError' && (code === 'ERR_OS' || code === 'ERR_SHARED_MEMORY')) throw new OSError(code, message)
        throw fromRecord(said.error)
      }
      const client = ManagerClient.for(said.address as string, authkey)
      client.adopt(mine)
      client.adoptCarrier(carrier)
      return new Manager(said.address as string, authkey, p)
    } catch (err) {
      mine.close()
      carrier.close()
      if (p.pid !== null && p.isAlive()) {
        p.kill()
        await p.join()
      }
      throw err
    } finally {
      reader.close()
      writer.close()
      theirs.close()
    }
  }

  /**
   * Serves shared objects from this process (Python's `get_server().serve_forever()`), on a TCP
   * address or a Unix socket, for clients that `Manager.connect`. Resolves once listening; the
   * returned manager's `shutdown()` stops the server.
   */
  static async serve(opts: ManagerOptions & { address: string; authkey: Uint8Array | string }): Promise<Manager> {
    const o = checkOptions('Manager.serve options', opts)
    if (o.authkey === undefined) throw typeError('Manager.serve needs an authkey')
    const authkey = toAuthkey(o.authkey)
    parseAddress(o.address)
    const server = await ManagerServer.start({ address: o.address, authkey, types: resolveTypes(o.types, o.modules) })
    return new Manager(server.address, authkey, undefined, server)
  }

  /** Connects to a manager that serves elsewhere; rejects with `AuthenticationError` on a wrong key. */
  static async connect(opts: ConnectOptions): Promise<Manager> {
    const o = checkOptions('Manager.connect options', opts)
    if (o.authkey === undefined) throw typeError('Manager.connect needs an authkey')
    parseAddress(o.address)
    const m = new Manager(o.address, toAuthkey(o.authkey))
    await m.#call('ping', [])
    return m
  }

  /** Where the manager listens (an abstract Unix socket starts with `\0`). */
  get address(): string {
    return this.#address
  }

  /** The key its clients hold (pass it, with `address`, to `Manager.connect`). */
  get authkey(): Buffer {
    return Buffer.from(this.#authkey)
  }

  /** The manager's process (`Manager.start`), else `null`. */
  get process(): Process | null {
    return this.#process ?? null
  }

  #client(): ManagerClient {
    if (this.#closed) throw new ClosedError('the manager was shut down')
    return ManagerClient.for(this.#address, this.#authkey)
  }

  #call(m: string, a: unknown[]): Promise<unknown> {
    try {
      return this.#client().call('', m, a)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Makes an object; `args` and `opts` are checked here, so that a bad one rejects (never throws). */
  async #make<P extends BaseProxy>(typeid: string, args: unknown[] | (() => unknown[]), opts: NamedOptions | undefined): Promise<P> {
    const name = checkName(opts)
    if (typeof args === 'function') args = args()
    const { id } = (await this.#call('create', name === undefined ? [typeid, args] : [typeid, args, name])) as Created
    const ref = { address: this.#address, authkey: this.#authkey, id, typeid }
    const proxy = makeProxy(ref)
    trackMade(proxy, ref)
    return proxy as P
  }

  /** A shared dict (a `Map` in the manager), from a Map, an object or `[key, value]` pairs. */
  dict<K = unknown, V = unknown>(opts: NamedOptions & { init?: Map<K, V> | Record<string, V> | [K, V][] } = {}): Promise<DictProxy<K, V>> {
    return this.#make('dict', () => (opts?.init === undefined ? [] : [opts.init]), opts)
  }

  /** A shared list. */
  list<T = unknown>(opts: NamedOptions & { init?: T[] } = {}): Promise<ListProxy<T>> {
    return this.#make('list', opts?.init === undefined ? [] : [opts.init], opts)
  }

  /** A shared namespace (Python's `Namespace`): named attributes. */
  namespace(opts: NamedOptions & { init?: Record<string, unknown> } = {}): Promise<NamespaceProxy> {
    return this.#make('namespace', opts?.init === undefined ? [] : [opts.init], opts)
  }

  /** Python's spelling of {@link namespace}. */
  Namespace(opts: NamedOptions & { init?: Record<string, unknown> } = {}): Promise<NamespaceProxy> {
    return this.namespace(opts)
  }

  /** A shared queue (`maxsize`: 0 for no limit). */
  Queue<T = unknown>(opts: NamedOptions & { maxsize?: number } = {}): Promise<QueueProxy<T>> {
    return this.#make('Queue', [{ maxsize: opts?.maxsize ?? 0 }], opts)
  }

  /** A shared JoinableQueue (`taskDone`, `join`). */
  JoinableQueue<T = unknown>(opts: NamedOptions & { maxsize?: number } = {}): Promise<JoinableQueueProxy<T>> {
    return this.#make('JoinableQueue', [{ maxsize: opts?.maxsize ?? 0 }], opts)
  }

  /** A lock owned by a process: held through one process's connection, released if that process goes away. */
  Lock(opts?: NamedOptions): Promise<LockProxy> {
    return this.#make('Lock', [], opts)
  }

  /** A re-entrant lock, owned by a process. */
  RLock(opts?: NamedOptions): Promise<LockProxy> {
    return this.#make('RLock', [], opts)
  }

  /** A shared semaphore with `value` units. */
  Semaphore(value = 1, opts?: NamedOptions): Promise<SemaphoreProxy> {
    return this.#make('Semaphore', [value], opts)
  }

  /** A shared semaphore that refuses to be released above `value`. */
  BoundedSemaphore(value = 1, opts?: NamedOptions): Promise<SemaphoreProxy> {
    return this.#make('BoundedSemaphore', [value], opts)
  }

  /** A shared event (a flag processes wait for). */
  Event(opts?: NamedOptions): Promise<EventProxy> {
    return this.#make('Event', [], opts)
  }

  /** A condition over `lock` (a Lock or RLock proxy of this manager), or over a new RLock. */
  Condition(lock?: LockProxy, opts?: NamedOptions): Promise<ConditionProxy> {
    if (lock !== undefined && !(lock instanceof LockProxy && lock.address === this.#address)) {
      return Promise.reject(typeError('a Condition takes a Lock or RLock proxy of the same manager'))
    }
    return this.#make('Condition', lock === undefined ? [] : [lock], opts)
  }

  /** A shared barrier for `parties` parties (`timeout`: the default of each `wait`). */
  Barrier(parties: number, opts: NamedOptions & { timeout?: number } = {}): Promise<BarrierProxy> {
    return this.#make('Barrier', () => [parties, opts?.timeout === undefined ? {} : { timeout: opts.timeout }], opts)
  }

  /** A shared value of a type code (`'i64'` values are bigints, as for `Value`). */
  Value<T = unknown>(typecode: string, init: T, opts?: NamedOptions): Promise<ValueProxy<T>> {
    return this.#make('Value', [typecode, init], opts)
  }

  /** A shared array of a type code, from a length (zeros) or values. */
  Array<T = unknown>(typecode: string, init: number | T[], opts?: NamedOptions): Promise<ArrayProxy<T>> {
    return this.#make('Array', [typecode, init], opts)
  }

  /** An object of a type registered in `types`, made with `args`; the proxy calls its public methods. */
  create<T = unknown>(typeid: string, args: unknown[] = [], opts?: NamedOptions): Promise<Proxied<T>> {
    if (typeof typeid !== 'string') return Promise.reject(typeError('typeid must be a string'))
    if (!Array.isArray(args)) return Promise.reject(typeError('args must be an array'))
    return this.#make(typeid, args, opts) as unknown as Promise<Proxied<T>>
  }

  /**
   * How many objects the manager holds now (Python's `_number_of_objects()`): for tests and leak
   * hunting. An object is freed once every proxy a factory made of it is garbage collected (or
   * its process went away), unless it has a name or was ever passed on as a handle (stored in
   * another object, passed to a process, put in a message): those live as long as the manager.
   */
  objectCount(): Promise<number> {
    return this.#call('objectCount', []) as Promise<number>
  }

  /**
   * Shuts the manager down: its process exits (`Manager.start`) or its server stops
   * (`Manager.serve`); proxies' calls then reject with `ManagerError`. A manager reached with
   * `connect` is only marked closed here (its factories refuse); the server and the proxies go
   * on. Calling it again does nothing.
   */
  async shutdown(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // A manager reached by `connect` shares this process's connection with every proxy of that
    // manager here: leaving it open keeps their calls going.
    if (!this.#process && !this.#server) return
    const client = ManagerClient.for(this.#address, this.#authkey)
    if (this.#process) {
      await client.call('', 'shutdown', []).catch((err) => {
        if (!(err instanceof ManagerError)) throw err
      })
      await this.#process.join(10_000)
      if (this.#process.isAlive()) {
        this.#process.kill()
        await this.#process.join()
      }
    } else this.#server?.stop()
    client.close()
  }

  /** `await using manager = …`: shuts it down. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown()
  }
}
