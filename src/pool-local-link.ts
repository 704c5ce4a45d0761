/**
 * The local backend: each worker is a process of this machine with an inbox (a queue only it
 * reads) and a reply channel of its own. When the worker exits, the link puts an `Exited` marker
 * into that reply channel: everything the worker sent is before it, so when the marker comes out
 * every reply has been reported, and what is still in the inbox was never started.
 */
import { constants } from 'node:os'
import { NOTHING } from './channel.js'
import { MultiprocError, rangeError, SerializationError } from './errors.js'
import { inheritableExecArgv, withHeapLimit } from './exec-argv.js'
import { FdCarrier, holdsHandles, packHandles } from './handles.js'
import type { Backend, ChunkMessage, ExitStatus, LinkEvents, LinkStart, WorkerLink } from './pool-link.js'
import { Reply, type ReplyMessage, type TaskMessage, type WorkerSetup } from './pool-messages.js'
import { Process, spawnWhileServerBoots, whenExited } from './process.js'
import { Queue } from './queue.js'
import { fromRecord } from './remote-error.js'

const WORKER_TARGET = { module: new URL('./pool-worker.js', import.meta.url), name: 'poolWorker' }
const INBOX_BYTES = 1 << 20
const RESULT_BYTES = 1 << 20
const MAX_FDS_PER_TASK = 253
/** Signal names by number; the first name of each number wins (SIGABRT, not its alias SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>()
for (const [name, num] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name)

/** Pool workers as local processes, reached through shared-memory queues. */
export const localProcesses: Backend = {
  name: 'local',
  carriesHandles: true,
  canTakeBack: true,
  localProcesses: true,
  configuresProcesses: true,
  start: (worker) => new LocalLink(worker),
}

class LocalLink implements WorkerLink {
  readonly #proc: Process
  readonly #inbox: Queue<TaskMessage | null>
  /** Its replies. One channel per worker: a worker killed mid-reply spoils only its own. */
  readonly #results: Queue<ReplyMessage>
  /** Sends descriptors of handles to the running worker. */
  readonly #carrier: FdCarrier
  readonly #events: LinkEvents
  readonly #start: LinkStart
  /** Handles (by key) whose descriptors this worker has been sent. */
  readonly #sentKeys = new Set<string>()
  /** Whether a loop receives its replies now. */
  #receiving = false
  /** Ends that loop for good (the worker is gone). */
  readonly #stopReceiving = new AbortController()
  /** It exited; its replies are being drained before the exit is reported. */
  #exitPending = false
  /** Its reply channel cannot be read any more. */
  #spoiled = false
  #killed = false
  /** The exit (or the failed start) has been reported: the link is closed. */
  #finished = false

  constructor(start: LinkStart) {
    this.#start = start
    this.#events = start.events
    const serializer = start.serializer
    let inbox: Queue<TaskMessage | null> | undefined
    let results: Queue<ReplyMessage> | undefined
    try {
      inbox = new Queue<TaskMessage | null>({ capacityBytes: INBOX_BYTES, serializer })
      results = new Queue<ReplyMessage>({ capacityBytes: RESULT_BYTES, serializer })
      this.#carrier = new FdCarrier()
    } catch (err) {
      inbox?.close()
      results?.close()
      throw err
    }
    this.#inbox = inbox
    this.#results = results
    const setup: WorkerSetup = { index: start.index, ...start.setup, carrier: this.#carrier }
    const { execArgv, env, maxOldSpaceSize } = start.processOptions
    const proc = new Process({
      target: WORKER_TARGET,
      args: [inbox, results, setup],
      daemon: true,
      name: `PoolWorker-${start.index}`,
      // The same filtering as any child's: the pool checked a given execArgv, the parent's is filtered.
      execArgv: execArgv || maxOldSpaceSize ? withHeapLimit(execArgv ?? inheritableExecArgv(), maxOldSpaceSize) : undefined,
      env: env ? { ...env } : undefined,
      ...(start.startMethod ? { startMethod: start.startMethod } : {}),
    })
    // A pool's first result must not wait for a fork server's boot: workers started meanwhile are spawned.
    spawnWhileServerBoots(proc)
    this.#proc = proc
    const started = proc.start()
    started.finally(() => this.#carrier.releaseTheirs()).catch(() => {})
    started.then(
      () => {
        // A kill asked for before the child existed takes effect now.
        if (this.#killed) this.kill()
        proc[whenExited]().then(() => this.#exited())
      },
      (err) => {
        // Killed or dead before it attached: an exit like any other.
        if (proc.exitCode !== null) proc[whenExited]().then(() => this.#exited())
        else this.#startFailed(err)
      },
    )
  }

  get name(): string {
    return this.#proc.name
  }

  get pid(): number | null {
    return this.#proc.pid
  }

  get process(): Process {
    return this.#proc
  }

  send(chunk: ChunkMessage): void {
    let items = chunk.items
    let handles: number[] | null = null
    if (holdsHandles(items)) [items, handles] = this.#sendHandles(chunk.chunkId, items)
    const message: TaskMessage = [chunk.chunkId, chunk.targetId, items, chunk.star, chunk.spec, handles]
    let sent: boolean
    try {
      sent = this.#inbox.tryPut(message)
    } catch (err) {
      if (!this.#brokenBy(err)) throw err
      return
    }
    if (sent) return
    // No room now (or larger than the ring): the put waits, in order with any before it.
    this.#inbox.put(message).catch((err) => {
      if (!this.#brokenBy(err)) this.#events.unsent(chunk.chunkId, err)
    })
  }

  /** An error of the channel itself (not of the message) makes the inbox unusable: the worker goes. */
  #brokenBy(err: unknown): boolean {
    if (!(err instanceof MultiprocError && err.code !== 'ERR_SERIALIZATION')) return false
    this.#lose()
    return true
  }

  /**
   * Replaces the handles in a chunk's items by markers and sends the worker the descriptors of
   * those it has not had yet. Returns the items to send and the descriptors sent (by our numbers).
   */
  #sendHandles(chunkId: number, chunkItems: unknown[]): [unknown[], number[]] {
    const packed = packHandles(chunkItems)
    const fresh: string[] = []
    const fds: number[] = []
    for (const [key, handleFds] of packed.handles) {
      if (this.#sentKeys.has(key)) continue
      fresh.push(key)
      fds.push(...handleFds)
    }
    if (fds.length > MAX_FDS_PER_TASK)
      throw rangeError(`a task may carry at most ${MAX_FDS_PER_TASK} descriptors of handles, got ${fds.length}`)
    if (fds.length > 0) this.#carrier.send(chunkId, fds)
    for (const key of fresh) this.#sentKeys.add(key)
    return [packed.value as unknown[], fds]
  }

  /**
   * Takes back the chunks still waiting in the inbox: the worker has not started them. Whatever it
   * takes concurrently, it takes whole (the parent is a second consumer of that queue).
   */
  takeBack(): number[] {
    const taken: number[] = []
    for (;;) {
      let m: TaskMessage | null
      try {
        m = this.#inbox.getNowait()
      } catch (err) {
        // A task message taken whole that the serializer cannot decode here: whose it was is
        // unknown, so the worker goes, and its exit settles every chunk it held.
        if (err instanceof SerializationError) this.kill()
        break
      }
      if (!m) continue
      // The worker never saw the handles whose descriptors came for this message.
      if (m[5] !== null && m[5].length > 0) this.#sentKeys.clear()
      taken.push(m[0])
    }
    return taken
  }

  retire(): void {
    this.#inbox.close()
  }

  kill(): void {
    this.#killed = true
    try {
      this.#proc.kill()
    } catch {
      // Not started: it is handled when start() fails or succeeds.
    }
  }

  join(): Promise<void> {
    return this.#proc.join()
  }

  /** The channel is unusable: the worker is killed, and its exit settles what it held. */
  #lose(): void {
    if (this.#finished) return
    this.kill()
    this.#events.lost()
  }

  #startFailed(err: unknown): void {
    this.#finished = true
    this.#stopReceiving.abort()
    this.#close()
    this.#events.startFailed(err)
  }

  /** The process exited: report it once the reply channel has delivered all it sent. */
  #exited(): void {
    this.#events.lost()
    if (this.#spoiled) {
      // Nobody reads a corrupt channel: there is nothing to wait for.
      this.#finish()
      return
    }
    this.#exitPending = true
    // Put after everything it sent (a reply it died in the middle of is skipped before it).
    this.#results.put([Reply.Exited, this.#start.index]).catch(() => this.#finish())
    this.listen()
  }

  #finish(): void {
    if (this.#finished) return
    this.#finished = true
    this.#exitPending = false
    this.#stopReceiving.abort()
    const unstarted = this.takeBack()
    this.#close()
    const code = this.#proc.exitCode
    const signal = code !== null && code < 0 ? (SIGNAL_NAMES.get(-code) ?? `signal ${-code}`) : null
    const status: ExitStatus = { exitCode: signal ? null : code, signal }
    this.#events.exited(status, unstarted)
  }

  #close(): void {
    this.#inbox.close()
    this.#results.close()
    this.#carrier.close()
  }

  // ---- receiving ----

  #wanted(): boolean {
    if (this.#spoiled || this.#finished) return false
    return this.#exitPending || this.#start.wantsReplies()
  }

  listen(): void {
    if (this.#receiving || !this.#wanted()) return
    this.#receiving = true
    // Replies are handled on a later turn, never inside the call (maybe a user's callback)
    // that started the loop.
    queueMicrotask(() => void this.#receive())
  }

  /** Spinning on one worker's replies blocks the others': spin only when one worker is busy. */
  readonly #spinWorthIt = (): boolean => this.#start.busyWorkers() <= 1

  /** Receives the worker's replies while it has something to say. */
  async #receive(): Promise<void> {
    const signal = this.#stopReceiving.signal
    try {
      while (this.#wanted() && !signal.aborted) {
        let msg: ReplyMessage | typeof NOTHING
        try {
          // What is there already is taken without a promise; only an empty channel waits.
          msg = this.#results.tryGet()
          if (msg === NOTHING) msg = await this.#results.getWhen(this.#spinWorthIt, signal)
        } catch (err) {
          if (signal.aborted) return
          if (err instanceof SerializationError) {
            // The reply was taken whole but cannot be decoded here: the channel is intact.
            this.#undecodable(err)
            continue
          }
          // The channel is spoilt (corrupt): nothing more can be read from it; the exit
          // settles what the worker held.
          this.#spoiled = true
          if (this.#exitPending) this.#finish()
          else this.#lose()
          return
        }
        this.#handle(msg)
      }
    } finally {
      this.#receiving = false
    }
    this.listen()
  }

  #undecodable(err: SerializationError): void {
    // The link's own exit marker, which follows everything the worker sent.
    if (this.#exitPending && this.#results.empty()) this.#finish()
    else
      this.#events.undecodable(
        new SerializationError(`a reply from ${this.name} cannot be decoded: ${err.message}`, { cause: err.cause ?? err }),
      )
  }

  #handle(msg: ReplyMessage): void {
    const events = this.#events
    switch (msg[0]) {
      case Reply.Ready:
        events.ready()
        break
      case Reply.Done:
        events.done(msg[2], msg[3])
        break
      case Reply.Failed:
        events.failed(msg[2], msg[3], msg[4])
        break
      case Reply.InitFailed:
        events.initFailed(msg[2])
        break
      case Reply.Exited:
        this.#finish()
        break
      case Reply.Undecodable: {
        const cause = fromRecord(msg[2])
        events.undecodable(new SerializationError(`a task sent to ${this.name} cannot be decoded there: ${msg[2].message}`, { cause }))
        break
      }
      case Reply.Unknown:
        // It may lack a handle whose descriptors came with a message taken back: send them all again.
        this.#sentKeys.clear()
        events.unknown(msg[2])
        break
    }
  }
}
