// Handles inside messages (CPython's _TestPicklingConnections, as this package decides it): a
// manager proxy put into a Queue or sent through a Pipe or a socket Connection arrives live in
// the receiving process; a handle that needs descriptors (Queue, Connection, lock, Value,
// SharedMemory) cannot ride in a message and the put fails at once with ERR_HANDLE_IN_MESSAGE,
// while the same object passed as a Process argument works there.
import avaTest from 'ava'

import { Barrier, Event, Listener, Lock, Manager, Pipe, Process, Queue, SharedMemory, Value } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const peer = (name) => fixture('message-handles.mjs', name)

test('a manager proxy travels live through a Queue, a Pipe and a socket Connection to other processes', async (t) => {
  const m = await Manager.start()
  t.teardown(() => m.shutdown())
  const l = await m.list()
  const q = new Queue()
  const [a, b] = Pipe()
  const l1 = await new Listener({ authkey: 'k' }).listening()
  t.teardown(() => l1.close())
  const ps = [
    guard(t, new Process({ target: peer('proxyFromQueue'), args: [q] })),
    guard(t, new Process({ target: peer('proxyFromPipe'), args: [b] })),
    guard(t, new Process({ target: peer('proxyFromSocket'), args: [l1.address, 'k'] })),
  ]
  for (const p of ps) await p.start()
  await q.put(l)
  await a.send(l)
  const s = await within(20000, l1.accept())
  await s.send(l)
  for (const p of ps) t.is(await joined(p, 30000), 0)
  t.deepEqual((await l.copy()).sort(), ['via pipe', 'via queue', 'via socket'])
  s.close()
  q.close()
  a.close()
  b.close()
})

test('a proxy inside a nested value in a message arrives as a proxy, once per object', async (t) => {
  const m = await Manager.start()
  t.teardown(() => m.shutdown())
  const d = await m.dict()
  await d.set('x', 1)
  const q = new Queue()
  await q.put({ d, more: [d, new Map([['d', d]])] })
  const got = await q.get()
  t.is(got.d, got.more[0])
  t.is(got.more[1].get('d'), got.d)
  t.is(await got.d.get('x'), 1)
  q.close()
})

test('a handle that needs descriptors fails at once inside a message, whatever the channel', async (t) => {
  const q = new Queue()
  const [a, b] = Pipe()
  const l = await new Listener().listening()
  t.teardown(() => l.close())
  const shm = new SharedMemory({ size: 4096 })
  t.teardown(() => {
    shm.close()
    shm.unlink()
  })
  const objects = [new Queue(), a, new Lock(), new Event(), new Barrier(2), Value('i32', 1), shm]
  const s = l.accept()
  const { Client } = await import('../dist/index.js')
  const c = await Client({ address: l.address })
  const server = await s
  for (const obj of objects) {
    const expected = { instanceOf: TypeError, code: 'ERR_HANDLE_IN_MESSAGE', message: /argument of the Process/ }
    await t.throwsAsync(q.put(obj), expected)
    t.throws(() => q.putSync({ nested: [obj] }), expected)
    t.throws(() => q.putNowait(new Map([['k', obj]])), expected)
    await t.throwsAsync(b.send(obj), expected)
    await t.throwsAsync(c.send([obj]), expected)
  }
  t.is(q.qsize(), 0, 'nothing was put')
  t.false(await a.poll(50), 'nothing was sent')
  t.false(await server.poll(50))
  c.close()
  server.close()
  objects[0].close()
  q.close()
  a.close()
  b.close()
})

test('the same Connection passed as a Process argument works in the child', async (t) => {
  const [a, b] = Pipe()
  const p = guard(t, new Process({ target: peer('doubler'), args: [b] }))
  await p.start()
  b.close()
  for (let i = 0; i < 5; i++) {
    await a.send(i)
    t.is(await within(10000, a.recv()), i * 2)
  }
  a.close()
  t.is(await joined(p), 0)
})
