// Listener / Client / wait: ports of CPython's _TestListenerClient, _TestListener and TestWait,
// the authkey handshake against a real CPython on both sides, and hostile peers.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import {
  AuthenticationError,
  Client,
  ClosedError,
  EOFError,
  Listener,
  OSError,
  Pipe,
  Process,
  ProtocolError,
  Queue,
  SocketConnection,
  TimeoutError,
  wait,
} from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const PY = fileURLToPath(new URL('./fixtures/py_listener.py', import.meta.url))
const peer = (name) => fixture('listener-peers.mjs', name)

/** A listening Listener closed when the test ends. */
async function listen(t, opts) {
  const l = new Listener(opts)
  t.teardown(() => l.close())
  return l.listening()
}

function tmpSocket(t) {
  const dir = mkdtempSync(join(tmpdir(), 'mp-listener-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'sock')
}

const families = {
  tcp: () => '127.0.0.1:0',
  unix: (t) => tmpSocket(t),
  abstract: () => `\0multiproc-test-${process.pid}-${Math.random().toString(36).slice(2)}`,
}

for (const [family, address] of Object.entries(families)) {
  // _TestListenerClient.test_listener_client
  test(`a child connects with Client and sends values (${family})`, async (t) => {
    const l = await listen(t, { address: address(t), authkey: 'k' })
    const p = guard(t, new Process({ target: peer('sendAll'), args: [l.address, 'k', [1, 'two', { three: [3n] }]] }))
    await p.start()
    const c = await within(20000, l.accept(), 'accept')
    t.true(c instanceof SocketConnection)
    t.is(await c.recv(), 1)
    t.is(await c.recv(), 'two')
    t.deepEqual(await c.recv(), { three: [3n] })
    await t.throwsAsync(within(10000, c.recv()), { instanceOf: EOFError })
    t.is(await joined(p), 0)
    c.close()
  })
}

// _TestListenerClient.test_issue14725: a connection accepted, then waited on.
test('accept() then recv on a connection whose peer sends later', async (t) => {
  const l = await listen(t, { authkey: 'k' })
  const p = guard(t, new Process({ target: peer('sendLater'), args: [l.address, 'k', 300, 'late'] }))
  await p.start()
  const c = await within(20000, l.accept())
  t.false(await c.poll())
  t.is(await within(10000, c.recv()), 'late')
  c.close()
  t.is(await joined(p), 0)
})

// _TestListenerClient.test_issue16955: poll sees what has been sent.
test('poll() is true once data has arrived, false before', async (t) => {
  const l = await listen(t)
  const [c, s] = await Promise.all([Client({ address: l.address }), l.accept()])
  t.false(await s.poll())
  t.false(await s.poll(50))
  await c.sendBytes(Buffer.from('x'))
  t.true(await within(5000, s.poll(5000)))
  t.deepEqual(await s.recvBytes(), Buffer.from('x'))
  c.close()
  t.true(await within(5000, s.poll(5000)), 'EOF counts as readable')
  await t.throwsAsync(s.recv(), { instanceOf: EOFError })
  s.close()
})

test('values, bytes, offsets and large messages go both ways; close() twice and asyncDispose', async (t) => {
  const l = await listen(t, { authkey: Buffer.from('bytes key') })
  const [c, s] = await Promise.all([Client({ address: l.address, authkey: Buffer.from('bytes key') }), l.accept()])
  const big = Buffer.alloc(5 << 20, 7)
  const values = [null, 0, -1.5, 'é', [1, [2]], new Map([['a', new Set([1])]]), new Date(5), 2n ** 70n, new Uint8Array([1, 2])]
  for (const v of values) await c.send(v)
  for (const v of values) t.deepEqual(await s.recv(), v)
  await c.sendBytes(Buffer.from('abcdef'), 2, 3)
  t.is(String(await s.recvBytes()), 'cde')
  const sent = c.sendBytes(big)
  const got = await within(20000, s.recvBytes())
  await sent
  t.is(got.length, big.length)
  t.true(got.equals(big))
  const into = Buffer.alloc(10)
  await s.sendBytes(Buffer.from('xyz'))
  t.is(await c.recvBytesInto(into, 4), 3)
  t.is(String(into.subarray(4, 7)), 'xyz')
  t.false(c.closed)
  await c[Symbol.asyncDispose]()
  t.true(c.closed)
  c.close()
  await t.throwsAsync(c.send(1), { instanceOf: ClosedError })
  await t.throwsAsync(s.recv(), { instanceOf: EOFError })
  const seen = []
  for await (const v of s) seen.push(v)
  t.deepEqual(seen, [])
  s.close()
})

test('for await over a connection ends at the peer close', async (t) => {
  const l = await listen(t)
  const [c, s] = await Promise.all([Client({ address: l.address }), l.accept()])
  for (let i = 0; i < 100; i++) await c.send(i)
  c.close()
  const seen = []
  for await (const v of s) seen.push(v)
  t.deepEqual(
    seen,
    Array.from({ length: 100 }, (_, i) => i),
  )
  s.close()
})

test('an echo child: 1,000 round trips in order', async (t) => {
  const l = await listen(t, { authkey: 'echo' })
  const p = guard(t, new Process({ target: peer('echo'), args: [l.address, 'echo'] }))
  await p.start()
  const c = await within(20000, l.accept())
  for (let i = 0; i < 1000; i++) {
    await c.send({ i })
    t.deepEqual(await within(10000, c.recv()), { i })
  }
  c.close()
  t.is(await joined(p), 0)
})

// _TestListener.test_multiple_bind
test('a second listener on a bound address fails with OSError', async (t) => {
  const l = await listen(t)
  const second = new Listener({ address: l.address })
  await t.throwsAsync(second.listening(), { instanceOf: OSError, code: 'ERR_OS', message: /EADDRINUSE/ })
  second.close()
  const path = tmpSocket(t)
  const u = await listen(t, { address: path })
  await t.throwsAsync(new Listener({ address: path }).listening(), { instanceOf: OSError })
  u.close()
  t.false(existsSync(path), 'close() removes the socket file')
})

// _TestListener.test_context
test('asyncDispose closes the listener; accept after close rejects; pending accept rejects on close', async (t) => {
  const first = await new Listener().listening()
  const address = first.address
  await first[Symbol.asyncDispose]()
  t.true(first.closed)
  await t.throwsAsync(Client({ address, timeout: 5000 }), { instanceOf: OSError })
  const l = await new Listener().listening()
  const pending = l.accept()
  l.close()
  await t.throwsAsync(pending, { instanceOf: ClosedError })
  await t.throwsAsync(l.accept(), { instanceOf: ClosedError })
  await t.throwsAsync(l.accept({ timeout: 10 }), { instanceOf: ClosedError })
  const l2 = await new Listener().listening()
  await t.throwsAsync(l2.accept({ timeout: 50 }), { instanceOf: TimeoutError })
  l2.close()
})

test('bad arguments: TypeError / RangeError with codes', async (t) => {
  t.throws(() => new Listener({ address: 5 }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new Listener({ address: '127.0.0.1:70000' }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new Listener({ authkey: 5 }), { instanceOf: TypeError })
  t.throws(() => new Listener({ maxMessageBytes: 0 }), { instanceOf: RangeError })
  await t.throwsAsync(Client(), { instanceOf: TypeError })
  await t.throwsAsync(Client({ address: '' }), { instanceOf: RangeError })
  await t.throwsAsync(wait(5), { instanceOf: TypeError })
  await t.throwsAsync(wait([{}]), { instanceOf: TypeError })
})

test('a wrong authkey is refused on both sides; the listener keeps serving', async (t) => {
  const l = await listen(t, { authkey: 'right' })
  await t.throwsAsync(Client({ address: l.address, authkey: 'wrong' }), { instanceOf: AuthenticationError, code: 'ERR_AUTHENTICATION' })
  // A listener whose key is wrong is refused by the client: the server must prove itself too.
  const other = await listen(t, { authkey: 'other' })
  await t.throwsAsync(Client({ address: other.address, authkey: 'right' }), { instanceOf: AuthenticationError })
  // A client without any key meets a challenge it does not expect: no request of it is read.
  const raw = await Client({ address: l.address })
  t.true((await raw.recvBytes()).subarray(0, 11).equals(Buffer.from('#CHALLENGE#')))
  raw.close()
  t.is(l.pending, 0)
  const [c, s] = await Promise.all([Client({ address: l.address, authkey: 'right' }), l.accept()])
  await c.send('ok')
  t.is(await s.recv(), 'ok')
  c.close()
  s.close()
})

/** Opens a raw TCP socket to `address`, writes `bytes`, resolves when the server closes it. */
function rawPeer(address, bytes, { end = true } = {}) {
  const [host, port] = address.split(':')
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) })
    s.on('error', () => resolve())
    s.on('close', () => resolve())
    s.on('data', () => {})
    s.on('connect', () => {
      s.write(bytes)
      if (end) s.end()
    })
  })
}

test('1,000 garbage connections (random bytes, absurd lengths, silence) leave the listener serving', async (t) => {
  t.timeout(120000)
  const l = await listen(t, { authkey: 'k', handshakeTimeout: 2000 })
  const absurd = Buffer.alloc(12)
  absurd.writeInt32BE(-1, 0)
  absurd.writeBigUInt64BE(2n ** 62n, 4)
  const kinds = [
    () => Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
    () => absurd,
    () => Buffer.from([0xff, 0xff, 0xff, 0x80]),
    () => Buffer.from(Array.from({ length: 64 }, () => Math.floor(Math.random() * 256))),
    () => Buffer.from('GET / HTTP/1.0\r\n\r\n'),
    () => Buffer.alloc(0),
  ]
  for (let round = 0; round < 10; round++) {
    await within(
      60000,
      Promise.all(
        Array.from({ length: 100 }, (_, i) => rawPeer(l.address, kinds[(round * 100 + i) % kinds.length](), { end: i % 3 !== 0 })),
      ),
      'garbage round',
    )
  }
  t.is(l.pending, 0, 'no garbage connection was handed out')
  const [c, s] = await Promise.all([Client({ address: l.address, authkey: 'k' }), within(10000, l.accept())])
  await c.send('still serving')
  t.is(await s.recv(), 'still serving')
  c.close()
  s.close()
})

test('a connected peer that breaks the framing is dropped with ProtocolError', async (t) => {
  const l = await listen(t, { maxMessageBytes: 1024 })
  const [host, port] = l.address.split(':')
  const raw = net.connect({ host, port: Number(port) })
  raw.on('error', () => {})
  const s = await l.accept()
  const head = Buffer.alloc(4)
  head.writeInt32BE(1 << 20)
  raw.write(head)
  await t.throwsAsync(within(5000, s.recv()), { instanceOf: ProtocolError })
  raw.destroy()
  s.close()
})

test('CPython 3 Listener ⇄ our Client, our Listener ⇄ CPython Client, both with the authkey handshake', async (t) => {
  const py = spawn('python3', [PY, 'listen', 'shared'])
  t.teardown(() => py.kill('SIGKILL'))
  const port = await within(20000, new Promise((r) => py.stdout.once('data', (d) => r(Number(String(d).trim())))))
  const c = await Client({ address: `127.0.0.1:${port}`, authkey: 'shared' })
  await c.sendBytes(Buffer.from('abc'))
  t.is(String(await within(10000, c.recvBytes())), 'cba')
  c.close()
  const l = await listen(t, { authkey: 'theirs' })
  const lport = l.address.split(':')[1]
  const run = (key) =>
    new Promise((resolve) => execFile('python3', [PY, 'connect', lport, key], { timeout: 20000 }, (_e, so, se) => resolve(so + se)))
  const out = run('theirs')
  const s = await within(20000, l.accept())
  t.is(String(await s.recvBytes()), 'from python')
  await s.sendBytes(Buffer.from('from node'))
  t.is((await out).trim(), 'from node')
  t.is((await run('wrong')).trim(), 'refused AuthenticationError')
  s.close()
  // Our Client with a wrong key against CPython's Listener.
  const py2 = spawn('python3', [PY, 'listen', 'right'])
  t.teardown(() => py2.kill('SIGKILL'))
  const port2 = await within(20000, new Promise((r) => py2.stdout.once('data', (d) => r(Number(String(d).trim())))))
  await t.throwsAsync(Client({ address: `127.0.0.1:${port2}`, authkey: 'wrong' }), { instanceOf: AuthenticationError })
})

// TestWait.test_wait: several children sending through pipes; wait returns the ready ones.
test('wait() on pipes fed by children gathers every message and end', async (t) => {
  const readers = []
  const procs = []
  for (let i = 0; i < 4; i++) {
    const [r, w] = Pipe({ duplex: false })
    const p = guard(t, new Process({ target: peer('pipeSender'), args: [w, 10, 5 + i] }))
    await p.start()
    w.close()
    readers.push(r)
    procs.push(p)
  }
  const got = []
  const open = new Set(readers)
  while (open.size > 0) {
    const ready = await within(20000, wait([...open]))
    t.true(ready.length > 0)
    for (const r of ready) {
      try {
        got.push(await r.recv())
      } catch (err) {
        t.true(err instanceof EOFError)
        open.delete(r)
      }
    }
  }
  t.is(got.length, 40)
  for (const p of procs) t.is(await joined(p), 0)
})

// TestWait.test_wait_socket, test_wait_timeout, test_wait_integer (process sentinels).
test('wait() on sockets, queues, processes and a listener; [] on timeout', async (t) => {
  const l = await listen(t)
  const q = new Queue()
  const [a, b] = Pipe()
  const p = guard(t, new Process({ target: peer('exitAfter'), args: [300] }))
  await p.start()
  t.deepEqual(await wait([l, q, a, p], 50), [])
  const started = performance.now()
  t.deepEqual(await within(20000, wait([l, q, a, p])), [p])
  t.true(performance.now() - started > 100)
  const clientP = Client({ address: l.address })
  t.deepEqual(await within(10000, wait([l, q, a], 10000)), [l])
  const s = await l.accept()
  const c = await clientP
  await q.put(1)
  await b.send(2)
  await c.send(3)
  t.true(await within(10000, s.poll(10000)))
  const ready = await within(10000, wait([q, a, s, p], 10000))
  t.is(ready.length, 4)
  t.deepEqual(ready, [q, a, s, p])
  q.close()
  a.close()
  b.close()
  c.close()
  s.close()
  await joined(p)
})

test('wait() with an aborted signal rejects with AbortError; an empty list resolves at once; a negative timeout is 0', async (t) => {
  t.deepEqual(await wait([]), [])
  const [a, b] = Pipe()
  t.deepEqual(await within(5000, wait([a], -1)), [])
  t.deepEqual(await within(5000, wait([a], 0)), [])
  const ac = new AbortController()
  const w = wait([a], { signal: ac.signal })
  setTimeout(() => ac.abort(), 50)
  await t.throwsAsync(within(5000, w), { name: 'AbortError', code: 'ABORT_ERR' })
  a.close()
  b.close()
})
