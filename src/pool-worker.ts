/**
 * The loop a pool worker runs: take a chunk of tasks from its own inbox, run them in order,
 * send one message with the chunk's results (or the error that stopped it) to the pool's shared
 * result queue. It exits after `maxTasks` chunks (Python's `maxtasksperchild`) or when the pool
 * closes its inbox. Only workers (and the fork server, which forks them) load this module.
 */
import { fileURLToPath } from 'node:url'

import { EOFError, ProtocolError, SerializationError, TargetError } from './errors.js'
import { holdsHandles, receiveFds, UnknownHandle, unpackHandles } from './handles.js'
import { native } from './native.js'
import { trustArray } from './plain.js'
import { Reply, type ReplyMessage, type TaskMessage, type WorkerSetup } from './pool-messages.js'
import { WARM_FROM, warmMapPath } from './pool-warmup.js'
import { whileBootstrapping } from './process.js'
import type { Queue } from './queue.js'
import { toRecord } from './remote-error.js'
import type { Serializer } from './serialize.js'
import { resolveTarget, type TargetFunction, type TargetSpec } from './target.js'

/** How long a worker waits for descriptors that the parent sent before the task itself. */
const FDS_TIMEOUT_MS = 5_000

/** Revives the handles in a task's items: once per worker each, reused after. */
function reviveItems(items: unknown[], chunkId: number, sent: number[], carrier: number, cache: Map<string, unknown>): unknown[] {
  const fdMap = new Map<number, number>()
  if (sent.length > 0) {
    const local = receiveFds(carrier, chunkId, FDS_TIMEOUT_MS)
    if (local.length !== sent.length) throw new ProtocolError(`expected ${sent.length} descriptors, got ${local.length}`)
    for (const [i, f] of sent.entries()) fdMap.set(f, local[i] as number)
  }
  const used = new Set<number>()
  try {
    return unpackHandles(items, { fdMap, cache, used }) as unknown[]
  } finally {
    // Descriptors of objects this worker already had are copies it does not need.
    for (const f of fdMap.values()) if (!used.has(f)) native.closeFd(f)
  }
}

/** Keeps the worker's event loop alive while a task's promise is pending (nothing else might). */
async function settled(p: PromiseLike<unknown>): Promise<unknown> {
  const keepAlive = setInterval(() => {}, 1 << 30)
  try {
    return await p
  } finally {
    clearInterval(keepAlive)
  }
}

/**
 * Runs the chunk's tasks from `from` on into `out`, up to the first that returns a promise (it is
 * left in `out`); returns that task's index, or the chunk's length. A plain function, not an
 * async one, so that V8 can optimise its loop while it runs (on-stack replacement), and with
 * the promise check written out: a call per task costs more than the task in a cold loop.
 */
function runUntilPromise(fn: TargetFunction, items: unknown[], star: boolean, out: unknown[], from: number): number {
  for (let i = from; i < items.length; i++) {
    const r = star ? fn(...(items[i] as unknown[])) : fn(items[i])
    out[i] = r
    if (typeof r === 'object' && r !== null && typeof (r as PromiseLike<unknown>).then === 'function') return i
  }
  return items.length
}

async function runChunk(fn: TargetFunction, items: unknown[], star: boolean): Promise<unknown[]> {
  const out = trustArray(new Array<unknown>(items.length))
  for (let i = runUntilPromise(fn, items, star, out, 0); i < items.length; i = runUntilPromise(fn, items, star, out, i + 1))
    out[i] = await settled(out[i] as PromiseLike<unknown>)
  return out
}

/**
 * The tasks the worker's loop is warmed with: five different functions, so that V8 compiles the
 * loop's call as one to any function. Compiled after one task only, it would call that one
 * directly, and drop its compiled code at the first item of the real task.
 */
const WARM_TASKS: ((x: number) => number)[] = [(x) => x * x, (x) => x + 1, (x) => x * 0.5, (x) => -x, (x) => x - 1]

let warmRound = 0
function warmTasks(items: unknown[]): unknown[] {
  const out = trustArray(new Array<unknown>(items.length))
  runUntilPromise(WARM_TASKS[warmRound++ % WARM_TASKS.length] as TargetFunction, items, false, out, 0)
  return out
}

// The fork server loads this module before it forks any worker: it warms once, for all of them.
if (process.argv[1] === fileURLToPath(new URL('./forkserver-main.js', import.meta.url))) warmMapPath(warmTasks)

/** Pool workers leave SIGINT to their parent. */
function ignoreInterrupt(): void {}

/** The pool worker's target. */
export async function poolWorker(taskQueue: Queue<TaskMessage | null>, replyQueue: Queue<ReplyMessage>, setup: WorkerSetup): Promise<void> {
  // Ctrl-C reaches the whole foreground process group: the parent decides what it means (abort
  // a call, terminate the pool, exit — and its daemon workers die with it); a worker that died
  // of it first would turn the parent's AbortError into a WorkerExitedError.
  process.on('SIGINT', ignoreInterrupt)
  const me = setup.index
  let inbox = taskQueue
  let results = replyQueue
  if (setup.serializer) {
    const { module, name } = setup.serializer
    const serializer = (await whileBootstrapping(() => import(module)))[name] as Serializer
    inbox = inbox.withSerializer(serializer)
    results = results.withSerializer(serializer)
  }
  if (setup.initializer) {
    try {
      const init = await whileBootstrapping(() => resolveTarget(setup.initializer as TargetSpec))
      await init(...setup.initargs)
    } catch (err) {
      await results.put([Reply.InitFailed, me, toRecord(err)])
      return
    }
  }
  await results.put([Reply.Ready, me, process.pid])
  const targets = new Map<number, TargetFunction>()
  const revived = new Map<string, unknown>()
  let done = 0
  while (setup.maxTasks === 0 || done < setup.maxTasks) {
    let task: TaskMessage | null
    try {
      task = await inbox.get()
    } catch (err) {
      if (err instanceof EOFError) return // the pool closed: no more work
      if (!(err instanceof SerializationError)) throw err
      // The message was taken whole: the channel is intact, and this chunk is the oldest the
      // pool has not had an answer for (the worker answers in the order it takes).
      await results.put([Reply.Undecodable, me, toRecord(err)])
      done++
      continue
    }
    if (task === null) return
    const [chunkId, targetId, sentItems, star, spec, handles] = task
    let items = sentItems
    let fn = targets.get(targetId)
    try {
      if (handles) items = reviveItems(items, chunkId, handles, setup.carrier as number, revived)
      if (!fn) {
        if (!spec) {
          await results.put([Reply.Unknown, me, chunkId])
          continue
        }
        fn = await whileBootstrapping(() => resolveTarget(spec))
        targets.set(targetId, fn)
      }
    } catch (err) {
      if (err instanceof UnknownHandle) {
        await results.put([Reply.Unknown, me, chunkId])
        continue
      }
      // The target or a handle cannot be had here: the call fails with that error itself.
      await results.put([Reply.Failed, me, chunkId, toRecord(err), false])
      done++
      continue
    }
    let reply: ReplyMessage
    try {
      if (items.length >= WARM_FROM) warmMapPath(warmTasks)
      const values = await runChunk(fn, items, star)
      // Structured clone would turn a handle into an empty object without a word.
      if (holdsHandles(values)) throw new SerializationError('a task cannot return a Queue, Connection or other handle (yet)')
      reply = [Reply.Done, me, chunkId, values]
    } catch (err) {
      // A source-sent target that reaches for an outer variable fails as a TargetError, unwrapped.
      const ours = err instanceof TargetError || err instanceof SerializationError
      reply = [Reply.Failed, me, chunkId, toRecord(err), !ours]
    }
    try {
      await results.put(reply)
    } catch (err) {
      if (!(err instanceof SerializationError)) throw err
      await results.put([Reply.Failed, me, chunkId, toRecord(err), false])
    }
    done++
  }
}
