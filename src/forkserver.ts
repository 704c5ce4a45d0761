/**
 * The fork server, seen from the processes that use it: one server per top-level program, a
 * Node started with V8's `--single-threaded` (a fork keeps only the forking thread) that has
 * imported the package and the preload list, and forks a child per request.
 *
 * A request goes over the server's abstract Unix address with the child's descriptors attached
 * (standard output and error, its control socket, the handles in its arguments, the resource
 * tracker's pipe and, for a daemon child, a pidfd of the requester that the child watches). The
 * server answers with the child's pid and a pidfd, reaps the child when it exits and reports its
 * status on the same connection. The server ends when the program that started it does (its
 * lifeline pipe reaches end-of-file); a server found dead is replaced at the next start.
 */
import { availableParallelism } from 'node:os'

import { ProcessError } from './errors.js'
import { inheritableExecArgv } from './exec-argv.js'
import { native } from './native.js'
import { forkserverPreload, inheritedChoices, onStartMethodSet, START_ENV, type StartMethod } from './start-method.js'

/** A running server: where it listens and the Node flags it (and so every forked child) runs with. */
export interface ServerInfo {
  address: string
  execArgv: string[]
}

/** What the forked child is told (the server passes it through untouched). */
export interface ForkHeader {
  /** The requester's pid: the child's `process.ppid`. */
  ppid: number
  env: Record<string, string>
  cwd: string
  execArgv: string[]
  /** Where the sent descriptors were in the requester, after stdout, stderr and the control socket. */
  fds: number[]
  /** A pidfd of the requester follows the other descriptors: the child dies with it. */
  lifeline: boolean
}

/** How long a start may wait for the server's answer (its first boot included). */
const ANSWER_TIMEOUT_MS = 60_000
/** How long a start blocks for the answer of a warm server before it waits asynchronously. */
const QUICK_ANSWER_MS = 10
const SERVER_MAIN = new URL('./forkserver-main.js', import.meta.url)

/** The server this process started, if it did; else the one it inherited. */
let server: ServerInfo | null = null
let ownsServer = false
/** The write end of the lifeline of the server we started: the server ends when it closes. */
let lifelineWrite: number | undefined
/** The read end of the started server's ready pipe while it boots (it hangs up once the server serves). */
let bootingServer: number | undefined
/** A pidfd of this process, sent with every daemon request. */
let selfPidfd: number | undefined

onStartMethodSet((method: StartMethod) => {
  if (method === 'forkserver' && current() === null) startServer()
})

function current(): ServerInfo | null {
  return server ?? inheritedChoices().server
}

/**
 * The young generation's collector in the server and its children. V8's scavenger posts a task to
 * the platform's worker threads at every collection, even single-threaded; in a forked child those
 * threads do not exist, but the condition variable they waited on still counts them, and after a
 * few posts `pthread_cond_signal` waits for them for ever (seen: a forked child holding a Lock
 * hung in a scavenge, and every process waiting for that Lock with it). Minor mark-sweep posts
 * nothing there. Node 20's V8 does not have it.
 */
const YOUNG_GENERATION_GC = Number(process.versions.node.split('.')[0]) >= 22 ? ['--minor-ms'] : []

/** Starts a server of our own (replacing any known one) and returns it at once: it boots in the background. */
function startServer(): ServerInfo {
  const execArgv = inheritableExecArgv()
  let listener: { fd: number; address: string }
  let lifeline: [number, number]
  let ready: [number, number]
  try {
    listener = native.forkserverListen()
    lifeline = native.trackerPipe() as [number, number]
    ready = native.trackerPipe() as [number, number]
  } catch (err) {
    throw new ProcessError(`cannot start the fork server: ${(err as Error).message}`, { cause: err })
  }
  const [lifeRead, lifeWrite] = lifeline
  const [readyRead, readyWrite] = ready
  try {
    const env = Object.entries(process.env).flatMap(([k, v]) => (v === undefined || k.startsWith('MULTIPROC_') ? [] : [`${k}=${v}`]))
    const shell = native.NativeChild.spawn({
      program: '/bin/sh',
      // The shell starts the server in the background and exits: nobody here has to reap it,
      // and it is not in activeChildren(). Its standard error stays the program's.
      args: [
        '-c',
        '"$0" "$@" </dev/null >/dev/null &',
        process.execPath,
        '--single-threaded',
        ...YOUNG_GENERATION_GC,
        ...execArgv,
        SERVER_MAIN.pathname,
        String(listener.fd),
        String(lifeRead),
        String(readyWrite),
        ...forkserverPreload(),
      ],
      env,
      inherit: [2, listener.fd, lifeRead, readyWrite],
      daemon: false,
    })
    shell.waitSync(10_000)
  } catch (err) {
    native.closeFd(lifeWrite)
    native.closeFd(readyRead)
    throw new ProcessError(`cannot start the fork server: ${(err as Error).message}`, { cause: err })
  } finally {
    native.closeFd(listener.fd)
    native.closeFd(lifeRead)
    native.closeFd(readyWrite)
  }
  if (bootingServer !== undefined) native.closeFd(bootingServer)
  bootingServer = readyRead
  bootSpawns = 0
  // Held for the rest of this process's life: the server ends when it closes.
  if (lifelineWrite !== undefined) native.closeFd(lifelineWrite)
  lifelineWrite = lifeWrite
  ownsServer = true
  server = { address: listener.address, execArgv }
  return server
}

/** Whether this kernel gives pidfds (Linux 5.3+, not refused by a seccomp profile): the server watches and reaps its children through them, and daemon children watch their requester. */
let pidfds: boolean | undefined

function pidfdsWork(): boolean {
  if (pidfds === undefined) {
    try {
      selfPidfd ??= native.ownPidfd()
      pidfds = true
    } catch {
      pidfds = false
    }
  }
  return pidfds
}

/**
 * @internal The server a child with these Node flags is forked by, or null when it must be
 * spawned: its flags differ from the server's, or this system gives no pidfds (then every
 * child is spawned, as `spawn` would).
 */
export function serverFor(execArgv: readonly string[]): ServerInfo | null {
  if (!pidfdsWork()) return null
  const s = current() ?? startServer()
  const same = s.execArgv.length === execArgv.length && s.execArgv.every((a, i) => a === execArgv[i])
  return same ? s : null
}

/** Spawned while the server booted, and how many may be: one CPU is left to the server's boot. */
let bootSpawns = 0
const MAX_BOOT_SPAWNS = Math.max(1, availableParallelism() - 1)

/**
 * @internal Whether a pool worker should be spawned rather than wait for the server this
 * process started, which is still booting (a Node start, its imports and its rehearsal: about
 * 150 ms here). A pool made meanwhile spawns workers at once, as many as there are CPUs beside
 * the one the server boots on, so that its first result comes no later than with `spawn`; the
 * others, and every later start, are forked.
 */
export function spawnWhileBooting(): boolean {
  if (bootingServer === undefined) return false
  if (native.peerHungUp(bootingServer)) {
    native.closeFd(bootingServer)
    bootingServer = undefined
    return false
  }
  if (bootSpawns >= MAX_BOOT_SPAWNS) return false
  bootSpawns += 1
  return true
}

/** @internal What a child must be told so that its own children use the same method and server. */
export function startEnv(method: StartMethod | null): Record<string, string> {
  const value = { method, preload: forkserverPreload(), server: current() }
  return { [START_ENV]: JSON.stringify(value) }
}

/** @internal Whether this process started the server it uses (the server lives as long as it does). */
export function ownsForkserver(): boolean {
  return ownsServer
}

/** A child forked by the server: watched through the server's answers and a pidfd. */
export class ForkedChild {
  readonly pid: number
  readonly #pidfd: number
  readonly #conn: number
  #code: number | null = null
  /** The server went away before it reported the exit. */
  #serverGone = false

  constructor(pid: number, pidfd: number, conn: number) {
    this.pid = pid
    this.#pidfd = pidfd
    this.#conn = conn
  }

  /** The exit code (negative signal number when killed), or null while it runs. */
  tryWait(): number | null {
    return this.#check(0)
  }

  /** Blocks up to `timeoutMs` (negative: no limit) for the exit. */
  waitSync(timeoutMs: number): number | null {
    const deadline = timeoutMs < 0 ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs
    for (;;) {
      const left = deadline - performance.now()
      const slice = Number.isFinite(left) ? Math.max(0, Math.min(100, Math.ceil(left))) : 100
      const code = this.#check(slice)
      if (code !== null || left <= 0) return code
    }
  }

  signal(signal: number): void {
    if (this.#code !== null) return
    native.pidfdSignal(this.#pidfd, signal)
  }

  #check(timeoutMs: number): number | null {
    if (this.#code !== null) return this.#code
    if (this.#serverGone) {
      // Its exit status died with the server: 255, as Python's forkserver reports it.
      if (native.pidfdExited(this.#pidfd, timeoutMs)) this.#finish(255)
      return this.#code
    }
    const answer = native.forkserverReceive(this.#conn, timeoutMs)
    if (answer === null) return null
    if (answer[0] === 2) this.#finish(answer[1] as number)
    else {
      this.#serverGone = true
      return this.#check(0)
    }
    return this.#code
  }

  #finish(code: number): void {
    this.#code = code
    native.closeFd(this.#conn)
    native.closeFd(this.#pidfd)
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)))

async function answerOf(conn: number): Promise<number[]> {
  const deadline = performance.now() + ANSWER_TIMEOUT_MS
  // A warm server answers within a few milliseconds: as long as spawning blocks, no longer.
  const quick = native.forkserverReceive(conn, QUICK_ANSWER_MS)
  if (quick !== null) return quick
  // Booting (or loaded): look often at first, then back off.
  for (let delay = 1, tries = 0; ; tries++) {
    const answer = native.forkserverReceive(conn, 0)
    if (answer !== null) return answer
    if (performance.now() > deadline) {
      throw new ProcessError(`the fork server did not answer within ${ANSWER_TIMEOUT_MS / 1000} s`)
    }
    await sleep(delay)
    if (tries > 20) delay = Math.min(delay * 2, 20)
  }
}

/** @internal Asks the server to fork a child. `fds` are sent in order: stdout, stderr, control, then `header.fds`. */
export async function forkChild(s: ServerInfo, header: ForkHeader, fds: number[]): Promise<ForkedChild> {
  const payload = Buffer.from(JSON.stringify(header))
  const sent = [...fds]
  if (header.lifeline) {
    selfPidfd ??= native.ownPidfd()
    sent.push(selfPidfd)
  }
  for (let attempt = 0; ; attempt++) {
    let conn: number
    try {
      conn = native.forkserverRequest(s.address, payload, sent)
    } catch (err) {
      if (!isServerDown(err) || attempt > 0) throw serverError(err)
      s = replaceServer(s)
      continue
    }
    let answer: number[]
    try {
      answer = await answerOf(conn)
    } catch (err) {
      native.closeFd(conn)
      throw err
    }
    if (answer[0] === 1) return new ForkedChild(answer[1] as number, answer[2] as number, conn)
    native.closeFd(conn)
    // The fork failed: the same error a failed spawn gives (out of processes, of memory, …).
    if (answer[0] === 3) native.forkserverFailure(answer[1] as number)
    // The server died with the request unanswered: the child never started. Once more, on a new server.
    if (attempt > 0) throw new ProcessError('the fork server exited before it answered (twice); see its error output above')
    s = replaceServer(s)
  }
}

function replaceServer(dead: ServerInfo): ServerInfo {
  const known = current()
  if (known !== null && known.address !== dead.address) return known
  server = null
  const fresh = startServer()
  if (fresh.execArgv.join('\0') !== dead.execArgv.join('\0')) {
    throw new ProcessError('the fork server is gone, and a new one would run with other Node flags')
  }
  return fresh
}

function isServerDown(err: unknown): boolean {
  return (err as { code?: unknown })?.code === 'ERR_FORKSERVER_DOWN'
}

function serverError(err: unknown): ProcessError {
  const message = (err as Error)?.message ?? String(err)
  if (isServerDown(err)) return new ProcessError('the fork server is not running and could not be restarted', { cause: err })
  return new ProcessError(`cannot reach the fork server: ${message}`, { cause: err })
}
