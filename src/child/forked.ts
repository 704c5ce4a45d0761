/**
 * What a forked child does before it is like a spawned one. It starts as a copy of the fork
 * server: the server's pid, parent, environment, directory, standard streams, `Math.random`
 * state and exit path. Each is set to what a spawned child of the requester would have.
 */
import { randomFillSync } from 'node:crypto'
import { writeSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { inspect } from 'node:util'

import type { ForkHeader } from '../forkserver.js'
import { native } from '../native.js'
import { adoptTracker } from '../resource-tracker.js'
import { reloadInherited } from '../start-method.js'
import { forgetInheritedWaits } from '../wait.js'
import { runChild } from './run.js'

const CHILD_MAIN = new URL('./main.js', import.meta.url)

/**
 * Node's own exit tears down its platform, which waits for worker threads that only the
 * server has: a forked child would hang there for ever. Every way out ends in `_exit` instead:
 * `process.exit` (through `reallyExit`), the loop running dry (watched natively, see
 * `fork_loop.rs`) and a fatal exception or rejection (both through the `'exit'` event, after
 * every listener ran). Standard output and
 * error are synchronous for files, pipes and terminals on Linux: nothing is left to flush.
 */
function exitThroughExitNow(): void {
  let fatal: { error: unknown } | undefined
  process.on('uncaughtExceptionMonitor', (error) => {
    // Fatal unless somebody handles it; Node emits 'exit' next and would print it after.
    if (process.listenerCount('uncaughtException') === 0) fatal = { error }
  })
  const emit = process.emit
  process.emit = function (this: NodeJS.Process, event: string | symbol, ...args: unknown[]): boolean {
    const handled = (emit as (e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args)
    if (event === 'exit') {
      if (fatal !== undefined) {
        const e = fatal.error
        const text = e instanceof Error ? inspect(e) : `Uncaught ${inspect(e)}`
        writeSync(2, `${text}\n\nNode.js ${process.version}\n`)
      }
      const code = typeof process.exitCode === 'number' ? process.exitCode : Number(args[0]) || 0
      native.exitNow(code)
    }
    return handled
  } as typeof process.emit
  ;(process as unknown as { reallyExit: (code: number) => void }).reallyExit = (code: number) => native.exitNow(code)
  // The loop running dry: Node's own ending would drain the platform's worker tasks and hang,
  // so the native watch keeps the loop alive and calls here instead, as Node would emit.
  native.watchForkedLoop(() => {
    const stage = native.forkedLoopStage()
    const code = typeof process.exitCode === 'number' ? process.exitCode : 0
    if (stage === 1) process.emit('beforeExit', code)
    else if (stage === 2) {
      ;(process as unknown as { _exiting: boolean })._exiting = true
      process.emit('exit', code)
    }
  })
}

/**
 * V8's generator state is the server's, so every forked child would draw the same numbers:
 * `Math.random` becomes xoshiro128** seeded from the system's generator (OpenSSL's, which
 * reseeds itself after a fork).
 */
function reseedMathRandom(): void {
  const s = randomFillSync(new Uint32Array(4))
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1] as number, 5), 7), 9) >>> 0
    const t = (s[1] as number) << 9
    s[2] = (s[2] as number) ^ (s[0] as number)
    s[3] = (s[3] as number) ^ (s[1] as number)
    s[1] = (s[1] as number) ^ (s[2] as number)
    s[0] = (s[0] as number) ^ (s[3] as number)
    s[2] = (s[2] as number) ^ t
    s[3] = rotl(s[3] as number, 11)
    return result
  }
  Math.random = function random(): number {
    // 53 random bits, as V8's own: 26 from one draw and 27 from the next.
    return ((next() >>> 6) * 134217728 + (next() >>> 5)) / 9007199254740992
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

/**
 * What a spare does before it has a request (while nobody waits for it): its own pid, the exit
 * path, a generator of its own, and libuv's thread pool (started by one file operation: the
 * module loader reads files through it, and starting its threads would fall on the request).
 * More than that (a rehearsal of the child's start in the spare itself) was measured slower:
 * it competes for the CPU with the child started just before.
 */
export async function prepareSpare(): Promise<void> {
  // Both are native data properties that ignore a plain redefinition: delete them first.
  delete (process as { pid?: number }).pid
  delete (process as { ppid?: number }).ppid
  Object.defineProperty(process, 'pid', { value: native.currentPid(), enumerable: true, configurable: true, writable: false })
  exitThroughExitNow()
  reseedMathRandom()
  forgetInheritedWaits()
  await access(CHILD_MAIN)
}

/** Turns a spare into the child the request asked for, and runs it. */
export function becomeForkedChild(request: { header: Buffer; fds: number[] }): void {
  const header = JSON.parse(request.header.toString()) as ForkHeader
  const [stdout, stderr, control, ...rest] = request.fds as [number, number, number, ...number[]]
  // A spawned child's ppid is its requester; so is this one's (its OS parent is the server).
  Object.defineProperty(process, 'ppid', { value: header.ppid, enumerable: true, configurable: true, writable: true })
  native.forkedStdio(stdout, stderr)
  const fdMap = new Map<number, number>()
  for (const [i, theirs] of header.fds.entries()) fdMap.set(theirs, rest[i] as number)
  const env = process.env
  for (const k of Object.keys(env)) if (!Object.hasOwn(header.env, k)) delete env[k]
  for (const [k, v] of Object.entries(header.env)) if (env[k] !== v) env[k] = v
  try {
    if (process.cwd() !== header.cwd) process.chdir(header.cwd)
  } catch {
    // The requester's directory is gone: a spawned child would have failed to start in it.
    writeSync(2, `cannot enter ${header.cwd}\n`)
    native.exitNow(1)
  }
  process.execArgv.splice(0, process.execArgv.length, ...header.execArgv)
  process.argv.splice(1, process.argv.length - 1, CHILD_MAIN.pathname)
  const tracker = process.env.MULTIPROC_TRACKER_FD
  delete process.env.MULTIPROC_TRACKER_FD
  if (tracker !== undefined && fdMap.has(Number(tracker))) adoptTracker(fdMap.get(Number(tracker)) as number)
  reloadInherited()
  if (header.lifeline) native.dieWithLifeline(rest[header.fds.length] as number)
  runChild({ fd: control, fdMap, forked: true })
}
