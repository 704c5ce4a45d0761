// Errors cross the binding as data: each failure carries its stable `code` (and an errno's name
// where the OS gave one), and src/errors.ts maps the code to the package's class with a switch.
// First, every code the binding's sources can emit is mapped (so a new code cannot slip through
// as an untyped error); then each cause that a program can provoke is provoked through the public
// API, with real processes and real shared memory.
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import test from 'ava'
import { fromNative } from '../dist/errors.js'
import {
  Barrier,
  BrokenBarrierError,
  ClosedError,
  EOFError,
  InvalidStateError,
  Lock,
  MultiprocError,
  OSError,
  Pipe,
  ProcessError,
  ProtocolError,
  Queue,
  ResourceError,
  SharedMemory,
  TimeoutError,
} from '../dist/index.js'

const bindingDir = fileURLToPath(new URL('../crates/node/src/', import.meta.url))
const emitted = [
  ...new Set(
    readdirSync(bindingDir)
      .filter((f) => f.endsWith('.rs'))
      .flatMap((f) => readFileSync(bindingDir + f, 'utf8').match(/"ERR_[A-Z_]+"/g) ?? [])
      .map((s) => s.slice(1, -1)),
  ),
].sort()

/** An error shaped as the binding throws it. */
function nativeError(code, message, errno) {
  const err = Object.assign(new Error(message), { code })
  if (errno) err.cause = new Error(errno)
  return err
}

/** What each code becomes: a class (and the code it keeps), or a built-in with a code. */
const EXPECTED = {
  ERR_BROKEN_BARRIER: [BrokenBarrierError, 'ERR_BROKEN_BARRIER'],
  ERR_CLOSED: [ClosedError, 'ERR_CLOSED'],
  ERR_EXISTS: [Error, 'EEXIST'],
  ERR_FORKSERVER: [ProcessError, 'ERR_PROCESS'],
  ERR_FORKSERVER_DOWN: [ProcessError, 'ERR_PROCESS'],
  ERR_INTERNAL: [ProcessError, 'ERR_PROCESS'],
  ERR_INVALID_ARG: [RangeError, 'ERR_OUT_OF_RANGE'],
  ERR_INVALID_ARG_VALUE: [TypeError, 'ERR_INVALID_ARG_VALUE'],
  ERR_INVALID_STATE: [InvalidStateError, 'ERR_INVALID_STATE'],
  ERR_MESSAGE_TOO_LARGE: [RangeError, 'ERR_MESSAGE_TOO_LARGE'],
  ERR_NOT_FOUND: [Error, 'ENOENT'],
  ERR_NO_DESCRIPTORS: [ResourceError, 'ERR_NO_DESCRIPTORS'],
  ERR_NO_MEMORY: [ResourceError, 'ERR_NO_MEMORY'],
  ERR_NO_PROCESSES: [ResourceError, 'ERR_NO_PROCESSES'],
  ERR_NO_SPACE: [ResourceError, 'ERR_NO_SPACE'],
  ERR_OS: [OSError, 'ERR_OS'],
  ERR_OUT_OF_RANGE: [RangeError, 'ERR_OUT_OF_RANGE'],
  ERR_PERMISSION: [Error, 'EACCES'],
  ERR_PROTOCOL: [ProtocolError, 'ERR_PROTOCOL'],
  ERR_SHARED_MEMORY: [OSError, 'ERR_SHARED_MEMORY'],
  ERR_TIMEOUT: [TimeoutError, 'ERR_TIMEOUT'],
}

test('every code the binding emits is mapped to its class', (t) => {
  t.true(emitted.length >= 15, `found ${emitted.length} codes in the binding`)
  t.deepEqual(emitted, Object.keys(EXPECTED).sort(), 'the table here lists exactly the codes the binding emits')
  for (const code of emitted) {
    const [cls, mapped] = EXPECTED[code]
    const e = fromNative(nativeError(code, 'what happened'))
    t.true(e instanceof cls, `${code} → ${cls.name}`)
    t.is(e.code, mapped, `${code} keeps a stable code`)
    t.regex(e.message, /what happened/, `${code} keeps the message`)
  }
})

test('an errno travels as data: ResourceError and OSError carry its name', (t) => {
  const r = fromNative(nativeError('ERR_NO_DESCRIPTORS', 'shared memory: Too many open files', 'EMFILE'))
  t.true(r instanceof ResourceError)
  t.is(r.errno, 'EMFILE')
  t.is(r.message, 'EMFILE: shared memory: Too many open files')
  const o = fromNative(nativeError('ERR_OS', 'pidfd_open: Operation not permitted', 'EPERM'))
  t.true(o instanceof OSError)
  t.is(o.errno, 'EPERM')
  const plain = fromNative(nativeError('ERR_OS', 'something else'))
  t.is(plain.errno, undefined)
  // Node-API's own refusals (a value of the wrong type) are TypeErrors with a code.
  const napi = fromNative(Object.assign(new Error('A number was expected'), { code: 'NumberExpected' }))
  t.true(napi instanceof TypeError)
  t.is(napi.code, 'ERR_INVALID_ARG_TYPE')
  // A package error passes through untouched.
  const own = new TimeoutError('x')
  t.is(fromNative(own), own)
})

test('provoked through the public API, each cause has its own code', async (t) => {
  const q = new Queue()
  q.close()
  t.throws(() => q.putNowait(1), { instanceOf: ClosedError, code: 'ERR_CLOSED' })
  t.throws(() => q.getNowait(), { instanceOf: EOFError, code: 'ERR_EOF' })
  t.throws(() => new Queue().getSync({ timeout: 10 }), { instanceOf: TimeoutError, code: 'ERR_TIMEOUT' })

  const lock = new Lock()
  t.throws(() => lock.release(), { instanceOf: InvalidStateError, code: 'ERR_INVALID_STATE' })

  const barrier = new Barrier(2)
  barrier.abort()
  await t.throwsAsync(barrier.wait({ timeout: 1000 }), { instanceOf: BrokenBarrierError, code: 'ERR_BROKEN_BARRIER' })

  const name = `mp-errors-${process.pid}`
  const shm = new SharedMemory({ name, create: true, size: 64 })
  try {
    t.throws(() => new SharedMemory({ name, create: true, size: 64 }), { code: 'EEXIST' })
  } finally {
    shm.close()
    shm.unlink()
  }
  t.throws(() => new SharedMemory({ name, create: false }), { code: 'ENOENT' })
  t.throws(() => new SharedMemory({ name: 'a/b', create: true, size: 64 }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' })

  const [a, b] = Pipe()
  b.close()
  a.close()
  await t.throwsAsync(a.sendBytes(Buffer.from('x')), { instanceOf: MultiprocError, code: 'ERR_CLOSED' })
})
