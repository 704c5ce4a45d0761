import avaTest from 'ava'

import {
  AbortError,
  ClosedError,
  Empty,
  EOFError,
  Full,
  InvalidStateError,
  JoinableQueue,
  MultiprocError,
  Pipe,
  Process,
  Queue,
  SimpleQueue,
  TimeoutError,
} from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

// ---- Empty / Full ----

test('getNowait on an empty queue throws Empty (ERR_EMPTY)', (t) => {
  const q = new Queue()
  const e = t.throws(() => q.getNowait(), { instanceOf: Empty })
  t.is(e.code, 'ERR_EMPTY')
  t.true(e instanceof MultiprocError)
  t.is(e.name, 'Empty')
  t.throws(() => q.getSync({ block: false }), { instanceOf: Empty, code: 'ERR_EMPTY' })
  t.throws(() => q.getSync({ block: false, timeout: 1000 }), { instanceOf: Empty }, 'block:false ignores the timeout')
  t.throws(() => new SimpleQueue().getNowait(), { instanceOf: Empty })
})

test('putNowait on a full queue (maxsize 1) throws Full (ERR_FULL)', async (t) => {
  const q = new Queue({ maxsize: 1 })
  t.is(q.maxsize, 1)
  q.putNowait('a')
  t.true(q.full())
  const e = t.throws(() => q.putNowait('b'), { instanceOf: Full })
  t.is(e.code, 'ERR_FULL')
  t.throws(() => q.putSync('b', { block: false }), { instanceOf: Full, code: 'ERR_FULL' })
  t.is(q.qsize(), 1)
  t.is(q.getNowait(), 'a')
  t.false(q.full())
  q.putNowait('c')
  t.is(await q.get({ timeout: 1000 }), 'c')
})

test('a timed put on a full queue rejects with TimeoutError, not Full', async (t) => {
  const q = new Queue({ maxsize: 1 })
  await q.put(1)
  const started = performance.now()
  await t.throwsAsync(q.put(2, { timeout: 100 }), { instanceOf: TimeoutError, code: 'ERR_TIMEOUT' })
  t.true(performance.now() - started >= 90)
  t.throws(() => q.putSync(2, { timeout: 50 }), { instanceOf: TimeoutError, code: 'ERR_TIMEOUT' })
  t.is(q.qsize(), 1)
})

// ---- timeouts ----

test('get({ timeout: 100 }) on an empty queue rejects with TimeoutError after waiting', async (t) => {
  const q = new Queue()
  const started = performance.now()
  const e = await t.throwsAsync(q.get({ timeout: 100 }), { instanceOf: TimeoutError })
  const waited = performance.now() - started
  t.is(e.code, 'ERR_TIMEOUT')
  t.true(waited >= 90, `waited ${waited} ms`)
})

test('a bare number is accepted as the timeout of get', async (t) => {
  const q = new Queue()
  const started = performance.now()
  await t.throwsAsync(q.get(50), { instanceOf: TimeoutError })
  t.true(performance.now() - started >= 45)
})

test('getSync({ timeout: 100 }) on an empty queue throws TimeoutError after waiting', (t) => {
  const q = new Queue()
  const started = performance.now()
  t.throws(() => q.getSync({ timeout: 100 }), { instanceOf: TimeoutError, code: 'ERR_TIMEOUT' })
  const waited = performance.now() - started
  t.true(waited >= 90, `waited ${waited} ms`)
})

test('a negative timeout counts as 0: returns at once with TimeoutError, or the item', async (t) => {
  const q = new Queue()
  await t.throwsAsync(q.get({ timeout: -5 }), { instanceOf: TimeoutError })
  t.throws(() => q.getSync({ timeout: -1 }), { instanceOf: TimeoutError })
  await q.put('x')
  t.is(await q.get({ timeout: -5 }), 'x')
})

test('recv({ timeout }) and recvSync on a silent pipe time out', async (t) => {
  const [a, b] = Pipe()
  const started = performance.now()
  await t.throwsAsync(a.recv({ timeout: 100 }), { instanceOf: TimeoutError })
  t.true(performance.now() - started >= 90)
  t.throws(() => a.recvSync({ timeout: 50 }), { instanceOf: TimeoutError })
  t.false(await a.poll(50))
  t.false(await a.poll())
  b.close()
  a.close()
})

// ---- AbortSignal ----

test('get({ signal }) rejects with AbortError (ABORT_ERR) when aborted while waiting', async (t) => {
  const q = new Queue()
  const ac = new AbortController()
  const pending = q.get({ signal: ac.signal, timeout: 10000 })
  setTimeout(() => ac.abort(new Error('stop')), 50)
  const e = await t.throwsAsync(within(5000, pending, 'aborted get'), { instanceOf: AbortError })
  t.is(e.code, 'ABORT_ERR')
  t.is(e.cause?.message, 'stop', 'the abort reason is the cause')
  // The queue still works and nothing was consumed by the aborted get.
  await q.put(1)
  t.is(await q.get({ timeout: 1000 }), 1)
})

test('an already-aborted signal rejects get, put and recv at once', async (t) => {
  const q = new Queue()
  await q.put('kept')
  const signal = AbortSignal.abort()
  await t.throwsAsync(q.get({ signal }), { instanceOf: AbortError, code: 'ABORT_ERR' })
  await t.throwsAsync(q.put(2, { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' })
  const [a, b] = Pipe()
  await t.throwsAsync(a.recv({ signal }), { instanceOf: AbortError })
  a.close()
  b.close()
  t.is(q.getNowait(), 'kept')
  t.true(q.empty())
})

test('AbortSignal.timeout aborts a put waiting for room', async (t) => {
  const q = new Queue({ maxsize: 1 })
  q.putNowait(0)
  await t.throwsAsync(within(5000, q.put(1, { signal: AbortSignal.timeout(50) }), 'put'), { instanceOf: AbortError })
  t.is(q.qsize(), 1)
})

// ---- close / EOF ----

test('put after close() throws ClosedError (ERR_CLOSED)', async (t) => {
  const q = new Queue()
  q.close()
  const e = await t.throwsAsync(q.put(1), { instanceOf: ClosedError })
  t.is(e.code, 'ERR_CLOSED')
  t.throws(() => q.putSync(1), { instanceOf: ClosedError })
  t.throws(() => q.putNowait(1), { instanceOf: ClosedError })
})

test('get after close() drains what is left, then throws EOFError; for await ends', async (t) => {
  const q = new Queue()
  await q.put(1)
  await q.put(2)
  await q.put(3)
  q.close()
  t.is(await q.get({ timeout: 1000 }), 1)
  t.is(q.getSync({ timeout: 1000 }), 2)
  t.is(q.getNowait(), 3)
  const e = await t.throwsAsync(q.get({ timeout: 1000 }), { instanceOf: EOFError })
  t.is(e.code, 'ERR_EOF')
  t.throws(() => q.getSync({ timeout: 1000 }), { instanceOf: EOFError })
  t.throws(() => q.getNowait(), { instanceOf: EOFError })

  const q2 = new Queue()
  for (const v of ['a', 'b']) await q2.put(v)
  q2.close()
  const got = []
  await within(
    5000,
    (async () => {
      for await (const v of q2) got.push(v)
    })(),
    'for await over a closed queue',
  )
  t.deepEqual(got, ['a', 'b'])
})

test('close() wakes a get that is waiting on an empty queue with EOFError', async (t) => {
  const q = new Queue()
  const pending = q.get({ timeout: 10000 })
  setTimeout(() => q.close(), 50)
  await t.throwsAsync(within(5000, pending, 'get'), { instanceOf: EOFError })
})

test('close() is global: a child closes the queue, the parent can no longer put', async (t) => {
  const q = new Queue()
  await q.put('left over')
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'closeQueue'), args: [q] }))
  await p.start()
  t.is(await joined(p), 0)
  await t.throwsAsync(q.put(1), { instanceOf: ClosedError })
  t.throws(() => q.putNowait(1), { instanceOf: ClosedError })
  t.is(await q.get({ timeout: 1000 }), 'left over')
  await t.throwsAsync(q.get({ timeout: 1000 }), { instanceOf: EOFError })
})

test('a child puts then closes; the parent iterates to the end', async (t) => {
  const q = new Queue()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'putThenClose'), args: [q, [1, 2, 3, 4]] }))
  await p.start()
  const got = []
  await within(
    10000,
    (async () => {
      for await (const v of q) got.push(v)
    })(),
    'for await',
  )
  t.deepEqual(got, [1, 2, 3, 4])
  t.is(await joined(p), 0)
})

// ---- Connection EOF ----

test('recv on a Connection whose peer process exited gives the data, then EOFError', async (t) => {
  const [mine, theirs] = Pipe()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sendThenExit'), args: [theirs, ['one', { two: 2 }]] }))
  await p.start()
  theirs.close()
  t.is(await joined(p), 0)
  t.is(await mine.recv({ timeout: 5000 }), 'one')
  t.deepEqual(await mine.recv({ timeout: 5000 }), { two: 2 })
  const e = await t.throwsAsync(mine.recv({ timeout: 5000 }), { instanceOf: EOFError })
  t.is(e.code, 'ERR_EOF')
  t.throws(() => mine.recvSync({ timeout: 5000 }), { instanceOf: EOFError })
  t.true(await mine.poll(0), 'a hung-up peer counts as readable')
  mine.close()
})

test('for await over a Connection ends when the peer process exits', async (t) => {
  const [mine, theirs] = Pipe({ duplex: false })
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sendThenExit'), args: [theirs, [1, 2, 3]] }))
  await p.start()
  theirs.close()
  const got = []
  await within(
    10000,
    (async () => {
      for await (const v of mine) got.push(v)
    })(),
    'for await over the pipe',
  )
  t.deepEqual(got, [1, 2, 3])
  t.is(await joined(p), 0)
  mine.close()
})

test('a recv waiting on a pipe wakes with EOFError when the peer process is killed', async (t) => {
  const [mine, theirs] = Pipe()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sendThenSleep'), args: [theirs, 'hello'] }))
  await p.start()
  theirs.close()
  t.is(await mine.recv({ timeout: 10000 }), 'hello')
  const pending = mine.recv({ timeout: 20000 })
  setTimeout(() => p.kill(), 100)
  await t.throwsAsync(within(10000, pending, 'recv'), { instanceOf: EOFError })
  t.is(await joined(p), -9)
  mine.close()
})

test('recvSync waiting on a pipe throws EOFError when the peer process is killed', async (t) => {
  const [mine, theirs] = Pipe()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sendThenSleep'), args: [theirs, 'hi'] }))
  await p.start()
  theirs.close()
  t.is(mine.recvSync({ timeout: 10000 }), 'hi')
  // Killed with a signal from outside this blocked thread: a timer cannot run while we block.
  const { spawn } = await import('node:child_process')
  spawn('sh', ['-c', `sleep 0.1; kill -9 ${p.pid}`], { stdio: 'ignore' })
  t.throws(() => mine.recvSync({ timeout: 10000 }), { instanceOf: EOFError })
  t.is(await joined(p), -9)
  mine.close()
})

test('EOF only once every copy of the peer end is closed', async (t) => {
  const [a, b] = Pipe()
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'sleepForever'), args: [b] }))
  await p.start()
  // The parent's copy of b is still open, and the child holds another.
  b.close()
  await t.throwsAsync(a.recv({ timeout: 150 }), { instanceOf: TimeoutError }, 'the child still holds b')
  p.terminate()
  t.is(await joined(p), -15)
  await t.throwsAsync(a.recv({ timeout: 5000 }), { instanceOf: EOFError })
  a.close()
})

test('a closed Connection rejects send and recv with ClosedError; the sync twins throw it', async (t) => {
  const [a, b] = Pipe()
  a.close()
  await t.throwsAsync(a.send(1), { instanceOf: ClosedError, code: 'ERR_CLOSED' })
  await t.throwsAsync(a.recv(), { instanceOf: ClosedError })
  await t.throwsAsync(a.poll(), { instanceOf: ClosedError })
  t.throws(() => a.recvSync(), { instanceOf: ClosedError })
  t.throws(() => a.sendSync(1), { instanceOf: ClosedError })
  t.true(a.closed)
  await t.throwsAsync(b.recv({ timeout: 1000 }), { instanceOf: EOFError })
  b.close()
})

// ---- JoinableQueue ----

test('JoinableQueue: join() in the parent resolves once a child has marked every item done', async (t) => {
  const jq = new JoinableQueue()
  const done = new Queue()
  const N = 20
  for (let i = 0; i < N; i++) await jq.put(i)
  await t.throwsAsync(jq.join({ timeout: 50 }), { instanceOf: TimeoutError }, 'nothing done yet')
  const p = guard(t, new Process({ target: fixture('misc.mjs', 'drainJoinable'), args: [jq, done, N, 5] }))
  await p.start()
  await within(20000, jq.join({ timeout: 20000 }), 'join')
  // Each item is recorded on `done` before it is marked done, so all are there now.
  t.is(done.qsize(), N)
  const got = []
  for (let i = 0; i < N; i++) got.push(done.getNowait())
  t.deepEqual(
    got,
    Array.from({ length: N }, (_, i) => i),
  )
  t.is(await joined(p), 0)
  t.throws(() => jq.taskDone(), { instanceOf: InvalidStateError }, 'everything is done already')
})

test('JoinableQueue: a child joins (async and sync) while the parent marks items done', async (t) => {
  for (const target of ['putAndJoin', 'putAndJoinSync']) {
    const jq = new JoinableQueue()
    const report = new Queue()
    const p = guard(t, new Process({ target: fixture('misc.mjs', target), args: [jq, 5, report] }))
    await p.start()
    for (let i = 0; i < 5; i++) {
      t.is(await jq.get({ timeout: 10000 }), i)
      await t.throwsAsync(report.get({ timeout: 20 }), { instanceOf: TimeoutError }, `${target}: not joined with items undone`)
      jq.taskDone()
    }
    t.is(await report.get({ timeout: 10000 }), 'joined', target)
    t.is(await joined(p), 0)
  }
})

test('JoinableQueue: taskDone() more often than items throws InvalidStateError', async (t) => {
  const jq = new JoinableQueue()
  const e0 = t.throws(() => jq.taskDone(), { instanceOf: InvalidStateError })
  t.is(e0.code, 'ERR_INVALID_STATE')
  await jq.put('a')
  jq.putSync('b')
  jq.putNowait('c')
  for (let i = 0; i < 3; i++) jq.getNowait()
  await t.throwsAsync(jq.join({ timeout: 20 }), { instanceOf: TimeoutError })
  t.throws(() => jq.joinSync(20), { instanceOf: TimeoutError })
  jq.taskDone()
  jq.taskDone()
  jq.taskDone()
  await within(1000, jq.join({ timeout: 1000 }), 'join')
  jq.joinSync(1000)
  t.throws(() => jq.taskDone(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE' })
})

// ---- invalid arguments ----

test('invalid timeouts: NaN gives RangeError, a non-number gives TypeError', async (t) => {
  const q = new Queue()
  const [a, b] = Pipe()
  for (const [what, call] of [
    ['get', (o) => q.get(o)],
    ['put', (o) => q.put(1, o)],
    ['recv', (o) => a.recv(o)],
  ]) {
    // A promise-returning method rejects (never throws synchronously) on bad arguments.
    const run = (o) => {
      let promise
      t.notThrows(() => {
        promise = call(o)
      }, `${what} does not throw synchronously`)
      return promise
    }
    const r = await t.throwsAsync(run({ timeout: Number.NaN }), { instanceOf: RangeError }, `${what}: NaN`)
    t.is(r.code, 'ERR_OUT_OF_RANGE')
    const ty = await t.throwsAsync(run({ timeout: 'x' }), { instanceOf: TypeError }, `${what}: 'x'`)
    t.is(ty.code, 'ERR_INVALID_ARG_TYPE')
    await t.throwsAsync(run({ timeout: 10n }), { instanceOf: TypeError }, `${what}: a bigint`)
    await t.throwsAsync(run({ signal: 'nope' }), { instanceOf: TypeError }, `${what}: signal`)
    await t.throwsAsync(run('soon'), { instanceOf: TypeError }, `${what}: a string instead of options`)
  }
  t.throws(() => q.getSync({ timeout: Number.NaN }), { instanceOf: RangeError })
  t.throws(() => q.getSync({ timeout: 'x' }), { instanceOf: TypeError })
  t.throws(() => q.putSync(1, { timeout: Number.NaN }), { instanceOf: RangeError })
  t.throws(() => a.recvSync({ timeout: Number.NaN }), { instanceOf: RangeError })
  await t.throwsAsync(async () => a.poll(Number.NaN), { instanceOf: RangeError })
  t.is(q.qsize(), 0, 'nothing was put by the invalid calls')
  a.close()
  b.close()
})

test('invalid queue options give RangeError / TypeError with a code', (t) => {
  for (const maxsize of [-1.5, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    const e = t.throws(() => new Queue({ maxsize }), { instanceOf: RangeError }, `maxsize ${maxsize}`)
    t.is(e.code, 'ERR_OUT_OF_RANGE')
  }
  for (const maxsize of ['1', 1n, null, {}]) {
    const e = t.throws(() => new Queue({ maxsize }), { instanceOf: TypeError }, `maxsize ${String(maxsize)}`)
    t.is(e.code, 'ERR_INVALID_ARG_TYPE')
  }
  for (const capacityBytes of [0, -1, 0.5, 2 ** 31]) {
    t.throws(() => new Queue({ capacityBytes }), { instanceOf: RangeError }, `capacityBytes ${capacityBytes}`)
  }
  t.throws(() => new Queue({ capacityBytes: '1' }), { instanceOf: TypeError })
  t.throws(() => new Queue('x'), { instanceOf: TypeError })
  t.throws(() => new Queue(null), { instanceOf: TypeError })
  // Python: maxsize ≤ 0 means unbounded.
  t.is(new Queue({ maxsize: -1 }).maxsize, 0)
  t.is(new Queue({ maxsize: 0 }).maxsize, 0)
  t.is(new JoinableQueue({ maxsize: 3 }).maxsize, 3)
})

test('invalid Process options give TypeError', (t) => {
  t.throws(() => new Process(), { instanceOf: TypeError })
  t.throws(() => new Process({ target: 42 }), { instanceOf: TypeError })
  t.throws(() => new Process({ target: fixture('misc.mjs', 'exitWith'), args: 'not an array' }), { instanceOf: TypeError })
})

test('sendBytes takes an offset and a size; out-of-range ones give RangeError', async (t) => {
  const [a, b] = Pipe()
  await a.sendBytes(Buffer.from('abcdefgh'), 2, 3)
  t.is((await b.recvBytes({ timeout: 1000 })).toString(), 'cde')
  a.sendBytesSync(new Uint8Array([1, 2, 3, 4]).buffer, 1)
  t.deepEqual([...b.recvBytesSync({ timeout: 1000 })], [2, 3, 4])
  for (const [offset, size] of [
    [1, 5],
    [-1, 1],
    [3, undefined],
  ]) {
    await t.throwsAsync(
      a.sendBytes(Buffer.from('ab'), offset, size),
      { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' },
      `${offset}, ${size}`,
    )
  }
  await t.throwsAsync(a.sendBytes('not bytes'), { instanceOf: TypeError })
  await a.send({ not: 'bytes' })
  await t.throwsAsync(b.recvBytes({ timeout: 1000 }), { instanceOf: TypeError }, 'recvBytes of a message that is not bytes')
  a.close()
  b.close()
})

test('a one-way pipe refuses the wrong direction', async (t) => {
  const [reader, writer] = Pipe({ duplex: false })
  t.true(reader.readable)
  t.false(reader.writable)
  t.true(writer.writable)
  t.false(writer.readable)
  await t.throwsAsync(reader.send(1), { message: /read-only/ })
  await t.throwsAsync(writer.recv(), { message: /write-only/ })
  await writer.send('one way')
  t.is(await reader.recv({ timeout: 1000 }), 'one way')
  reader.close()
  writer.close()
})
