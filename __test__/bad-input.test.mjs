// Bad input to every public constructor and method: wrong types, NaN, negative and fractional
// numbers, numbers beyond 2^53, strings for numbers, null for objects. API.md: wrong argument
// types and ranges give TypeError (ERR_INVALID_ARG_TYPE) / RangeError (ERR_OUT_OF_RANGE) with a
// code; a negative timeout counts as 0. One test per case: the expected class and code, and in
// every case an error that is a package class or TypeError/RangeError with a string `code`; a
// method that returns a promise rejects (it does not throw); nothing hangs (a watchdog on every
// call), and nothing is left running (checked per Process case and for the file).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  AbortError,
  Barrier,
  BoundedSemaphore,
  Condition,
  InvalidStateError,
  JoinableQueue,
  Lock,
  MultiprocError,
  Pipe,
  Pool,
  Process,
  Queue,
  RawArray,
  RawValue,
  RemoteError,
  RLock,
  Semaphore,
  SerializationError,
  SharedArray,
  SharedMemory,
  SimpleQueue,
  Value,
} from '../dist/index.js'
import { closeAll, waitCases } from './fixtures/bad-input-waits.mjs'
import { narrow } from './fixtures/pool-narrow-backend.mjs'
import { add, square } from './fixtures/pool-tasks.mjs'
import { checkNoLeaks, fixture, fixtureUrl, isDead, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const W = 20000

// ---- expectations ----

const TYPE = { classes: [TypeError], codes: ['ERR_INVALID_ARG_TYPE'], name: 'TypeError ERR_INVALID_ARG_TYPE' }
const RANGE = { classes: [RangeError], codes: ['ERR_OUT_OF_RANGE'], name: 'RangeError ERR_OUT_OF_RANGE' }
/** A value of the right type that is not one of the allowed ones (Node: ERR_INVALID_ARG_VALUE). */
const VALUE = {
  classes: [TypeError, RangeError],
  codes: ['ERR_INVALID_ARG_VALUE', 'ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE'],
  name: 'TypeError/RangeError (invalid value)',
}
const pkg = (Cls) => ({ classes: [Cls], codes: [new Cls('').code], name: `${Cls.name} ${new Cls('').code}` })
/** Not an argument error: the input is allowed (a negative timeout is 0). Whatever else happens must be typed. */
const ACCEPTED = { accepted: true, name: 'accepted' }

const typed = (e) => (e instanceof MultiprocError || e instanceof TypeError || e instanceof RangeError) && typeof e?.code === 'string'

// ---- shared objects, made once ----

const made = []
const keep = (o) => {
  made.push(o)
  return o
}
let pool
function sharedPool() {
  pool ??= new Pool({ processes: 1, modules: [fixtureUrl('pool-tasks.mjs')] })
  return pool
}
test.after.always('close what the cases made', async () => {
  for (const o of made) {
    try {
      o.close?.()
    } catch {}
  }
  if (pool) {
    pool.terminate()
    await within(W, pool.join(), 'join of the shared pool')
  }
})

const newPipe = () => keep(Pipe({ capacityBytes: 4096 }))[0]
const newQueue = (Ctor = Queue, opts = {}) => keep(new Ctor({ capacityBytes: 4096, ...opts }))
const heldCondition = () => {
  const c = new Condition(new Lock())
  c.acquireSync()
  return c
}

// ---- the runner ----

/**
 * Calls `fn()`; an `async` case's promise is awaited under a watchdog. Returns what happened:
 * `{ threw }` (synchronously), `{ rejected }`, or `{ value }`.
 */
async function outcome(what, fn) {
  let r
  try {
    r = fn()
  } catch (error) {
    return { threw: error }
  }
  if (r && typeof r.then === 'function') {
    let done = false
    const watched = within(
      W,
      Promise.resolve(r).finally(() => (done = true)),
      what,
    )
    try {
      return { value: await watched, async: true }
    } catch (error) {
      if (!done) return { hung: error }
      return { rejected: error, async: true }
    }
  }
  return { value: r }
}

function check(t, title, { error, expected, isAsync, result }) {
  if (result.hung) {
    t.fail(`${title}: ${result.hung.message}`)
    return
  }
  if (error !== undefined) {
    t.true(
      typed(error),
      `not a package class or TypeError/RangeError with a code: ${error?.constructor?.name} ${error?.code}: ${error?.message}`,
    )
  }
  if (expected.accepted) {
    t.false(
      (error instanceof TypeError || error instanceof RangeError) && /^ERR_(INVALID_ARG|OUT_OF_RANGE)/.test(error?.code ?? ''),
      `refused as an argument error: ${error}`,
    )
    return
  }
  t.truthy(error, `accepted (gave ${JSON.stringify(result.value) ?? String(result.value)}), ${expected.name} expected`)
  if (error === undefined) return
  t.true(
    expected.classes.some((C) => error instanceof C),
    `${error.constructor.name} (${error.code}: ${error.message}), ${expected.name} expected`,
  )
  t.true(expected.codes.includes(error.code), `code ${error.code}, ${expected.codes.join(' or ')} expected (${error.message})`)
  if (isAsync) t.false('threw' in result, `threw synchronously (${error.constructor.name}); a method that returns a promise must reject`)
}

/**
 * One case: `fn` makes the call (building what it needs), `expected` the error; `async` when
 * the method returns a promise.
 */
function badInput(title, fn, expected, { async: isAsync = false } = {}) {
  test(`${title} → ${expected.name}`, async (t) => {
    const result = await outcome(title, fn)
    const error = result.threw ?? result.rejected
    check(t, title, { error, expected, isAsync, result })
  })
}

const numbers = (values, expected) => values.map((v) => [v, expected])
const show = (v) =>
  typeof v === 'string'
    ? JSON.stringify(v)
    : typeof v === 'bigint'
      ? `${v}n`
      : v === null
        ? 'null'
        : typeof v === 'object'
          ? '{}'
          : String(v)

// ---- Pipe and Connection ----

for (const v of ['x', 5, null]) badInput(`Pipe(${show(v)})`, () => Pipe(v), TYPE)
for (const [v, e] of [...numbers([0, -1, Number.NaN, 1.5, 2 ** 31, 2 ** 53, 2 ** 60], RANGE), ...numbers(['4096', null], TYPE)])
  badInput(`Pipe({ capacityBytes: ${show(v)} })`, () => keep(Pipe({ capacityBytes: v }))[0], e)
badInput("Pipe({ duplex: 'yes' })", () => Pipe({ duplex: 'yes' }), TYPE)
badInput('Pipe({ serializer: 5 })', () => keep(Pipe({ serializer: 5 }))[0], TYPE)

for (const [v, e] of [...numbers([Number.NaN, 1.5, -1, 2 ** 53, 2 ** 60], RANGE), ...numbers(['1', null], TYPE)]) {
  badInput(`sendBytes(buf, ${show(v)}) (offset)`, () => newPipe().sendBytes(Buffer.alloc(8), v), e, { async: true })
  badInput(`sendBytes(buf, 0, ${show(v)}) (size)`, () => newPipe().sendBytes(Buffer.alloc(8), 0, v), e, { async: true })
  badInput(`sendBytesSync(buf, ${show(v)}) (offset)`, () => newPipe().sendBytesSync(Buffer.alloc(8), v), e)
  badInput(`sendBytesSync(buf, 0, ${show(v)}) (size)`, () => newPipe().sendBytesSync(Buffer.alloc(8), 0, v), e)
  badInput(`recvBytesInto(buf, ${show(v)}) (offset)`, () => newPipe().recvBytesInto(Buffer.alloc(8), v, { timeout: 10 }), e, {
    async: true,
  })
  badInput(`recvBytesIntoSync(buf, ${show(v)}) (offset)`, () => newPipe().recvBytesIntoSync(Buffer.alloc(8), v, 10), e)
}
for (const v of [null, 5, 'bytes', {}]) {
  badInput(`sendBytes(${show(v)})`, () => newPipe().sendBytes(v), TYPE, { async: true })
  badInput(`sendBytesSync(${show(v)})`, () => newPipe().sendBytesSync(v), TYPE)
  badInput(`recvBytesInto(${show(v)})`, () => newPipe().recvBytesInto(v, 0, { timeout: 10 }), TYPE, { async: true })
}

// ---- timeouts of every wait ----
// NaN → RangeError, '5' / a bigint → TypeError, -1 → 0 (API.md). The blocking waits run in a
// process of their own (fixtures/bad-input-sync.mjs): one that takes a bad timeout for "no limit"
// would block this one for good.

const poolWaits = [
  ['Pool#apply', (o) => sharedPool().apply(square, [2], o), true],
  ['Pool#map', (o) => sharedPool().map(square, [1, 2], o), true],
  ['Pool#starmap', (o) => sharedPool().starmap(add, [[1, 2]], o), true],
  ['AsyncResult#get', (o) => sharedPool().applyAsync(square, [3]).get(o), true],
  ['AsyncResult#wait', (o) => sharedPool().applyAsync(square, [3]).wait(o), true],
  ['IMapIterator#next (imap with a timeout)', (o) => sharedPool().imap(square, [1], o).next(), true],
]
const EXPECT = { range: RANGE, type: TYPE, accepted: ACCEPTED }
const asyncWaits = waitCases(poolWaits).filter((c) => c.async)
for (const c of asyncWaits) badInput(c.title, c.call, EXPECT[c.expect], { async: true })
test.after.always('close what the waits made', () => closeAll())

const SYNC_RUNNER = fileURLToPath(fixtureUrl('bad-input-sync.mjs'))
/** No line from the runner for this long: the call it is in blocks for good. */
const SILENCE_MS = 5000
let syncOutcomes

/** Runs the blocking waits (resuming after one that blocks); resolves with a Map title → outcome. */
function runSyncWaits() {
  syncOutcomes ??= (async () => {
    const outcomes = new Map()
    let titles
    let from = 0
    for (;;) {
      const { lines, code, signal, silent } = await runLines(SYNC_RUNNER, [String(from)], SILENCE_MS)
      titles ??= lines.find((l) => l.titles)?.titles
      if (!titles) throw new Error(`the runner did not start: exit ${code} ${signal}`)
      let current
      for (const l of lines) {
        if (l.start) current = l.i
        else if (l.outcome) {
          outcomes.set(titles[l.i], l.outcome)
          current = undefined
        }
      }
      if (lines.some((l) => l.done)) return outcomes
      if (current === undefined) throw new Error(`the runner stopped outside a call: exit ${code} ${signal}`)
      outcomes.set(titles[current], silent ? { blocked: SILENCE_MS } : { died: `exit ${code}, signal ${signal}` })
      from = current + 1
      if (from >= titles.length) return outcomes
    }
  })()
  return syncOutcomes
}

/** Runs `node script ...args`; kills it after `silenceMs` without a line. Resolves with its JSON lines. */
function runLines(script, args, silenceMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = []
    let buf = ''
    let silent = false
    let timer
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        silent = true
        child.kill('SIGKILL')
      }, silenceMs)
    }
    arm()
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)))
        buf = buf.slice(i + 1)
      }
      arm()
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ lines, code, signal, silent })
    })
  })
}

for (const c of waitCases().filter((w) => !w.async)) {
  const expected = EXPECT[c.expect]
  test.serial(`${c.title} → ${expected.name}`, async (t) => {
    t.timeout(300_000) // the first one waits for the runner to go through all of them
    const outcomes = await within(240_000, runSyncWaits(), 'the blocking waits')
    const o = outcomes.get(c.title)
    if (!o) return t.fail('no outcome')
    if (o.blocked) return t.fail(`blocked the calling thread for good (nothing for ${o.blocked} ms)`)
    if (o.died) return t.fail(`the process making the call died: ${o.died}`)
    const e = o.error
    if (e)
      t.true(
        e.typed && typeof e.code === 'string',
        `not a package class or TypeError/RangeError with a code: ${e.name} ${e.code}: ${e.message}`,
      )
    if (expected.accepted) {
      t.false(
        Boolean(e?.isTypeError || e?.isRangeError) && /^ERR_(INVALID_ARG|OUT_OF_RANGE)/.test(e?.code ?? ''),
        `refused as an argument error: ${e?.message}`,
      )
      return
    }
    t.truthy(e, `accepted (gave ${o.value}), ${expected.name} expected`)
    if (!e) return
    t.true(expected === RANGE ? e.isRangeError : e.isTypeError, `${e.name} (${e.code}: ${e.message}), ${expected.name} expected`)
    t.true(expected.codes.includes(e.code), `code ${e.code}, ${expected.codes.join(' or ')} expected`)
  })
}

// ---- Queue options and methods ----

for (const Ctor of [Queue, SimpleQueue, JoinableQueue]) {
  for (const v of ['x', 5]) badInput(`new ${Ctor.name}(${show(v)})`, () => new Ctor(v), TYPE)
  badInput(`new ${Ctor.name}(null)`, () => new Ctor(null), TYPE)
  for (const [v, e] of [...numbers([0, -1, Number.NaN, 1.5, 2 ** 31, 2 ** 53, 2 ** 60], RANGE), ...numbers(['4096', null], TYPE)])
    badInput(`new ${Ctor.name}({ capacityBytes: ${show(v)} })`, () => keep(new Ctor({ capacityBytes: v })), e)
}
for (const Ctor of [Queue, JoinableQueue]) {
  for (const [v, e] of [...numbers([Number.NaN, 1.5, 2 ** 60, Number.POSITIVE_INFINITY], RANGE), ...numbers(['2', {}, 2n], TYPE)])
    badInput(`new ${Ctor.name}({ maxsize: ${show(v)} })`, () => keep(new Ctor({ maxsize: v, capacityBytes: 4096 })), e)
}
badInput('new Queue({ serializer: 5 })', () => keep(new Queue({ serializer: 5 })), TYPE)
badInput('Queue#put(a function)', () => newQueue().put(() => 1), pkg(SerializationError), { async: true })
badInput('Queue#putNowait(a symbol)', () => newQueue().putNowait(Symbol('s')), pkg(SerializationError))

// ---- locks, semaphores, events, conditions, barriers ----

for (const Ctor of [Lock, RLock]) {
  badInput(`${Ctor.name}#withLock(5)`, () => new Ctor().withLock(5), TYPE, { async: true })
  badInput(`${Ctor.name}#withLock(null)`, () => new Ctor().withLock(null), TYPE, { async: true })
  badInput(`${Ctor.name}#withLockSync(5)`, () => new Ctor().withLockSync(5), TYPE)
  badInput(`${Ctor.name}#release() unheld`, () => new Ctor().release(), pkg(InvalidStateError))
}
for (const Ctor of [Semaphore, BoundedSemaphore]) {
  for (const [v, e] of [...numbers([-1, 1.5, Number.NaN, 2 ** 31, 2 ** 53, 2 ** 60], RANGE), ...numbers(['1', null, {}], TYPE)])
    badInput(`new ${Ctor.name}(${show(v)})`, () => new Ctor(v), e)
  badInput(`${Ctor.name}#withLock(5)`, () => new Ctor().withLock(5), TYPE, { async: true })
  badInput(`${Ctor.name}#withLockSync(5)`, () => new Ctor().withLockSync(5), TYPE)
}
badInput('BoundedSemaphore#release() beyond its value', () => new BoundedSemaphore(1).release(), pkg(InvalidStateError))
for (const [title, v] of [
  ['5', 5],
  ['{}', {}],
  ["'lock'", 'lock'],
  ['a Semaphore', new Semaphore()],
])
  badInput(`new Condition(${title})`, () => new Condition(v), TYPE)
badInput('Condition#waitFor(5)', () => new Condition().waitFor(5), TYPE, { async: true })
badInput('Condition#waitForSync(5)', () => new Condition().waitForSync(5), TYPE)
badInput('Condition#wait() unheld', () => new Condition().wait({ timeout: 10 }), pkg(InvalidStateError), { async: true })
badInput('Condition#notify() unheld', () => new Condition().notify(), pkg(InvalidStateError))
badInput("Condition#notify('1')", () => heldCondition().notify('1'), TYPE)
badInput('Condition#notify(NaN)', () => heldCondition().notify(Number.NaN), RANGE)
for (const [v, e] of [...numbers([0, -1, 1.5, Number.NaN, 2 ** 31, 2 ** 53], RANGE), ...numbers(['2', null], TYPE)])
  badInput(`new Barrier(${show(v)})`, () => new Barrier(v), e)
badInput("new Barrier(2, 'x')", () => new Barrier(2, 'x'), TYPE)
badInput('new Barrier(2, { timeout: NaN })', () => new Barrier(2, { timeout: Number.NaN }), RANGE)
badInput("new Barrier(2, { timeout: '5' })", () => new Barrier(2, { timeout: '5' }), TYPE)
badInput('new Barrier(2, { action: 5 })', () => new Barrier(2, { action: 5 }), TYPE)

// ---- shared values and memory ----

for (const make of [Value, RawValue]) {
  badInput(`${make.name}('nope', 1)`, () => make('nope', 1), VALUE)
  badInput(`${make.name}(5, 1)`, () => make(5, 1), TYPE)
  badInput(`${make.name}('i32', 'x')`, () => make('i32', 'x'), TYPE)
  badInput(`${make.name}('i64', 1.5)`, () => make('i64', 1.5), RANGE)
  badInput(`${make.name}('f64', {})`, () => make('f64', {}), TYPE)
}
badInput("Value('f64', 1, 'x')", () => Value('f64', 1, 'x'), TYPE)
badInput("Value('f64', 1, { lock: 5 })", () => Value('f64', 1, { lock: 5 }), TYPE)
badInput("Value('f64', 1, { lock: false }).getLock()", () => Value('f64', 1, { lock: false }).getLock(), pkg(InvalidStateError))
badInput(
  "Value('i32', 0).value = 'x'",
  () => {
    Value('i32', 0).value = 'x'
  },
  TYPE,
)
for (const make of [RawArray, SharedArray]) {
  for (const [v, e] of [...numbers([-1, 1.5, Number.NaN, 2 ** 53, 2 ** 60], RANGE), ...numbers(['3', null], TYPE)])
    badInput(`${make.name}('f64', ${show(v)})`, () => make('f64', v), e)
  badInput(`${make.name}('nope', 3)`, () => make('nope', 3), VALUE)
  badInput(`${make.name}('i32', ['a'])`, () => make('i32', ['a']), TYPE)
}
badInput("SharedArray('f64', 3, 'x')", () => SharedArray('f64', 3, 'x'), TYPE)

badInput('new SharedMemory()', () => new SharedMemory(), TYPE)
badInput('new SharedMemory(null)', () => new SharedMemory(null), TYPE)
badInput("new SharedMemory('name')", () => new SharedMemory('name'), TYPE)
for (const [v, e] of [...numbers([0, -1, 1.5, Number.NaN, 2 ** 53, 2 ** 60], RANGE), ...numbers(['4096', null], TYPE)])
  badInput(`new SharedMemory({ size: ${show(v)} })`, () => shm({ size: v }), e)
badInput('new SharedMemory({ name: 5, size: 16 })', () => shm({ name: 5, size: 16 }), TYPE)
for (const name of ['', 'a/b', '.', '..', 'x'.repeat(300), 'nul\0byte'])
  badInput(
    `new SharedMemory({ name: ${JSON.stringify(name.length > 20 ? `${name.slice(0, 5)}…(${name.length})` : name)}, size: 16 })`,
    () => shm({ name, size: 16, create: true }),
    VALUE,
  )
badInput("new SharedMemory({ size: 16, create: 'yes' })", () => shm({ size: 16, create: 'yes' }), TYPE)
badInput("new SharedMemory({ size: 16, track: 'no' })", () => shm({ size: 16, track: 'no' }), TYPE)

function shm(opts) {
  const s = new SharedMemory(opts)
  // Accepted by mistake: do not leave it in /dev/shm.
  s.close()
  try {
    s.unlink()
  } catch {}
  return s
}

// ---- Process ----

const target = fixture('misc.mjs', 'exitWith')

/** A Process case: the constructor throws, or start() rejects; a start() that resolves is a failure (the child is killed). */
function badProcess(title, opts, expected) {
  test(`new Process(${title}) or its start() → ${expected.name}`, async (t) => {
    let p
    const made = await outcome(title, () => {
      p = new Process(opts)
      return p
    })
    let error = made.threw
    let result = made
    if (!error) {
      result = await outcome(`${title}: start()`, () => p.start())
      error = result.rejected ?? result.threw
      if (!error && !result.hung) {
        t.fail('start() resolved')
        p.kill()
      }
      if (p.pid) await within(W, p.join(), 'the child to end').catch(() => {})
      t.true(p.pid === null || isDead(p.pid), 'no child left running')
    }
    check(t, title, { error, expected, isAsync: false, result })
  })
}

for (const [title, opts, expected] of [
  ['', undefined, TYPE],
  ["'x'", 'x', TYPE],
  ['null', null, TYPE],
  ['{ target: 42 }', { target: 42 }, TYPE],
  ['{ target: null }', { target: null }, TYPE],
  ["{ target: { module: 5, name: 'x' } }", { target: { module: 5, name: 'x' } }, TYPE],
  ["{ execArgv: 'x' }", { target, execArgv: 'x' }, TYPE],
  ['{ execArgv: [5] }', { target, execArgv: [5] }, TYPE],
  ["{ env: 'x' }", { target, env: 'x' }, TYPE],
  ['{ env: { A: 5 } }', { target, env: { A: 5 } }, TYPE],
  ['{ env: null }', { target, env: null }, TYPE],
  ["{ modules: 'x' }", { target, modules: 'x' }, TYPE],
  ['{ modules: [5] }', { target, modules: [5] }, TYPE],
  ['{ name: 5 }', { target, name: 5 }, TYPE],
  ["{ daemon: 'yes' }", { target, daemon: 'yes' }, TYPE],
  ["{ args: 'x' }", { target, args: 'x' }, TYPE],
  ['{ args: null }', { target, args: null }, TYPE],
  ['{ args: [a function] }', { target, args: [() => 1] }, pkg(SerializationError)],
  ['{ args: [a symbol] }', { target, args: [Symbol('s')] }, pkg(SerializationError)],
  ['{ args: [{ nested: a function }] }', { target, args: [{ nested: () => 1 }] }, pkg(SerializationError)],
])
  badProcess(title, opts, expected)

test('Process#join with bad timeouts → RangeError / TypeError; -1 counts as 0', async (t) => {
  const p = new Process({ target: fixture('misc.mjs', 'sleepForever'), daemon: true })
  await within(W, p.start(), 'start')
  t.teardown(async () => {
    p.kill()
    await within(W, p.join(), 'join').catch(() => {})
  })
  for (const [v, expected] of [
    [Number.NaN, RANGE],
    ['5', TYPE],
    [{ timeout: Number.NaN }, RANGE],
    [{ timeout: '5' }, TYPE],
    [{ signal: 'x' }, TYPE],
  ]) {
    const r = await outcome('join', () => p.join(v))
    check(t, `join(${show(v)})`, { error: r.threw ?? r.rejected, expected, isAsync: true, result: r })
  }
  const r = await outcome('join(-1)', () => p.join(-1))
  check(t, 'join(-1)', { error: r.rejected, expected: ACCEPTED, isAsync: true, result: r })
  t.true(p.isAlive(), 'join(-1) returned at once')
})

test('Process#start() twice → InvalidStateError; the child runs once', async (t) => {
  const p = new Process({ target, args: [0] })
  await within(W, p.start(), 'start')
  const r = await outcome('second start', () => p.start())
  check(t, 'second start()', { error: r.threw ?? r.rejected, expected: pkg(InvalidStateError), isAsync: true, result: r })
  await within(W, p.join(), 'join')
  t.is(p.exitCode, 0)
})

// ---- Pool ----

for (const v of ['x', 5, null]) badInput(`new Pool(${show(v)})`, () => takeDown(new Pool(v)), TYPE)
for (const [v, e] of [...numbers([2 ** 53, 2 ** 60, 0, -1, 1.5, Number.NaN], RANGE), ...numbers(['2', null], TYPE)])
  badInput(`new Pool({ processes: ${show(v)} })`, () => poolOf({ processes: v }), e)
for (const [v, e] of [...numbers([0, -1, 1.5, Number.NaN, 2 ** 60], RANGE), ...numbers(['2'], TYPE)])
  badInput(`new Pool({ maxTasksPerChild: ${show(v)} })`, () => poolOf({ maxTasksPerChild: v }), e)
for (const [v, e] of [...numbers([Number.NaN], RANGE), ...numbers(['5', 5n], TYPE)])
  badInput(`new Pool({ taskTimeout: ${show(v)} })`, () => poolOf({ taskTimeout: v }), e)
badInput("new Pool({ initargs: 'x' })", () => poolOf({ initargs: 'x' }), TYPE)
badInput("new Pool({ modules: 'x' })", () => poolOf({ modules: 'x' }), TYPE)
badInput('new Pool({ modules: [5] })', () => poolOf({ modules: [5] }), TYPE)
badInput('new Pool({ serializer: 5 })', () => poolOf({ serializer: 5 }), TYPE)
badInput('new Pool({ initializer: 5 })', () => poolOf({ initializer: 5 }), TYPE)
for (const [v, e] of [
  ...numbers([-1, 1.5, Number.NaN, -Number.POSITIVE_INFINITY], RANGE),
  ...numbers([true, 5n, {}], TYPE),
  ...numbers(['2', 'x'], VALUE),
])
  badInput(`new Pool({ maxQueue: ${show(v)} })`, () => poolOf({ maxQueue: v }), e)
for (const [v, e] of [...numbers([0, -1, 1.5, Number.NaN, 2 ** 31, Number.POSITIVE_INFINITY], RANGE), ...numbers(['64', true], TYPE)])
  badInput(`new Pool({ maxOldSpaceSize: ${show(v)} })`, () => poolOf({ maxOldSpaceSize: v }), e)
for (const [label, v] of [
  ["'--expose-gc'", '--expose-gc'],
  ['null', null],
  ['[5]', [5]],
])
  badInput(`new Pool({ execArgv: ${label} })`, () => poolOf({ execArgv: v }), TYPE)
for (const flag of ['-e', '--print', '--inspect', '--input-type=module', '--test'])
  badInput(`new Pool({ execArgv: ['${flag}'] })`, () => poolOf({ execArgv: [flag] }), VALUE)
badInput(
  "new Pool({ maxOldSpaceSize: 64, execArgv: ['--max-old-space-size=32'] })",
  () => poolOf({ maxOldSpaceSize: 64, execArgv: ['--max-old-space-size=32'] }),
  VALUE,
)
for (const [label, v] of [
  ["'A=b'", 'A=b'],
  ['null', null],
  ['[]', []],
  ['{ A: 5 }', { A: 5 }],
])
  badInput(`new Pool({ env: ${label} })`, () => poolOf({ env: v }), TYPE)
const UNSUPPORTED = { classes: [TypeError], codes: ['ERR_UNSUPPORTED_OPTION'], name: 'TypeError ERR_UNSUPPORTED_OPTION' }
for (const [name, v] of [
  ['execArgv', []],
  ['env', {}],
  ['maxOldSpaceSize', 64],
])
  badInput(
    `new Pool({ backend: narrow, ${name} }) (a backend that does not start its workers)`,
    () => poolOf({ backend: narrow, [name]: v }),
    UNSUPPORTED,
  )

/** A pool made by a case: if it is made at all, it is taken down again. */
function poolOf(opts) {
  return takeDown(new Pool({ processes: 1, ...opts }))
}

function takeDown(p) {
  p.terminate()
  return p.join().then(() => 'a pool was made')
}

badInput('pool.apply(fn, [1], null)', () => sharedPool().apply(square, [1], null), TYPE, { async: true })
badInput("pool.apply(fn, [1], 'x')", () => sharedPool().apply(square, [1], 'x'), TYPE, { async: true })
badInput("pool.apply(fn, 'x')", () => sharedPool().apply(square, 'x'), TYPE, { async: true })
badInput('pool.apply(fn, null)', () => sharedPool().apply(square, null), TYPE, { async: true })
badInput('pool.apply(5)', () => sharedPool().apply(5, []), TYPE, { async: true })
badInput('pool.apply(null)', () => sharedPool().apply(null, []), TYPE, { async: true })
badInput('pool.apply(fn, [a function])', () => sharedPool().apply(square, [() => 1]), pkg(SerializationError), { async: true })
badInput('pool.apply(fn, [1], { onProgress: 5 })', () => sharedPool().apply(square, [1], { onProgress: 5 }), TYPE, { async: true })
// applyAsync and imap return at once (an AsyncResult, an iterator): they may throw; a rejection
// of what they return is fine too.
badInput('pool.applyAsync(fn, [1], { callback: 5 })', () => sharedPool().applyAsync(square, [1], { callback: 5 }).get(), TYPE)
badInput('pool.applyAsync(fn, [1], { errorCallback: 5 })', () => sharedPool().applyAsync(square, [1], { errorCallback: 5 }).get(), TYPE)
badInput('pool.applyAsync(fn, [1], null)', () => sharedPool().applyAsync(square, [1], null).get(), TYPE)
for (const v of [5, null, true, {}]) badInput(`pool.map(fn, ${show(v)})`, () => sharedPool().map(square, v), TYPE, { async: true })
for (const [v, e] of [...numbers([0, -1, 1.5, Number.NaN, 2 ** 60], RANGE), ...numbers(['2'], TYPE)]) {
  badInput(`pool.map(fn, [1], { chunksize: ${show(v)} })`, () => sharedPool().map(square, [1], { chunksize: v }), e, { async: true })
  badInput(`pool.imap(fn, [1], { chunksize: ${show(v)} })`, () => sharedPool().imap(square, [1], { chunksize: v }).next(), e)
  badInput(
    `pool.imapUnordered(fn, [1], { chunksize: ${show(v)} })`,
    () => sharedPool().imapUnordered(square, [1], { chunksize: v }).next(),
    e,
  )
  badInput(`pool.starmap(fn, [[1]], { chunksize: ${show(v)} })`, () => sharedPool().starmap(square, [[1]], { chunksize: v }), e, {
    async: true,
  })
}
badInput('pool.map(fn, [1], null)', () => sharedPool().map(square, [1], null), TYPE, { async: true })
// Checked in the parent (TypeError) or failing in the worker as any task that throws (RemoteError).
badInput(
  'pool.starmap(fn, [5]) (an item that is not an argument list)',
  () => sharedPool().starmap(square, [5]),
  { classes: [TypeError, RemoteError], codes: ['ERR_INVALID_ARG_TYPE', 'ERR_REMOTE'], name: 'TypeError or RemoteError' },
  { async: true },
)
badInput('pool.mapAsync(fn, 5)', () => sharedPool().mapAsync(square, 5).get(), TYPE, { async: true })
badInput('pool.imap(fn, 5)', () => sharedPool().imap(square, 5).next(), TYPE)
badInput('pool.join() before close()', () => sharedPool().join(), pkg(InvalidStateError), { async: true })
badInput("pool.on('progress', 5)", () => sharedPool().on('progress', 5), TYPE)

test('the shared pool still works after all the bad calls', async (t) => {
  t.is(await within(W, sharedPool().apply(square, [9]), 'apply'), 81)
})

test('an aborted signal is not a bad argument: AbortError', async (t) => {
  const r = await outcome('get', () => newQueue().get({ signal: AbortSignal.abort() }))
  t.true(r.rejected instanceof AbortError, `${r.rejected}`)
})
