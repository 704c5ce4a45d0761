/**
 * Process: a function run in a new OS process, Python's `multiprocessing.Process` with Node's
 * manners. The child runs `process.execPath` with the parent's `execArgv`, inherits the
 * descriptors of the handles in its arguments, and reports readiness over a control socket
 * whose hang-up also tells the parent that the child has exited.
 */
import net from 'node:net'
import os from 'node:os'
import v8 from 'node:v8'
import { lendWhile } from './connection.js'
import {
  BootstrapError,
  ClosedError,
  fromNative,
  InvalidStateError,
  MultiprocError,
  ProcessError,
  SerializationError,
  typeError,
} from './errors.js'
import { checkExecArgv, inheritableExecArgv } from './exec-argv.js'
import { type ForkHeader, forkChild, serverFor, spawnWhileBooting, startEnv } from './forkserver.js'
import { packHandles } from './handles.js'
import { native } from './native.js'
import { trackerInheritance } from './resource-tracker.js'
import { checkStartMethod, getStartMethod, type StartMethod, startMethodChosen } from './start-method.js'
import { describeTarget, moduleHref, type Target } from './target.js'
import { checkBoolean, checkString, checkStringRecord } from './validate.js'
import { deadlineOf, type WaitOptions, waitOptions } from './wait.js'

/**
 * Options of a `Process`. Its type parameter is the target's argument list, so that `args` is
 * checked against the target (`A` is inferred from both).
 */
// biome-ignore lint/suspicious/noExplicitAny: by default a target takes any arguments
export interface ProcessOptions<A extends unknown[] = any[]> {
  /**
   * The function to run: an export of one of `modules` (found there by identity), a self-contained
   * function (sent as source), or `{ module, name }`.
   */
  target: Target<A>
  /**
   * Its arguments, required when it takes some. Queues, pipes, locks, shared values and memory
   * among them arrive as live objects.
   */
  args?: readonly [...A]
  /** The process's name; default `Process-N` (`Process-1:2` for a child's child), as Python. */
  name?: string
  /** Dies with its parent (even a SIGKILLed one) and does not keep the parent alive. Default false. */
  daemon?: boolean
  /** Extra environment variables for the child. */
  env?: Record<string, string>
  /**
   * Node flags for the child; default: the parent's `process.execArgv` without the flags that
   * would make the child run something else than its target (`-e`, `-p`, `--test`, `--watch`,
   * `-i`, …) or take the parent's inspector port. Such flags given here are refused.
   */
  execArgv?: string[]
  /** Modules whose exports a function target may be found among (by name and source). */
  modules?: (string | URL)[]
  /**
   * How the child is started; default {@link getStartMethod}. A `'forkserver'` child whose
   * `execArgv` differs from the fork server's is spawned instead.
   */
  startMethod?: StartMethod
}

/** What `Process` needs of a started child, however it was started. */
interface ChildHandle {
  readonly pid: number
  /** The exit code (negative signal number when killed), or null while it runs. */
  tryWait(): number | null | undefined
  waitSync(timeoutMs: number): number | null | undefined
  signal(signal: number): void
}

/** `args` may be left out only when the target can be called without arguments. */
export type RequiredArgs<A extends unknown[]> = [] extends A
  ? unknown
  : {
      /** The target's arguments: it takes some, so they must be given. */
      args: readonly [...A]
    }

/** What the child receives on its control socket before anything else. */
export interface Boot {
  name: string
  identity: number[]
  daemon: boolean
  parentPid: number
  parentName: string
  target: ReturnType<typeof describeTarget>
  args: unknown
  fds: number[]
}

/** Processes that are spawned rather than kept waiting while the fork server boots (pool workers). */
const spawnedWhileServerBoots = new WeakSet<Process>()

/** @internal Marks `p` to be spawned if its fork server is still booting when it starts. */
export function spawnWhileServerBoots(p: Process): Process {
  spawnedWhileServerBoots.add(p)
  return p
}

const SIGNALS: Record<string, number> = { SIGTERM: 15, SIGKILL: 9 }

interface Identity {
  name: string
  pid: number
  daemon: boolean
  children: number
  /** Python's `_identity`: the path of child counters from the main process, e.g. [1, 2]. */
  identity: number[]
}

const self: Identity = { name: 'MainProcess', pid: process.pid, daemon: false, children: 0, identity: [] }
let parent: ParentProcess | null = null
const active = new Set<Process>()
/** Set while a child imports the module that holds its target (or a pool worker's). */
let bootstrapping = 0

/** @internal Runs `load` as part of this child's start-up: starting children meanwhile is refused. */
export async function whileBootstrapping<T>(load: () => Promise<T>): Promise<T> {
  bootstrapping++
  try {
    return await load()
  } finally {
    bootstrapping--
  }
}

/** @internal Throws `BootstrapError` if this process is still starting up as a child. */
export function checkNotBootstrapping(what: string): void {
  if (bootstrapping === 0) return
  throw new BootstrapError(
    `${what} while ${self.name} is still starting up: the module imported to find its target starts ` +
      'processes itself, so every child would start children of its own without end. Guard that code ' +
      'with `if (!parentProcess())`, or move it out of the module that holds the target.',
  )
}

/** The parent as seen from a child. */
export interface ParentProcess {
  /** The parent's process id. */
  pid: number
  /** The parent's name. */
  name: string
  /** Whether the parent is still running. */
  isAlive(): boolean
  /** Waits until the parent exits, at most `timeout` ms. */
  join(timeout?: number): Promise<void>
}

/** @internal Called by the child's entry point before anything of the user's runs. */
export function setIdentity(name: string, identity: number[], daemon: boolean, parentPid: number, parentName: string): void {
  // A forked child was imported in the fork server: its pid is its own only from now on.
  self.pid = process.pid
  self.name = name
  self.identity = identity
  self.daemon = daemon
  const start = native.processStartTime(parentPid)
  const isAlive = () => start > 0 && native.processAlive(parentPid, start)
  parent = {
    pid: parentPid,
    name: parentName,
    isAlive,
    join: async (timeout?: number) => {
      const deadline = deadlineOf(timeout)
      while (isAlive() && (deadline === undefined || performance.now() < deadline)) await new Promise((r) => setTimeout(r, 20))
    },
  }
}

/**
 * The process this code runs in, as Python's `current_process()` gives it. `name`, `pid` and
 * `daemon` are its own data (a copy sent in a message keeps them); the rest is on the prototype.
 */
export class CurrentProcess {
  /** `MainProcess` in the process the user started, else the name the child was given. */
  readonly name: string
  /** `process.pid`. */
  readonly pid: number
  /** Whether this process is a daemon child. */
  readonly daemon: boolean

  /** @internal Use {@link currentProcess}. */
  constructor() {
    this.name = self.name
    this.pid = process.pid
    this.daemon = self.daemon
  }

  /** Python's `_identity`: the path of child counters from the main process (`[]` there). */
  get identity(): readonly number[] {
    return Object.freeze([...self.identity])
  }

  /** Always `null`: this process is running. */
  get exitCode(): null {
    return null
  }

  /** Always `true`. */
  isAlive(): boolean {
    return true
  }

  /** Python's `repr`. */
  toString(): string {
    return `<CurrentProcess name='${this.name}' parent=${parent?.pid ?? 'None'} started>`
  }
}

/** The process this code runs in: `name`, `pid`, `daemon`, `exitCode` (null), `isAlive()`. */
export function currentProcess(): CurrentProcess {
  return new CurrentProcess()
}

/** The parent, in a child started by this package; `null` in the process the user started. */
export function parentProcess(): ParentProcess | null {
  return parent
}

/** Started children that have not yet been seen to exit. */
export function activeChildren(): Process[] {
  for (const p of active) p.isAlive()
  return [...active]
}

/** Logical CPUs available to this process. */
export function cpuCount(): number {
  return os.availableParallelism()
}

const CHILD_MAIN = new URL('./child/main.js', import.meta.url)

/** @internal Resolves once a started child has exited and been reaped; holds no event loop open. */
export const whenExited = Symbol('multiproc.whenExited')

/** A function running in its own OS process; `A` is its target's argument list. */
// biome-ignore lint/suspicious/noExplicitAny: a Process of any target
export class Process<A extends unknown[] = any[]> {
  readonly #opts: ProcessOptions
  /** The name given in the options, or `Process-N`. */
  readonly name: string
  /** Whether the child dies with its parent and does not keep the parent alive. */
  readonly daemon: boolean
  #child: ChildHandle | undefined
  #starting = false
  readonly #startMethod: StartMethod | undefined
  #control: net.Socket | undefined
  /** The child said it runs (its one byte came): from then on its socket is only a hang-up signal. */
  #attached = false
  #exitCode: number | null = null
  #exited: Promise<void> | undefined
  #closed = false
  #waiters = 0
  readonly #identity: number[]

  constructor(opts: ProcessOptions<A> & RequiredArgs<A>) {
    if (typeof opts !== 'object' || opts === null) throw typeError('Process takes an options object')
    if (opts.args !== undefined && !Array.isArray(opts.args)) throw typeError('args must be an array')
    if (opts.name !== undefined) checkString('name', opts.name)
    if (opts.daemon !== undefined) checkBoolean('daemon', opts.daemon)
    if (opts.env !== undefined) checkStringRecord('env', opts.env)
    if (opts.execArgv !== undefined) checkExecArgv(opts.execArgv)
    this.#startMethod = opts.startMethod === undefined ? undefined : checkStartMethod('startMethod', opts.startMethod)
    if (opts.modules !== undefined) {
      if (!Array.isArray(opts.modules)) throw typeError('modules must be an array of URLs or paths')
      for (const m of opts.modules) moduleHref(m)
    }
    describeTarget(opts.target) // validates early
    this.#opts = opts as ProcessOptions
    self.children += 1
    this.#identity = [...self.identity, self.children]
    // As Python: Process-1, Process-2, …; the children of Process-1 are Process-1:1, ….
    this.name = opts.name ?? `Process-${this.#identity.join(':')}`
    this.daemon = opts.daemon ?? false
  }

  /** Python's `_check_closed`: after `close()` every method but `close()` and `toString()` throws (properties still read). */
  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`${this.name} is closed`)
  }

  /** The child's process id once started, else `null`. */
  get pid(): number | null {
    return this.#child?.pid ?? null
  }

  /** `null` while running (or not started), the exit code after, or `-SIGNUM` if killed. */
  get exitCode(): number | null {
    this.#poll()
    return this.#exitCode
  }

  /** Starts the child; resolves once it runs and has attached to the handles in its arguments. */
  async start(): Promise<void> {
    if (this.#closed) throw new ClosedError('start() on a closed Process')
    if (this.#child || this.#starting) throw new InvalidStateError('a process can be started only once')
    checkNotBootstrapping(`${this.name} was started`)
    const o = this.#opts
    const target = describeTarget(o.target, o.modules)
    // Pipe ends passed here are noted: a parent's unused copy must not keep the other end waiting once this child is gone.
    // What packing made for this child only (a manager link) is released here once it is spawned, or failed to.
    const handedOver: (() => void)[] = []
    const released = () => {
      for (const release of handedOver.splice(0)) release()
    }
    const packed = lendWhile(
      {
        isAlive: () => this.#child !== undefined && !this.#poll(),
        exited: () => this.#exited ?? Promise.resolve(),
        onSpawned: (release) => handedOver.push(release),
      },
      () => packHandles(o.args ?? []),
    )
    const boot: Boot = {
      name: this.name,
      identity: this.#identity,
      daemon: this.daemon,
      parentPid: process.pid,
      parentName: self.name,
      target,
      args: packed.value,
      fds: packed.fds,
    }
    let payload: Buffer
    try {
      payload = v8.serialize(boot)
    } catch (err) {
      released()
      throw new SerializationError(`cannot send the arguments of ${this.name}: ${(err as Error)?.message ?? err}`, { cause: err })
    }
    const method = this.#startMethod ?? getStartMethod()
    const execArgv = o.execArgv ?? inheritableExecArgv()
    let server = method === 'forkserver' ? serverFor(execArgv) : null
    if (server && spawnedWhileServerBoots.has(this) && spawnWhileBooting()) server = null
    let pair: [number, number]
    try {
      pair = native.socketPair() as [number, number]
    } catch (err) {
      released()
      throw fromNative(err)
    }
    const [mine, theirs] = pair
    const tracker = trackerInheritance()
    // A child starts its own children the way it was started (and through the same server).
    const passed = method === 'forkserver' || startMethodChosen() ? startEnv(method) : {}
    const env = { ...process.env, ...o.env, ...tracker.env, ...passed }
    // The boot message goes first: the child reads it as soon as it runs (a forked one at once).
    const control = new net.Socket({ fd: mine, readable: true, writable: true })
    const header = Buffer.alloc(4)
    header.writeUInt32LE(payload.length)
    control.write(Buffer.concat([header, payload]))
    // Started from now on, as a spawned child is at once: alive, and among activeChildren().
    this.#starting = true
    active.add(this)
    try {
      if (server) {
        const header: ForkHeader = {
          ppid: process.pid,
          env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)),
          cwd: process.cwd(),
          execArgv,
          fds: [...packed.fds, ...tracker.fds],
          lifeline: this.daemon,
        }
        this.#child = await forkChild(server, header, [1, 2, theirs, ...packed.fds, ...tracker.fds])
      } else {
        this.#child = native.NativeChild.spawn({
          program: process.execPath,
          args: [...execArgv, CHILD_MAIN.pathname],
          env: Object.entries({ ...env, MULTIPROC_CONTROL_FD: String(theirs) }).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`])),
          // Node marks its stdio close-on-exec, so stdout and stderr are listed to be shared;
          // stdin is /dev/null in the child, as in Python.
          inherit: [1, 2, theirs, ...packed.fds, ...tracker.fds],
          daemon: this.daemon,
        })
      }
    } catch (err) {
      active.delete(this)
      control.on('error', () => {})
      control.destroy()
      const cause = fromNative(err)
      // Running out of processes or descriptors keeps its own class and code.
      if (cause instanceof MultiprocError && cause.code !== 'ERR_OS') {
        cause.message = `cannot start ${this.name}: ${cause.message}`
        throw cause
      }
      throw new ProcessError(`cannot start ${this.name}: ${(cause as Error).message}`, { cause: err })
    } finally {
      this.#starting = false
      native.closeFd(theirs)
      released()
    }
    active.add(this)
    this.#control = control
    let ready!: () => void
    let never!: (err: Error) => void
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve
      never = reject
    })
    control.once('data', () => {
      this.#attached = true
      ready()
    })
    control.on('error', () => {})
    this.#exited = new Promise<void>((resolve) => {
      control.once('close', () => {
        this.#control = undefined
        this.#reap().then(() => {
          // A child that exits before it attached never ran its target.
          if (!this.#attached) never(new ProcessError(`${this.name} exited before it started (exit code ${this.#exitCode})`))
          resolve()
        })
      })
    })
    // A daemon child keeps the parent alive only while somebody waits on it (start, join).
    await this.#holdingLoop(started)
  }

  /** @internal */
  [whenExited](): Promise<void> {
    if (!this.#exited) throw new InvalidStateError('the process was not started')
    return this.#exited
  }

  async #holdingLoop<T>(p: Promise<T>): Promise<T> {
    if (!this.daemon) return p
    this.#waiters += 1
    this.#control?.ref()
    try {
      return await p
    } finally {
      if (--this.#waiters === 0) this.#control?.unref()
    }
  }

  /** Reaps the child after its control socket closed (it closes as the child exits). */
  async #reap(): Promise<void> {
    for (let delay = 1; ; delay = Math.min(delay * 2, 100)) {
      if (this.#poll()) return
      await new Promise((r) => setTimeout(r, delay))
    }
  }

  #poll(): boolean {
    if (this.#exitCode !== null) return true
    if (!this.#child) return false
    const code = this.#child.tryWait()
    if (code === null || code === undefined) return false
    this.#exitCode = code
    active.delete(this)
    // Until the child's byte is read the socket must live: it may still hold it unread.
    if (!this.#attached) return true
    this.#control?.destroy()
    // A destroyed socket would queue every later ref()/unref() as a 'connect' listener.
    this.#control = undefined
    return true
  }

  /** Whether the child was started and has not been seen to exit. */
  isAlive(): boolean {
    this.#checkOpen()
    if (this.#starting) return true
    return this.#child !== undefined && !this.#poll()
  }

  /** Waits for the child to exit, at most `timeout` ms (then returns; check `exitCode`). */
  async join(opts?: WaitOptions | number): Promise<void> {
    this.#checkOpen()
    if (!this.#child || !this.#exited) throw new InvalidStateError('can only join a started process')
    const o = waitOptions(opts)
    const deadline = deadlineOf(o.timeout)
    if (deadline === undefined && !o.signal) return this.#holdingLoop(this.#exited)
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<void>((resolve) => {
      if (deadline !== undefined) timer = setTimeout(resolve, Math.max(0, deadline - performance.now()))
      o.signal?.addEventListener('abort', () => resolve(), { once: true })
    })
    await this.#holdingLoop(Promise.race([this.#exited, limit]))
    if (timer) clearTimeout(timer)
  }

  /** Blocks the thread until the child exits or `timeout` ms pass. */
  joinSync(timeout?: number): void {
    this.#checkOpen()
    if (!this.#child) throw new InvalidStateError('can only join a started process')
    const deadline = deadlineOf(timeout)
    const code = this.#child.waitSync(deadline === undefined ? -1 : Math.max(0, deadline - performance.now()))
    if (code !== null && code !== undefined) this.#poll()
  }

  /** Sends SIGTERM. */
  terminate(): void {
    this.#signal('SIGTERM')
  }

  /** Sends SIGKILL. */
  kill(): void {
    this.#signal('SIGKILL')
  }

  #signal(name: string): void {
    this.#checkOpen()
    if (!this.#child) throw new InvalidStateError(`cannot signal ${this.name}: not started`)
    this.#child.signal(SIGNALS[name] as number)
  }

  /**
   * Releases the process object; throws `InvalidStateError` while the child still runs. After
   * it every method but `close()` throws `ClosedError`; closing again does nothing.
   */
  close(): void {
    if (this.#closed) return
    if (this.#child !== undefined && !this.#poll()) throw new InvalidStateError(`cannot close ${this.name} while it is running`)
    this.#closed = true
  }

  /** Python's `repr`: `<Process name='…' started daemon>`. */
  toString(): string {
    if (this.#closed) return `<Process name='${this.name}' closed>`
    const state = !this.#child ? 'initial' : this.isAlive() ? 'started' : `stopped exitcode=${this.#exitCode}`
    return `<Process name='${this.name}' ${state}${this.daemon ? ' daemon' : ''}>`
  }
}
