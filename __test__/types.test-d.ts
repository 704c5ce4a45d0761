// Type tests of the shipped declarations (dist/*.d.ts), compiled by `npm run test:types`
// (tsc --noEmit, strict, through __test__/tsconfig.types.json) and never run. Pool calls and
// Process take their types from the target (API.md, "Pool"): each inferred result is asserted
// exactly with `check<Equal<…>>()`, and each wrong use carries `@ts-expect-error`, so that a
// wrong use that compiles fails the build as surely as a result of the wrong type.
import {
  type AsyncResult,
  type ExportOf,
  type IMapIterator,
  type ModuleTarget,
  Pool,
  type PoolOptions,
  Process,
  type ProcessOptions,
  type Progress,
  Queue,
  type Target,
} from '../dist/index.js'
import type * as tasks from './fixtures/typed-tasks.mjs'
import { add, hello, label, square } from './fixtures/typed-tasks.mjs'

/** True when `X` and `Y` are the same type, not merely assignable one to the other. */
type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false
/** Compiles only when its type argument is `true`. */
function check<T extends true>(): T | undefined {
  return undefined
}

const tasksUrl = new URL('./fixtures/typed-tasks.mjs', import.meta.url)
/** Typed `{ module, name }` targets: one helper, from the module's type. */
const squareExport: ExportOf<typeof tasks, 'square'> = { module: tasksUrl, name: 'square' }
const addExport: ExportOf<typeof tasks, 'add'> = { module: tasksUrl, name: 'add' }
const labelExport: ExportOf<typeof tasks, 'label'> = { module: tasksUrl, name: 'label' }
/** An untyped one: its arguments go unchecked, its result is `unknown`. */
const untyped = { module: tasksUrl, name: 'square' }

export async function apply(pool: Pool): Promise<void> {
  const n = await pool.apply(square, [3])
  check<Equal<typeof n, number>>()
  const sum = await pool.apply(add, [1, 2])
  check<Equal<typeof sum, number>>()
  // An async target resolves with what its promise gives.
  const s = await pool.apply(label, [1])
  check<Equal<typeof s, string>>()
  const s2 = await pool.apply(label, [1, 50])
  check<Equal<typeof s2, string>>()
  const h = await pool.apply(hello)
  check<Equal<typeof h, string>>()
  check<Equal<Awaited<ReturnType<typeof pool.apply<string>>>, string>>()
  // A self-contained function sent as source is typed the same way; unannotated parameters take
  // their types from the arguments.
  const product = await pool.apply((a: number, b: number) => a * b, [2, 3])
  check<Equal<typeof product, number>>()
  const joined = await pool.apply((a, b) => `${a.toFixed(1)}${b.toUpperCase()}`, [1, 'x'])
  check<Equal<typeof joined, string>>()
  const fromExport = await pool.apply(addExport, [1, 2])
  check<Equal<typeof fromExport, number>>()
  const fromUntyped = await pool.apply(untyped, [1, 'anything'])
  check<Equal<typeof fromUntyped, unknown>>()
  // Type arguments written out, as before the calls were typed: the result type given.
  const written = await pool.apply<number>(untyped, [1])
  check<Equal<typeof written, number>>()
  const readonlyArgs = [1, 2] as const
  check<Equal<Awaited<ReturnType<typeof pool.apply<number, [number, number]>>>, number>>()
  await pool.apply(add, readonlyArgs)

  // @ts-expect-error a string where square takes a number
  await pool.apply(square, ['a'])
  // @ts-expect-error too few arguments
  await pool.apply(add, [1])
  // @ts-expect-error too many arguments
  await pool.apply(square, [1, 2])
  // @ts-expect-error arguments left out of a target that takes some
  await pool.apply(square)
  // @ts-expect-error args is an array
  await pool.apply(square, 1)
  // @ts-expect-error a typed export checks its arguments too
  await pool.apply(addExport, [1, '2'])
  // @ts-expect-error the inferred parameter is a number: no toUpperCase
  await pool.apply((a) => a.toUpperCase(), [1])
  // @ts-expect-error not a target
  await pool.apply(5, [])
  // @ts-expect-error the result is a number, not a string
  const wrong: string = await pool.apply(square, [2])
  void wrong
}

export async function applyAsync(pool: Pool): Promise<void> {
  const r = pool.applyAsync(label, [2], {
    callback: (value) => check<Equal<typeof value, string>>(),
    errorCallback: (error) => check<Equal<typeof error, unknown>>(),
  })
  check<Equal<typeof r, AsyncResult<string>>>()
  const got = await r.get(1000)
  check<Equal<typeof got, string>>()
  const awaited = await r
  check<Equal<typeof awaited, string>>()
  const zero = pool.applyAsync(hello)
  check<Equal<typeof zero, AsyncResult<string>>>()
  const fromUntyped = pool.applyAsync(untyped, [1])
  check<Equal<typeof fromUntyped, AsyncResult<unknown>>>()

  // @ts-expect-error a string where square takes a number
  pool.applyAsync(square, ['a'])
  // @ts-expect-error the callback gets the result, a number
  pool.applyAsync(square, [1], { callback: (value: string) => value })
}

async function* numbers(): AsyncGenerator<number> {
  yield 1
}

function* strings(): Generator<string> {
  yield 'a'
}

export async function map(pool: Pool): Promise<void> {
  const squares = await pool.map(square, [1, 2, 3])
  check<Equal<typeof squares, number[]>>()
  const labels = await pool.map(label, [1, 2])
  check<Equal<typeof labels, string[]>>()
  const fromAsync = await pool.map(square, numbers())
  check<Equal<typeof fromAsync, number[]>>()
  const fromSet = await pool.map(square, new Set([1, 2]))
  check<Equal<typeof fromSet, number[]>>()
  const lengths = await pool.map((s) => s.length, strings())
  check<Equal<typeof lengths, number[]>>()
  const asyncInline = await pool.map(async (x: number) => [x], [1])
  check<Equal<typeof asyncInline, number[][]>>()
  const fromExport = await pool.map(squareExport, [1, 2])
  check<Equal<typeof fromExport, number[]>>()
  const fromUntyped = await pool.map(untyped, ['a', 1])
  check<Equal<typeof fromUntyped, unknown[]>>()
  const written = await pool.map<number>(untyped, [1])
  check<Equal<typeof written, number[]>>()
  const chars = await pool.map((c) => c.charCodeAt(0), 'abc')
  check<Equal<typeof chars, number[]>>()

  // @ts-expect-error pool.map(square, ['a']) does not compile (API.md)
  await pool.map(square, ['a'])
  // @ts-expect-error nor does it from an async iterable of strings
  await pool.map(square, strings())
  // @ts-expect-error map calls its target with one argument; add needs two
  await pool.map(add, [1, 2])
  // @ts-expect-error a typed export checks its items too
  await pool.map(squareExport, ['a'])
  // @ts-expect-error not an iterable
  await pool.map(square, 5)

  const r = pool.mapAsync(label, [1], { callback: (values) => check<Equal<typeof values, string[]>>() })
  check<Equal<typeof r, AsyncResult<string[]>>>()
  const values = await r
  check<Equal<typeof values, string[]>>()
  // @ts-expect-error a string where square takes a number
  pool.mapAsync(square, ['a'])
}

export async function starmap(pool: Pool): Promise<void> {
  const sums = await pool.starmap(add, [
    [1, 2],
    [3, 4],
  ])
  check<Equal<typeof sums, number[]>>()
  const pairs: [number, number][] = [[1, 2]]
  const fromPairs = await pool.starmap(add, pairs)
  check<Equal<typeof fromPairs, number[]>>()
  const constPairs = [[1, 2]] as const
  const fromConst = await pool.starmap(add, constPairs)
  check<Equal<typeof fromConst, number[]>>()
  const labels = await pool.starmap(label, [[1], [2, 10]])
  check<Equal<typeof labels, string[]>>()
  const inline = await pool.starmap((a, b) => a * b, [[1, 2]])
  check<Equal<typeof inline, number[]>>()
  const fromExport = await pool.starmap(addExport, [[1, 2]])
  check<Equal<typeof fromExport, number[]>>()
  const fromUntyped = await pool.starmap(untyped, [[1], [2]])
  check<Equal<typeof fromUntyped, unknown[]>>()
  // Argument lists of different shapes: the type arguments written out leave them unchecked.
  const mixed = await pool.starmap<unknown>(untyped, [[1], ['a', 'b']])
  check<Equal<typeof mixed, unknown[]>>()

  // @ts-expect-error a string where add takes a number
  await pool.starmap(add, [[1, '2']])
  // @ts-expect-error too few arguments in an item
  await pool.starmap(add, [[1]])
  // @ts-expect-error an item that is not an argument list
  await pool.starmap(add, [1, 2])

  const r = pool.starmapAsync(add, [[1, 2]], { callback: (values) => check<Equal<typeof values, number[]>>() })
  check<Equal<typeof r, AsyncResult<number[]>>>()
  // @ts-expect-error a string where add takes a number
  pool.starmapAsync(add, [['1', 2]])
}

export async function imap(pool: Pool): Promise<void> {
  const it = pool.imap(label, [1, 2])
  check<Equal<typeof it, IMapIterator<string>>>()
  for await (const s of it) check<Equal<typeof s, string>>()
  const unordered = pool.imapUnordered(square, numbers(), { chunksize: 4 })
  check<Equal<typeof unordered, IMapIterator<number>>>()
  const step = await unordered.next()
  if (!step.done) check<Equal<typeof step.value, number>>()
  const fromExport = pool.imap(squareExport, [1])
  check<Equal<typeof fromExport, IMapIterator<number>>>()
  const fromUntyped = pool.imapUnordered(untyped, [1])
  check<Equal<typeof fromUntyped, IMapIterator<unknown>>>()

  // @ts-expect-error a string where square takes a number
  pool.imap(square, ['a'])
  // @ts-expect-error a string where square takes a number
  pool.imapUnordered(square, strings())
}

export function process(): void {
  new Process({ target: square, args: [1] })
  new Process({ target: label, args: [1, 20], name: 'labeller', daemon: true })
  new Process({ target: hello })
  new Process({ target: (q: Queue<string>, n: number) => q.putSync(String(n)), args: [new Queue<string>(), 1] })
  // Unannotated parameters take their types from args.
  new Process({ target: (q, n) => q.putSync(n.toFixed(0)), args: [new Queue<string>(), 1] })
  new Process({ target: addExport, args: [1, 2] })
  new Process({ target: untyped, args: ['anything', 1] })
  new Process({ target: untyped })
  const p: Process = new Process({ target: square, args: [1] })
  const options: ProcessOptions = { target: square, args: [1] }
  new Process(options)
  void p

  // @ts-expect-error a string where square takes a number
  new Process({ target: square, args: ['a'] })
  // @ts-expect-error args left out of a target that takes some
  new Process({ target: square })
  // @ts-expect-error a Queue of numbers where the target takes a Queue of strings
  new Process({ target: (q: Queue<string>) => q.close(), args: [new Queue<number>()] })
  // @ts-expect-error a typed export checks its arguments too
  new Process({ target: addExport, args: [1] })
}

export async function targets(pool: Pool): Promise<void> {
  check<Equal<typeof squareExport, ExportOf<typeof tasks, 'square'>>>()
  // The same helper straight from `typeof import(…)`.
  const viaImport: ExportOf<typeof import('./fixtures/typed-tasks.mjs'), 'label'> = { module: tasksUrl, name: 'label' }
  const labels = await pool.map(viaImport, [1, 2])
  check<Equal<typeof labels, string[]>>()
  const asTarget: Target<[number], number> = squareExport
  const asModuleTarget: ModuleTarget = labelExport
  const plain: ModuleTarget = { module: './tasks.js' }
  void [asTarget, asModuleTarget, plain]

  // @ts-expect-error `version` is not a function: no target can name it
  const notAFunction: ExportOf<typeof tasks, 'version'> = { module: tasksUrl, name: 'version' }
  // @ts-expect-error no such export
  const missing: ExportOf<typeof tasks, 'cube'> = { module: tasksUrl, name: 'cube' }
  // @ts-expect-error the name must be the one the type names
  const mismatched: ExportOf<typeof tasks, 'square'> = { module: tasksUrl, name: 'add' }
  // @ts-expect-error an ExportOf names its export
  const unnamed: ExportOf<typeof tasks, 'square'> = { module: tasksUrl }
  void [notAFunction, missing, mismatched, unnamed]
}

export function options(): void {
  const o: PoolOptions = {
    processes: 2,
    execArgv: ['--enable-source-maps'],
    env: { MODE: 'test' },
    maxOldSpaceSize: 256,
    maxQueue: 'auto',
  }
  const pool = new Pool(o)
  check<Equal<typeof pool.backlog, number>>()
  check<Equal<typeof pool.needsDrain, boolean>>()
  check<Equal<typeof pool.maxQueue, number>>()
  pool.on('drain', () => {})
  pool.once('progress', (progress) => check<Equal<typeof progress, Progress>>())
  const onProgress = (p: Progress) => p.done
  const chained = pool.on('progress', onProgress).off('progress', onProgress)
  check<Equal<typeof chained, Pool>>()

  // @ts-expect-error maxQueue is a number or 'auto'
  new Pool({ maxQueue: 'all' })
  // @ts-expect-error execArgv is an array of strings
  new Pool({ execArgv: '--enable-source-maps' })
  // @ts-expect-error env values are strings
  new Pool({ env: { PORT: 80 } })
  // @ts-expect-error maxOldSpaceSize is a number of MiB
  new Pool({ maxOldSpaceSize: '256m' })
}
