/**
 * V8 runs a loop in its interpreter until the loop has run a while, and only then compiles it
 * (in the background, taking over the running loop once done). A fresh pool's per-item loops —
 * looking for handles in a chunk, checking, packing and unpacking its numbers, calling the task
 * once per item — would otherwise run interpreted through most of the first large map, at a
 * fraction of their later speed. Warming runs them over synthetic chunks of numbers, once per
 * process, so that V8 compiles them before the real chunks run: in the parent before it sends
 * the first chunk of `WARM_FROM` items or more, in a worker before it runs such a chunk, and in
 * the fork server before it forks any worker (so that forked workers start warm).
 */
import { holdsHandles } from './handles.js'
import { decodePlain, encodePlain, trustArray } from './plain.js'

/**
 * Items of the first, short chunks: they show each loop every kind of array it will meet (packed
 * and holey, of int32 and of float64 numbers) before V8 compiles it, so that the compiled code
 * takes them all rather than being dropped and made again at each new kind.
 */
const SHOW_ITEMS = 16
/** Items per synthetic chunk, and chunks of each kind: enough for V8 to choose to compile each loop. */
const WARM_ITEMS = 2048
const WARM_ROUNDS = 4
/**
 * Numbers in one last message each way, once the loops are compiled: more than compiled code
 * makes an array of in place (about 16,000), so that the slower path is learnt here and not at
 * the first large chunk (which would drop the compiled code), and the encoder's buffers grow here.
 */
const WARM_LONG_ITEMS = 20_000

let warmed = false

/** The synthetic chunks: int32 numbers (results int32 too) and float64 ones. */
function warmSources(): number[][] {
  const ints = Array.from({ length: WARM_ITEMS }, (_, i) => i)
  return [ints, ints.map((i) => i * 0.5)]
}

/** One chunk's trip: the parent's checks and encoding, the worker's decoding, tasks and reply, the parent's decoding. */
function warmChunk(source: number[], round: number, runTasks: ((items: unknown[]) => unknown[]) | undefined): void {
  const items = trustArray(source.slice())
  if (holdsHandles(items)) return
  const bytes = encodePlain([round, 0, items, false, null, null], true)
  if (!bytes) return
  const sent = decodePlain(bytes) as [number, number, unknown[]]
  const values = trustArray(runTasks ? runTasks(sent[2]) : sent[2].slice())
  if (holdsHandles(values)) return
  const reply = encodePlain([1, 0, round, values], true)
  if (reply) decodePlain(reply)
}

/** A long array of int32 and one of float64 numbers, each encoded and decoded. */
function warmLong(): void {
  const ints = trustArray(Array.from({ length: WARM_LONG_ITEMS }, (_, i) => i))
  for (const v of [ints, trustArray(ints.map((i) => i * 0.5))]) {
    const bytes = encodePlain(v, true)
    if (bytes) decodePlain(bytes)
  }
}

/**
 * The least items in a chunk that warm the path first: chunks of fewer do not run long enough
 * for warming to pay (a pool that only ever runs small chunks never warms).
 */
export const WARM_FROM = 1000

/**
 * Warms the map path now, once per process: in a worker with `runTasks`, its task loop (running
 * synthetic tasks); in the parent without.
 */
export function warmMapPath(runTasks?: (items: unknown[]) => unknown[]): void {
  if (warmed) return
  warmed = true
  const sources = warmSources()
  for (const source of sources) warmChunk(source.slice(0, SHOW_ITEMS), 0, runTasks)
  for (let round = 0; round < WARM_ROUNDS; round++) for (const source of sources) warmChunk(source, round, runTasks)
  warmLong()
}
