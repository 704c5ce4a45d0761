// Managers: ports of CPython's _TestContainers, _TestNamespace, _TestRemoteManager,
// _TestManagerRestart and _TestMyManager, proxies in other processes and pool tasks, a manager
// that dies, and the 4 × 10,000 increments under a manager Lock.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  AuthenticationError,
  BrokenBarrierError,
  DictProxy,
  Empty,
  Full,
  InvalidStateError,
  ListProxy,
  Manager,
  ManagerError,
  OSError,
  Pool,
  Process,
  TimeoutError,
} from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const peer = (name) => fixture('manager-peers.mjs', name)
const PEERS = new URL('./fixtures/manager-peers.mjs', import.meta.url)

/** A started manager, shut down when the test ends. */
async function started(t, opts) {
  const m = await within(30000, Manager.start(opts), 'Manager.start')
  t.teardown(() => m.shutdown())
  return m
}

test('dict: set, get, has, delete, keys, values, entries, size, update, pop, setDefault, copy, clear, iteration', async (t) => {
  const m = await started(t)
  const d = await m.dict({ init: { a: 1 } })
  t.true(d instanceof DictProxy)
  t.is(await d.get('a'), 1)
  t.is(await d.get('missing'), undefined)
  t.is(await d.get('missing', 'dflt'), 'dflt')
  await d.set('b', [2, { deep: new Map([[1, 'x']]) }])
  await d.set(3, 3n)
  t.deepEqual(await d.get('b'), [2, { deep: new Map([[1, 'x']]) }])
  t.true(await d.has(3))
  t.deepEqual(await d.keys(), ['a', 'b', 3])
  t.deepEqual(await d.values(), [1, [2, { deep: new Map([[1, 'x']]) }], 3n])
  t.is(await d.size(), 3)
  t.true(await d.delete('a'))
  t.false(await d.delete('a'))
  await d.update({ x: 10, y: 20 })
  await d.update(new Map([['z', 30]]))
  await d.update([['w', 40]])
  t.is(await d.pop('x'), 10)
  t.is(await d.pop('x', 'gone'), 'gone')
  t.is(await d.setDefault('y', 99), 20)
  t.is(await d.setDefault('n', 99), 99)
  const copy = await d.copy()
  t.true(copy instanceof Map)
  t.deepEqual([...copy.keys()], ['b', 3, 'y', 'z', 'w', 'n'])
  const seen = []
  for await (const [k] of d) seen.push(k)
  t.deepEqual(seen, ['b', 3, 'y', 'z', 'w', 'n'])
  await d.clear()
  t.is(await d.size(), 0)
  await t.throwsAsync(m.dict({ init: 5 }), { instanceOf: TypeError })
})

// _TestContainers.test_list and friends.
test('list: push, extend, at, set, slice, splice, pop, insert, indexOf, count, remove, reverse, sort, iteration', async (t) => {
  const m = await started(t)
  const l = await m.list({ init: [5, 3] })
  t.true(l instanceof ListProxy)
  t.is(await l.push(7, 1), 4)
  t.is(await l.extend([9]), 5)
  t.is(await l.length(), 5)
  t.is(await l.at(0), 5)
  t.is(await l.at(-1), 9)
  await t.throwsAsync(l.at(5), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  await l.set(1, 4)
  t.deepEqual(await l.slice(1, 3), [4, 7])
  t.deepEqual(await l.splice(1, 2, 'a', 'b', 'c'), [4, 7])
  t.deepEqual(await l.copy(), [5, 'a', 'b', 'c', 1, 9])
  t.is(await l.pop(), 9)
  t.is(await l.pop(0), 5)
  await l.insert(0, 'first')
  t.is(await l.indexOf('b'), 2)
  t.is(await l.indexOf('nope'), -1)
  t.true(await l.includes('c'))
  await l.push({ k: [1] })
  t.is(await l.indexOf({ k: [1] }), 5, 'items compare deeply')
  t.is(await l.count('a'), 1)
  await l.remove('a')
  await t.throwsAsync(l.remove('a'), { instanceOf: RangeError })
  await l.reverse()
  t.deepEqual(await l.copy(), [{ k: [1] }, 1, 'c', 'b', 'first'])
  const nums = await m.list({ init: [10, 2, 33, 4] })
  await nums.sort()
  t.deepEqual(await nums.copy(), [2, 4, 10, 33], 'numbers sort numerically')
  await nums.sort({ reverse: true })
  t.deepEqual(await nums.copy(), [33, 10, 4, 2])
  const seen = []
  for await (const v of nums) seen.push(v)
  t.deepEqual(seen, [33, 10, 4, 2])
  await nums.clear()
  t.is(await nums.length(), 0)
  await t.throwsAsync(nums.pop(), { instanceOf: RangeError })
})

// _TestContainers.test_dict_proxy_nested, test_list_proxy_in_list, test_nested_queue.
test('nested proxies: a list in a dict, a dict in a list, a list in a list', async (t) => {
  const m = await started(t)
  const d = await m.dict()
  const inner = await m.list({ init: [1] })
  await d.set('inner', inner)
  const got = await d.get('inner')
  t.true(got instanceof ListProxy)
  t.is(got.id, inner.id)
  await got.push(2)
  t.deepEqual(await inner.copy(), [1, 2])
  const outer = await m.list()
  await outer.push(d, [inner, { also: inner }])
  const [dp, arr] = await outer.copy()
  t.true(dp instanceof DictProxy)
  t.is(await (await dp.get('inner')).length(), 2)
  t.true(arr[0] instanceof ListProxy)
  t.true(arr[1].also instanceof ListProxy)
  await arr[1].also.push(3)
  t.deepEqual(await inner.copy(), [1, 2, 3])
  const q = await m.Queue()
  await d.set('q', q)
  await (await d.get('q')).put('through the nested queue')
  t.is(await q.get(), 'through the nested queue')
})

// _TestContainers.test_list_proxy_in_list and test_dict_proxy_nested: proxies in the initial contents.
test('proxies in the initial contents of a list and a dict stay proxies', async (t) => {
  const m = await started(t)
  const rows = await Promise.all([0, 1, 2].map((i) => m.list({ init: [i, i + 1, i + 2] })))
  const a = await m.list({ init: rows })
  const first = await a.at(0)
  await first.set(-1, 55)
  t.deepEqual(await rows[0].copy(), [0, 1, 55])
  t.is(await (await a.at(2)).at(0), 2)
  const pets = await m.dict({ init: { ferrets: 2, hamsters: 4 } })
  const supplies = await m.dict({ init: { water: 10, feed: 3 } })
  const d = await m.dict({ init: { pets, supplies } })
  t.is(await (await d.get('pets')).get('ferrets'), 2)
  await (await d.get('supplies')).set('water', 7)
  t.is(await supplies.get('water'), 7)
  t.deepEqual((await d.keys()).sort(), ['pets', 'supplies'])
})

// _TestNamespace.test_namespace
test('namespace: attributes set, read, deleted; names starting with _ hidden from toObject()', async (t) => {
  const m = await started(t)
  const n = await m.Namespace()
  await n.set('name', 'Bob')
  await n.set('job', 'Builder')
  await n.set('_hidden', 'hidden')
  t.deepEqual(await n.toObject(), { name: 'Bob', job: 'Builder' })
  t.deepEqual(await n.toObject(true), { name: 'Bob', job: 'Builder', _hidden: 'hidden' })
  t.true(await n.delete('job'))
  t.false(await n.has('job'))
  t.is(await n.get('job'), undefined)
  t.deepEqual(await n.keys(), ['name', '_hidden'])
  const init = await m.namespace({ init: { x: 1 } })
  t.is(await init.get('x'), 1)
  await t.throwsAsync(n.set(5, 1), { instanceOf: TypeError })
})

test('Queue and JoinableQueue proxies: FIFO, Empty, Full, timeouts, taskDone/join', async (t) => {
  const m = await started(t)
  const q = await m.Queue({ maxsize: 2 })
  await q.put(1)
  await q.putNowait(2)
  t.true(await q.full())
  await t.throwsAsync(q.putNowait(3), { instanceOf: Full })
  await t.throwsAsync(q.put(3, { timeout: 50 }), { instanceOf: TimeoutError })
  await t.throwsAsync(q.put(3, { block: false }), { instanceOf: Full })
  t.is(await q.qsize(), 2)
  t.is(await q.get(), 1)
  t.is(await q.getNowait(), 2)
  t.true(await q.empty())
  await t.throwsAsync(q.getNowait(), { instanceOf: Empty })
  await t.throwsAsync(q.get({ timeout: 50 }), { instanceOf: TimeoutError })
  const waiting = q.get({ timeout: 20000 })
  await q.put('late')
  t.is(await waiting, 'late')
  const ac = new AbortController()
  const aborted = q.get({ signal: ac.signal })
  ac.abort()
  await t.throwsAsync(aborted, { name: 'AbortError' })
  await q.put('after abort')
  t.is(await q.get({ timeout: 5000 }), 'after abort', 'an aborted get takes nothing')
  const jq = await m.JoinableQueue()
  await jq.put('a')
  await jq.put('b')
  await t.throwsAsync(jq.join(50), { instanceOf: TimeoutError })
  await jq.get()
  await jq.taskDone()
  await jq.get()
  const joining = jq.join(20000)
  await jq.taskDone()
  await within(20000, joining)
  await t.throwsAsync(jq.taskDone(), { instanceOf: InvalidStateError })
})

test('Lock, RLock, Semaphore, BoundedSemaphore, Event, Value, Array proxies', async (t) => {
  const m = await started(t)
  const lock = await m.Lock()
  t.true(await lock.acquire())
  t.true(await lock.locked())
  t.false(await lock.acquire({ timeout: 30 }), 'a Lock is not re-entrant')
  t.false(await lock.acquire({ block: false }))
  await lock.release()
  await t.throwsAsync(lock.release(), { instanceOf: InvalidStateError })
  t.is(await lock.withLock(async () => 'inside'), 'inside')
  await t.throwsAsync(
    lock.withLock(() => {
      throw new Error('thrown inside')
    }),
    { message: 'thrown inside' },
  )
  t.false(await lock.locked(), 'withLock released on throw')
  const rlock = await m.RLock()
  t.true(await rlock.acquire())
  t.true(await rlock.acquire())
  await rlock.release()
  await rlock.release()
  await t.throwsAsync(rlock.release(), { instanceOf: InvalidStateError })
  const sem = await m.Semaphore(2)
  t.true(await sem.acquire())
  t.true(await sem.acquire())
  t.false(await sem.acquire({ timeout: 30 }))
  t.is(await sem.getValue(), 0)
  await sem.release(2)
  t.is(await sem.getValue(), 2)
  const bsem = await m.BoundedSemaphore(1)
  await t.throwsAsync(bsem.release(), { instanceOf: InvalidStateError })
  const ev = await m.Event()
  t.false(await ev.isSet())
  t.false(await ev.wait(30))
  const waiting = ev.wait({ timeout: 20000 })
  await ev.set()
  t.true(await waiting)
  await ev.clear()
  t.false(await ev.isSet())
  const v = await m.Value('i64', 5n)
  t.is(await v.get(), 5n)
  await v.set(7)
  t.is(await v.get(), 7n, 'an integer number becomes a bigint for i64')
  await t.throwsAsync(v.set('x'), { instanceOf: TypeError })
  const a = await m.Array('f64', [1, 2.5])
  t.is(await a.at(1), 2.5)
  await a.set(0, 9)
  t.deepEqual(await a.toArray(), [9, 2.5])
  t.is(await a.length(), 2)
  const zeros = await m.Array('i32', 3)
  t.deepEqual(await zeros.toArray(), [0, 0, 0])
})

test('Condition and Barrier proxies across processes', async (t) => {
  const m = await started(t)
  const cond = await m.Condition()
  const ns = await m.namespace()
  const p = guard(t, new Process({ target: peer('waitReady'), args: [cond, ns] }))
  await p.start()
  await new Promise((r) => setTimeout(r, 300))
  await cond.acquire()
  await ns.set('ready', true)
  await cond.notifyAll()
  await cond.release()
  t.is(await joined(p, 30000), 0)
  t.true(await ns.get('seen'))
  await t.throwsAsync(cond.notify(), { instanceOf: InvalidStateError }, 'notify without the lock')
  t.false(await cond.withLock(() => cond.wait(30)), 'a wait that times out is false')

  const lock = await m.Lock()
  const c2 = await m.Condition(lock)
  await c2.acquire()
  t.true(await lock.locked(), 'the Condition wraps the given lock')
  await c2.release()

  const barrier = await m.Barrier(3)
  t.is(await barrier.parties(), 3)
  const l = await m.list()
  const ps = [0, 1].map(() => guard(t, new Process({ target: peer('crossBarrier'), args: [barrier, l] })))
  for (const q of ps) await q.start()
  const mine = await within(30000, barrier.wait({ timeout: 30000 }))
  for (const q of ps) t.is(await joined(q, 30000), 0)
  t.deepEqual([mine, ...(await l.copy())].sort(), [0, 1, 2])
  await t.throwsAsync(barrier.wait({ timeout: 50 }), { instanceOf: BrokenBarrierError })
  t.true(await barrier.broken())
  await barrier.reset()
  t.false(await barrier.broken())
})

test('4 processes × 10,000 increments of a manager dict entry under a manager Lock → exactly 40,000', async (t) => {
  t.timeout(600000)
  const m = await started(t)
  const d = await m.dict()
  await d.set('count', 0)
  const lock = await m.Lock()
  const ps = [1, 2, 3, 4].map(() => guard(t, new Process({ target: peer('increment'), args: [d, lock, 10000] })))
  for (const p of ps) await p.start()
  for (const p of ps) t.is(await joined(p, 540000), 0)
  t.is(await d.get('count'), 40000)
})

test('proxies travel as arguments of Processes and pool tasks and work there', async (t) => {
  const m = await started(t)
  const d = await m.dict()
  const l = await m.list()
  const ns = await m.namespace()
  const q = await m.Queue()
  await d.set('nested', await m.list())
  const p = guard(t, new Process({ target: peer('useProxies'), args: [d, l, ns, q] }))
  await p.start()
  t.is(await within(30000, q.get({ timeout: 30000 })), 'done')
  t.is(await joined(p), 0)
  t.is(await d.get('from'), 'child')
  t.deepEqual(await l.copy(), [p.pid])
  t.deepEqual(await (await d.get('nested')).copy(), ['pushed by the child'])
  t.true(await ns.get('child'))

  const pool = new Pool({ processes: 2 })
  t.teardown(() => pool.terminate())
  const keys = await within(
    60000,
    pool.starmap(peer('poolMark'), [
      [d, 'a'],
      [d, 'b'],
      [d, 'c'],
    ]),
  )
  t.deepEqual(keys, ['a', 'b', 'c'])
  const pids = new Set(await Promise.all(['a', 'b', 'c'].map((k) => d.get(k))))
  for (const pid of pids) t.true(pool.workers.some((w) => w.pid === pid))
  pool.close()
  await pool.join()
})

test('a manager that dies: pending calls reject with ManagerError, later ones too; never a hang', async (t) => {
  const m = await Manager.start()
  const q = await m.Queue()
  const d = await m.dict()
  const pending = [q.get(), q.get({ timeout: 60000 })]
  await new Promise((r) => setTimeout(r, 100))
  m.process.kill()
  for (const p of pending) await t.throwsAsync(within(20000, p), { instanceOf: ManagerError, code: 'ERR_MANAGER_GONE' })
  await t.throwsAsync(within(20000, d.get('x')), { instanceOf: ManagerError })
  await within(20000, m.shutdown())
  t.is(m.process.exitCode, -9)
})

test('a lock held by a process that dies is released', async (t) => {
  const m = await started(t)
  const lock = await m.Lock()
  const ev = await m.Event()
  const p = guard(t, new Process({ target: peer('holdLock'), args: [lock, ev] }))
  await p.start()
  t.true(await within(30000, ev.wait(30000)))
  t.false(await lock.acquire({ timeout: 50 }))
  p.kill()
  await joined(p)
  t.true(await within(20000, lock.acquire({ timeout: 20000 })))
  await lock.release()
})

test('a lock held through a socket connection by a process that dies is released too', async (t) => {
  const m = await started(t, { address: '127.0.0.1:0', authkey: 'k' })
  const lock = await m.Lock({ name: 'lock' })
  const held = await m.Event({ name: 'held' })
  const p = guard(t, new Process({ target: peer('holdNamedLock'), args: [m.address, 'k'] }))
  await p.start()
  t.true(await within(30000, held.wait(30000)))
  t.false(await lock.acquire({ timeout: 50 }))
  p.kill()
  await joined(p)
  t.true(await within(20000, lock.acquire({ timeout: 20000 })))
  await lock.release()
})

test('shutdown: the process exits 0; asyncDispose shuts down; twice is fine; calls after it fail', async (t) => {
  const m = await Manager.start()
  const d = await m.dict()
  t.regex(m.process.name, /^Manager-\d+$/)
  t.true(m.process.daemon)
  await m[Symbol.asyncDispose]()
  t.is(m.process.exitCode, 0)
  await m.shutdown()
  await t.throwsAsync(d.get('x'), { instanceOf: ManagerError })
  await t.throwsAsync(m.dict(), { name: 'ClosedError' })
})

test('objects no proxy can reach are freed; named ones and ones passed on stay (node --expose-gc)', async (t) => {
  const out = await new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ['--expose-gc', fileURLToPath(new URL('./fixtures/manager-gc.mjs', import.meta.url))],
      { timeout: 60000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
    ),
  )
  const r = JSON.parse(out.trim().split('\n').pop())
  t.is(r.base, 0)
  // The one kept, and at most the last temporary while the engine still holds it.
  t.true(r.afterTemporaries >= 1 && r.afterTemporaries <= 2, `after 200 temporaries: ${r.afterTemporaries}`)
  t.is(r.afterPinned, r.afterTemporaries + 3, 'a named dict, a list stored in a dict and a dict put in a queue stay')
  t.true(r.keptWorks)
})

test('objects made by a process that dies are freed unless they were passed on', async (t) => {
  const m = await started(t)
  const before = await m.objectCount()
  const out = await m.list()
  const p = guard(t, new Process({ target: peer('makeObjects'), args: [m.address, m.authkey, out] }))
  await p.start()
  t.is(await joined(p, 30000), 0)
  const [kept] = await out.copy()
  t.is(await kept.get('k'), 'passed on')
  t.is(await m.objectCount(), before + 2, 'the list here and the dict the child passed on; its 50 others are gone')
})

// _TestMyManager: registered types, public methods only, errors revived, clean exit.
test('registered types: a class and a factory from a module, typed proxies, errors, hidden methods', async (t) => {
  const m = await Manager.start({
    types: { Counter: { module: PEERS, name: 'Counter' }, Greeter: { module: PEERS, name: 'makeGreeter' } },
  })
  const c = await m.create('Counter', [10])
  t.is(await c.increment(), 11)
  t.is(await c.increment(5), 16)
  t.is(await c.value(), 16)
  t.is(await c.later(20, 'async'), 'async')
  await t.throwsAsync(c.fail(), { instanceOf: RangeError, message: 'counter failure' })
  await t.throwsAsync(c._hidden(), { instanceOf: TypeError })
  await t.throwsAsync(c.nothing(), { instanceOf: TypeError })
  t.is(c.then, undefined, 'a proxy is not a thenable')
  const g = await m.create('Greeter', ['Ann'])
  t.is(await g.greet('Bob'), 'Ann greets Bob')
  await t.throwsAsync(m.create('Unknown'), { instanceOf: TypeError })
  const d = await m.dict()
  await d.set('counter', c)
  t.is(await (await d.get('counter')).increment(), 17, 'a registered proxy nests too')
  await m.shutdown()
  t.is(m.process.exitCode, 0)
  await t.throwsAsync(
    Manager.start({ types: { Bad: { module: PEERS, name: 'nothing' } } }).then((bad) => bad.create('Bad').finally(() => bad.shutdown())),
    {
      instanceOf: TypeError,
    },
  )
})

// _TestRemoteManager: a manager on 127.0.0.1 used by a program that inherited nothing.
test('a remote manager on 127.0.0.1 used from a plain node program; a wrong authkey refused', async (t) => {
  const authkey = 'remote secret'
  const m = await started(t, { address: '127.0.0.1:0', authkey })
  t.regex(m.address, /^127\.0\.0\.1:\d+$/)
  const results = await m.dict({ name: 'results' })
  const jobs = await m.Queue({ name: 'jobs' })
  for (let i = 1; i <= 20; i++) await jobs.put(i)
  await jobs.put(null)
  const out = await new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/manager-remote.mjs', import.meta.url)), m.address, authkey],
      { timeout: 60000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
    ),
  )
  t.is(out.trim(), 'remote done')
  t.is(await results.size(), 20)
  t.is(await results.get(7), 49)
  await t.throwsAsync(Manager.connect({ address: m.address, authkey: 'wrong' }), { instanceOf: AuthenticationError })
  const again = await Manager.connect({ address: m.address, authkey })
  t.is(await (await again.dict({ name: 'results' })).get(20), 400, 'named objects are found by name')
  await t.throwsAsync(again.list({ name: 'results' }), { instanceOf: TypeError }, 'a name is bound to one type')
  await again.shutdown()
  t.is(await results.get(1), 1, 'closing a connected manager leaves the server running')
})

// _TestManagerRestart: a new manager on the address of one that shut down.
test('a manager restarted on the same address serves new clients', async (t) => {
  const authkey = 'restart'
  const first = await Manager.start({ address: '127.0.0.1:0', authkey })
  const address = first.address
  const q = await first.Queue()
  await q.put('before')
  t.is(await q.get(), 'before')
  await first.shutdown()
  const second = await started(t, { address, authkey })
  t.is(second.address, address)
  const q2 = await second.Queue()
  await q2.put('after')
  t.is(await q2.get(), 'after')
  const c = await Manager.connect({ address, authkey })
  t.is(await (await c.dict({ name: 'x' })).size(), 0)
  await c.shutdown()
})

test('Manager.serve in this process; a child connects by address; shutdown stops it', async (t) => {
  const authkey = 'served'
  const m = await Manager.serve({ address: '127.0.0.1:0', authkey })
  t.is(m.process, null)
  const jobs = await m.Queue({ name: 'jobs' })
  const results = await m.dict({ name: 'results' })
  await jobs.put(3)
  await jobs.put(null)
  const p = guard(t, new Process({ target: peer('remoteWorker'), args: [m.address, authkey] }))
  await p.start()
  t.is(await joined(p, 30000), 0)
  t.is(await results.get(3), 9)
  await m.shutdown()
  await t.throwsAsync(Manager.connect({ address: m.address, authkey }), { instanceOf: ManagerError })
})

test('bad arguments are TypeErrors / RangeErrors', async (t) => {
  await t.throwsAsync(Manager.start({ address: 5 }), { instanceOf: TypeError })
  await t.throwsAsync(Manager.start({ authkey: 5 }), { instanceOf: TypeError })
  await t.throwsAsync(Manager.start({ types: { X: 5 } }), { instanceOf: TypeError })
  await t.throwsAsync(Manager.serve({ address: '127.0.0.1:0' }), { instanceOf: TypeError })
  await t.throwsAsync(Manager.connect({ address: '127.0.0.1:1' }), { instanceOf: TypeError })
  await t.throwsAsync(Manager.connect({ address: '127.0.0.1:1', authkey: 'k' }), { instanceOf: ManagerError })
  const m = await started(t)
  const taken = await started(t, { address: '127.0.0.1:0' })
  const e = await t.throwsAsync(Manager.start({ address: taken.address }), { instanceOf: OSError, code: 'ERR_OS' })
  t.regex(e.message, /EADDRINUSE/)
  await t.throwsAsync(m.dict({ name: 5 }), { instanceOf: TypeError })
  await t.throwsAsync(m.Semaphore(-1), { instanceOf: RangeError })
  await t.throwsAsync(m.Barrier(0), { instanceOf: RangeError })
  await t.throwsAsync(m.Value(5, 1), { instanceOf: TypeError })
  const other = await m.dict()
  await t.throwsAsync(m.Condition(other), { instanceOf: TypeError })
  const q = await m.Queue()
  await t.throwsAsync(q.get({ timeout: 'x' }), { instanceOf: TypeError })
  await t.throwsAsync(q.get({ timeout: Number.NaN }), { instanceOf: RangeError })
  const { Queue: LocalQueue } = await import('../dist/index.js')
  const local = new LocalQueue()
  await t.throwsAsync(other.set('q', local), { instanceOf: TypeError, code: 'ERR_NOT_SHAREABLE' })
  local.close()
  await t.throwsAsync(
    other.set('f', () => 1),
    { name: 'SerializationError' },
  )
})

test('a remote manager on a Unix socket path; 1,000 garbage connections and a rogue client leave it serving', async (t) => {
  t.timeout(120000)
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const net = (await import('node:net')).default
  const { Client } = await import('../dist/index.js')
  const dir = mkdtempSync(join(tmpdir(), 'mp-manager-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'manager.sock')
  const authkey = 'unix key'
  const m = await started(t, { address: path, authkey })
  t.is(m.address, path)
  const d = await m.dict({ name: 'd' })
  await d.set('alive', true)
  const junk = (i) =>
    new Promise((resolve) => {
      const s = net.connect({ path })
      s.on('error', () => resolve())
      s.on('close', () => resolve())
      s.on('data', () => {})
      s.on('connect', () => {
        const b = Buffer.alloc(16)
        if (i % 2) b.writeInt32BE(-1, 0)
        else b.fill(0xff)
        s.end(b)
      })
    })
  for (let round = 0; round < 10; round++) await within(60000, Promise.all(Array.from({ length: 100 }, (_, i) => junk(i))), 'junk round')
  // An authenticated client that sends something other than requests is dropped.
  const rogue = await Client({ address: path, authkey })
  await rogue.send('not a request')
  await t.throwsAsync(within(10000, rogue.recv()), { name: 'EOFError' })
  rogue.close()
  const c = await Manager.connect({ address: path, authkey })
  t.true(await (await c.dict({ name: 'd' })).get('alive'))
  await c.shutdown()
  t.true(await d.get('alive'), 'the starter still reaches it')
})
