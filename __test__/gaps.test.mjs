// The small gaps to Python: Connection's asyncDispose and double close, currentProcess() as a
// full process object, Process.close() semantics, and a parent's unused copy of a pipe end.
import avaTest from 'ava'

import { ClosedError, currentProcess, EOFError, InvalidStateError, Pipe, Process } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const peer = (name) => fixture('gaps.mjs', name)

test('Connection: asyncDispose closes it, close() twice does nothing, the peer sees EOF', async (t) => {
  const [a, b] = Pipe()
  await a.send(1)
  await a[Symbol.asyncDispose]()
  t.true(a.closed)
  a.close()
  a.close()
  t.is(await b.recv(), 1)
  await t.throwsAsync(within(5000, b.recv()), { instanceOf: EOFError })
  await t.throwsAsync(a.send(2), { instanceOf: ClosedError })
  b[Symbol.dispose]()
  t.true(b.closed)
})

test('currentProcess() is a full process object, here and in a child', async (t) => {
  const c = currentProcess()
  t.is(c.name, 'MainProcess')
  t.is(c.pid, process.pid)
  t.false(c.daemon)
  t.is(c.exitCode, null)
  t.true(c.isAlive())
  t.deepEqual([...c.identity], [])
  t.deepEqual({ ...currentProcess() }, { name: 'MainProcess', pid: process.pid, daemon: false }, 'a copy keeps its data')
  t.regex(String(c), /MainProcess/)
  const [a, b] = Pipe()
  const p = guard(t, new Process({ target: peer('reportCurrent'), args: [b], daemon: true, name: 'Reporter' }))
  await p.start()
  b.close()
  const got = await within(20000, a.recv())
  t.is(got.name, 'Reporter')
  t.is(got.pid, p.pid)
  t.true(got.daemon)
  t.is(got.exitCode, null)
  t.true(got.alive)
  t.is(got.identity.length, 1)
  t.is(await joined(p), 0)
  a.close()
})

test('Process.close(): throws while the child runs; afterwards every method but close() throws ClosedError, properties still read', async (t) => {
  const p = new Process({ target: peer('nap'), args: [300] })
  // Not guard(): isAlive() itself throws once the process is closed.
  t.teardown(() => {
    try {
      if (p.isAlive()) p.kill()
    } catch {}
  })
  await p.start()
  t.throws(() => p.close(), { instanceOf: InvalidStateError })
  t.is(await joined(p), 0)
  p.close()
  p.close()
  t.throws(() => p.isAlive(), { instanceOf: ClosedError, code: 'ERR_CLOSED' })
  t.is(p.exitCode, 0, 'properties still read')
  t.true(p.pid > 0)
  t.throws(() => p.terminate(), { instanceOf: ClosedError })
  t.throws(() => p.kill(), { instanceOf: ClosedError })
  t.throws(() => p.joinSync(), { instanceOf: ClosedError })
  await t.throwsAsync(p.join(), { instanceOf: ClosedError })
  await t.throwsAsync(p.start(), { instanceOf: ClosedError })
  t.regex(String(p), /closed/)
  t.is(typeof p.name, 'string')
  const never = new Process({ target: peer('nap'), args: [1] })
  never.close()
  await t.throwsAsync(never.start(), { instanceOf: ClosedError })
})

test("a parent's unused copy of an end it passed to a child does not keep recv waiting once the child is dead", async (t) => {
  const [reader, writer] = Pipe({ duplex: false })
  const p = guard(t, new Process({ target: peer('sendAndExit'), args: [writer, 3] }))
  await p.start()
  // The parent keeps `writer` open and never uses it (Python would wait here for ever).
  const got = []
  await t.throwsAsync(
    within(
      20000,
      (async () => {
        for (;;) got.push(await reader.recv())
      })(),
    ),
    { instanceOf: EOFError },
  )
  t.deepEqual(got, [0, 1, 2], 'everything sent arrives before the end')
  t.is(await joined(p), 0)
  t.false(writer.closed)
  t.true(await reader.poll(), 'a poll sees the end')
  reader.close()
  writer.close()
})

test('the same for a duplex pipe and for iteration; an end the parent uses itself keeps the pipe open', async (t) => {
  const [a, b] = Pipe()
  const p = guard(t, new Process({ target: peer('sendAndExit'), args: [b, 2] }))
  await p.start()
  const seen = []
  for await (const v of a) seen.push(v)
  t.deepEqual(seen, [0, 1])
  await joined(p)
  a.close()
  b.close()

  const [c, d] = Pipe()
  const q = guard(t, new Process({ target: peer('sendAndExit'), args: [d, 1] }))
  await q.start()
  t.is(await within(20000, c.recv()), 0)
  await joined(q)
  await d.send('from the parent itself')
  t.is(await c.recv(), 'from the parent itself')
  t.false(await c.poll(200), 'the parent uses its copy: the pipe stays open, as in Python')
  c.close()
  d.close()
})
